"""Overlay layers a slide offers (cells, HER2 grades, graph edges, density).

Filled in by the analysis results; a slide without a finished analysis has none.
"""
from __future__ import annotations


def slide_overlay_layers(slide) -> list[dict]:
    return []

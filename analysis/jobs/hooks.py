"""Callbacks run after a job ends (e.g. mark the slide failed, chain the next job)."""
from __future__ import annotations

from typing import Callable

AFTER_JOB: list[Callable] = []


def after_job(func: Callable) -> Callable:
    AFTER_JOB.append(func)
    return func

"""Plain-language names, with units, of the model's inputs (the sc-MTOP slide features of the
feature schema and the clinical variables), for every place a feature is shown: waterfall,
attribution table, cell inspector, board, PDF. The raw name stays available (on hover).

The name is composed from the schema's naming pattern (`<stain>_<type>_<type>_<metric>`,
`<stain>_prop_<class>`), the unit from the schema entry, and the long definition is kept for
the tooltip; one place, so every view says the same.
"""
from __future__ import annotations

from functools import lru_cache

CELL_TYPES = {
    "T": "tumour", "S": "stroma", "L": "lymphocyte", "N": "neutrophil", "M": "macrophage",
    "Tstrong": "HER2-strong tumour", "Tweak": "HER2-weak tumour", "Tnull": "HER2-null tumour",
    "nonT": "non-tumour",
}
PROPORTION_CLASSES = {
    "T": "tumour cells", "S": "stromal cells", "L": "lymphocytes", "N": "neutrophils", "M": "macrophages",
}
METRICS = {  # sc-MTOP graph metrics (slide means of the per-cell values), also the inspector's
    "Degrees": "mean degree",
    "meanEdgeLength": "mean edge length",
    "minEdgeLength": "shortest edge length",
    "Nsubgraph": "connected-group size",
}
METRIC_UNITS = {"Degrees": "edges", "meanEdgeLength": "µm", "minEdgeLength": "µm", "Nsubgraph": "cells"}
UNITS = {"um": "µm", "fraction": "fraction", "edges": "edges", "cells": "cells"}
STAINS = {"he": "H&E", "ihc": "IHC"}
CLINICAL = {
    "age": ("Age", "years"),
    "clinical_t": ("Clinical T", ""),
    "clinical_n": ("Clinical N", ""),
    "clinical_stage": ("Clinical stage (AJCC 8th)", ""),
    "er_status": ("ER status", ""),
    "pr_status": ("PR status", ""),
    "hr_status": ("Hormone-receptor status", ""),
    "her2_ihc": ("HER2 IHC score (clinical)", ""),
    "grade": ("Histological grade", ""),
}


@lru_cache(maxsize=1)
def _schema() -> dict[str, dict]:
    from analysis.core.graph.slide_features import load_schema

    return {entry["name"]: entry for entry in load_schema()["features"]}


def _compose(name: str) -> tuple[str, str]:
    """(plain name, unit) from the schema's naming pattern; (name, '') when it does not fit."""
    if name in CLINICAL:
        return CLINICAL[name]
    stain, _, rest = name.partition("_")
    if stain not in STAINS or not rest:
        return name, ""
    if rest.startswith("prop_"):
        what = rest[len("prop_"):]
        if what in PROPORTION_CLASSES:
            return f"{STAINS[stain]}: share of {PROPORTION_CLASSES[what]}", "fraction"
        intensity, _, completeness = what.partition("_")
        if intensity in ("strong", "weak", "null") and completeness in ("complete", "incomplete"):
            return (f"{STAINS[stain]}: share of tumour cells with {intensity} {completeness} HER2 membrane",
                    "fraction")
        return name, ""
    parts = rest.split("_")
    if len(parts) == 3 and parts[0] in CELL_TYPES and parts[1] in CELL_TYPES and parts[2] in METRICS:
        source, target, metric = parts
        return (f"{STAINS[stain]}: {METRICS[metric]}, {CELL_TYPES[source]} → {CELL_TYPES[target]}",
                METRIC_UNITS[metric])
    return name, ""


SHORT_TYPES = {"T": "tumour", "S": "stroma", "L": "lymphocyte", "N": "neutrophil", "M": "macrophage",
               "Tstrong": "HER2-strong", "Tweak": "HER2-weak", "Tnull": "HER2-null", "nonT": "non-tumour"}
SHORT_METRICS = {"Degrees": "degree", "meanEdgeLength": "mean edge", "minEdgeLength": "shortest edge",
                 "Nsubgraph": "group size"}


def _short(name: str, label: str) -> str:
    """A name that fits a chart axis in the side panel (the full one is in the hover). It starts
    with the slide, "H&E: " or "IHC: ", as the full name does (board, PDF): the same metric of the
    same cell pair is a different input on each slide."""
    stain, _, rest = name.partition("_")
    parts = rest.split("_")
    if stain in STAINS and len(parts) == 3 and parts[0] in SHORT_TYPES and parts[1] in SHORT_TYPES:
        # spaces round the arrow: a narrow table breaks the name there, never inside a word
        return f"{STAINS[stain]}: {SHORT_TYPES[parts[0]]} → {SHORT_TYPES[parts[1]]} {SHORT_METRICS.get(parts[2], parts[2])}"
    if stain in STAINS and rest.startswith("prop_"):
        what = rest[len("prop_"):]
        if what in PROPORTION_CLASSES:
            return f"{STAINS[stain]}: share of {PROPORTION_CLASSES[what]}"
        return f"{STAINS[stain]}: share {what.replace('_', ' ')} HER2"  # IHC: share strong complete HER2
    return label


def feature_label(name: str) -> dict:
    """{"name": raw, "label": plain name, "unit": unit, "text": 'label (unit)', "short": for chart
    axes, "definition": long}."""
    entry = _schema().get(name, {})
    label, unit = _compose(name)
    unit = UNITS.get(entry.get("unit", ""), entry.get("unit", "")) or unit
    text = f"{label} ({unit})" if unit else label
    return {"name": name, "label": label, "unit": unit, "text": text, "short": _short(name, label),
            "definition": entry.get("definition", "")}


def feature_labels_json() -> dict:
    """Everything the page's JavaScript needs: {"features": {raw: {label, unit, text}},
    "metrics": {raw metric: 'plain (unit)'}} (the cell inspector shows per-cell sc-MTOP metrics)."""
    names = list(_schema()) + list(CLINICAL)
    return {
        "features": {name: {k: v for k, v in feature_label(name).items() if k not in ("name", "definition", "short")}
                     for name in names},
        "metrics": {metric: f"{text} ({METRIC_UNITS[metric]})" for metric, text in METRICS.items()},
    }

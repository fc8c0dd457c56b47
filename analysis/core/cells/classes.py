"""The cell vocabularies every part of the product shares.

H&E classes follow FUSCC's merge of two HoVer-Net checkpoints (DESIGN.md 2.1):
PanNuke 1 neoplastic -> tumour, 3 connective -> stroma; MoNuSAC 2 lymphocyte,
3 macrophage, 4 neutrophil. HER2 membrane classes follow the ASCO/CAP wording
(intensity x circumferential completeness) as QuPath-style graders report them.
"""
from __future__ import annotations

from enum import Enum


class CellClass(str, Enum):
    """Nucleus class on H&E (and the morphological class of IHC nuclei)."""

    TUMOUR = "tumour"
    STROMA = "stroma"
    LYMPHOCYTE = "lymphocyte"
    NEUTROPHIL = "neutrophil"
    MACROPHAGE = "macrophage"
    OTHER = "other"  # dead / non-neoplastic epithelial / unclassified: kept, not graphed


class Her2Class(str, Enum):
    """Membrane class of an IHC tumour cell: intensity x completeness."""

    STRONG_COMPLETE = "strong_complete"
    STRONG_INCOMPLETE = "strong_incomplete"
    WEAK_COMPLETE = "weak_complete"
    WEAK_INCOMPLETE = "weak_incomplete"
    NULL_COMPLETE = "null_complete"  # faint ring all round, below the weak threshold
    NULL_INCOMPLETE = "null_incomplete"  # no membrane staining


# sc-MTOP / HoVer-Net PanNuke type codes (SOURCES.md): 1 neoplastic (T), 2 inflammatory (I),
# 3 connective (S), 4 dead, 5 non-neoplastic epithelial.
PANNUKE_TO_CLASS = {
    1: CellClass.TUMOUR,
    2: CellClass.LYMPHOCYTE,  # PanNuke "inflammatory" has no finer split
    3: CellClass.STROMA,
    4: CellClass.OTHER,
    5: CellClass.OTHER,
}
CLASS_TO_PANNUKE = {
    CellClass.TUMOUR: 1,
    CellClass.LYMPHOCYTE: 2,
    CellClass.NEUTROPHIL: 2,
    CellClass.MACROPHAGE: 2,
    CellClass.STROMA: 3,
    CellClass.OTHER: 4,
}

# Colour-blind-safe palette (Okabe & Ito 2008), one colour per class, as RGB hex.
CLASS_COLOURS = {
    CellClass.TUMOUR: "#D55E00",
    CellClass.STROMA: "#009E73",
    CellClass.LYMPHOCYTE: "#0072B2",
    CellClass.NEUTROPHIL: "#CC79A7",
    CellClass.MACROPHAGE: "#E69F00",
    CellClass.OTHER: "#999999",
}
HER2_COLOURS = {
    Her2Class.STRONG_COMPLETE: "#8B2500",
    Her2Class.STRONG_INCOMPLETE: "#D55E00",
    Her2Class.WEAK_COMPLETE: "#E69F00",
    Her2Class.WEAK_INCOMPLETE: "#F0E442",
    Her2Class.NULL_COMPLETE: "#56B4E9",
    Her2Class.NULL_INCOMPLETE: "#0072B2",
}

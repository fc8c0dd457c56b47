"""Statistics of a drawn region (issue 14 item 14): the cells inside an annotation, by class, the
HER2 classes of the tumour cells among them, the region's ASCO/CAP score, H-score and area.

Read from the slide's latest analysis run (the cell table's spatial index keeps this fast on
slides of a million cells: analysis.core.cells.region). `region_statistics_for_slide` takes any
geometry, so that an annotation transferred to another slide (registration) gets the same numbers.
"""
from __future__ import annotations

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from analysis.core.cells.region import region_statistics
from analysis.models import AnalysisRun
from analysis.results import run_path
from cases.models import Slide
from viewer.review.models import Annotation


def slide_latest_cells(slide: Slide):
    """(run, cells.parquet path) of the slide's latest run with a cell table, or (None, None)."""
    for run in AnalysisRun.objects.filter(slide=slide).order_by("-created_at", "-pk")[:5]:
        path = run_path(run) / "cells.parquet"
        if path.is_file():
            return run, path
    return None, None


def region_statistics_for_slide(*, slide: Slide, geometry: dict) -> dict:
    """Statistics of `geometry` (GeoJSON Polygon or Point, level-0 px of `slide`) on the slide's
    latest run. Raises analysis.core.cells.region.RegionError (bad geometry) and
    analysis.core.cells.table.CellTableError (unreadable run)."""
    run, path = slide_latest_cells(slide)
    stats = region_statistics(cells_path=path, geometry=geometry, mpp_x=slide.mpp_x,
                              mpp_y=slide.mpp_y or slide.mpp_x, stain=slide.stain)
    body = stats.to_dict()
    body.update({"slide": slide.pk, "stain": slide.stain, "run": run.pk if run else None,
                 "segmenter": run.segmenter if run else None})
    return body


def annotation_statistics(annotation: Annotation) -> dict:
    return {"annotation": annotation.pk, **region_statistics_for_slide(slide=annotation.slide,
                                                                      geometry=annotation.geometry)}


@extend_schema_field({"type": "object", "additionalProperties": {"type": "integer"},
                      "example": {"tumour": 812, "stroma": 240}})
class CountsField(serializers.DictField):
    child = serializers.IntegerField()


class AnnotationStatisticsSerializer(serializers.Serializer):
    """What GET /api/annotations/<id>/statistics/ returns."""

    annotation = serializers.IntegerField()
    slide = serializers.IntegerField()
    stain = serializers.CharField(help_text="'he' or 'ihc'.")
    run = serializers.IntegerField(allow_null=True, help_text="Analysis run counted; null when the slide has none.")
    segmenter = serializers.CharField(allow_null=True)
    area_mm2 = serializers.FloatField(allow_null=True, help_text="Null for a point or an unknown resolution.")
    area_px = serializers.FloatField(allow_null=True, help_text="Level-0 px²; null for a point.")
    n_cells = serializers.IntegerField(help_text="Cells whose centroid lies inside.")
    cells = CountsField(help_text="Cells inside, per class.")
    her2 = CountsField(help_text="IHC: HER2 membrane classes of the tumour cells inside (ASCO/CAP grade "
                                 "tumour cells only); empty on H&E.")
    asco_cap = serializers.ChoiceField(choices=["0", "1+", "2+", "3+"], allow_null=True,
                                       help_text="IHC: ASCO/CAP 2018/2023 score of the region's tumour cells; "
                                                 "null on H&E or below 20 graded tumour cells.")
    h_score = serializers.FloatField(allow_null=True, help_text="IHC: H-score (0-300) of the graded tumour "
                                                                "cells; null on H&E or when none is graded.")

"""segment_image, import_cells and export_cells on real files."""
from __future__ import annotations

import json

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from analysis.models import AnalysisRun, FeatureStatus


def test_segment_image_writes_qupath_detections(shared_file, tmp_path, db):
    out = tmp_path / "cells.geojson"
    call_command("segment_image", str(shared_file("nuclei/gbm/01.tif")), "--stain", "he", "--mpp", "0.5",
                 "--out", str(out))
    collection = json.loads(out.read_text())
    assert collection["type"] == "FeatureCollection" and len(collection["features"]) > 50
    feature = collection["features"][0]
    assert feature["geometry"]["type"] == "Polygon"
    assert feature["properties"]["objectType"] == "detection"
    assert feature["properties"]["classification"]["name"] in {"tumour", "stroma", "lymphocyte", "neutrophil",
                                                               "macrophage", "other"}
    assert "measurements" in feature["properties"]
    xs = [x for ring in feature["geometry"]["coordinates"] for x, _ in ring]
    assert 0 <= min(xs) and max(xs) <= 512


def test_segment_image_without_mpp_says_what_to_do(shared_file, tmp_path, db):
    with pytest.raises(CommandError, match="pass mpp"):
        call_command("segment_image", str(shared_file("ihc/skimage-ihc.png")), "--stain", "ihc",
                     "--out", str(tmp_path / "x.geojson"))


def test_import_hovernet_json_then_export_round_trip(he_slide, shared_file, tmp_path):
    """sc-MTOP's reference input on its own slide (CMU-1-Small-Region) becomes the slide's cells."""
    call_command("import_cells", "--slide", str(he_slide.pk), str(shared_file("scmtop/cmu-1-small-region/cmu-1-small-region.json")))
    run = AnalysisRun.objects.get(slide=he_slide)
    assert run.source == "imported" and run.n_cells == 2394 and run.segmenter == "imported-hovernet-json"
    assert run.features.get().status == FeatureStatus.COMPUTED
    out = tmp_path / "export.json"
    call_command("export_cells", "--slide", str(he_slide.pk), "--format", "hovernet", "--out", str(out))
    exported = json.loads(out.read_text())
    assert len(exported["nuc"]) == 2394 and exported["mag"] == pytest.approx(20, rel=0.01)
    geojson = tmp_path / "export.geojson"
    call_command("export_cells", "--slide", str(he_slide.pk), "--format", "geojson", "--out", str(geojson))
    call_command("import_cells", "--slide", str(he_slide.pk), str(geojson))
    assert AnalysisRun.objects.filter(slide=he_slide).order_by("-created_at").first().n_cells == 2394


def test_import_rejects_bad_files(he_slide, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"mag": 20, "nuc": {"1": {"centroid": [1, 2], "contour": "oops", "type": 1}}}')
    with pytest.raises(CommandError, match="contour"):
        call_command("import_cells", "--slide", str(he_slide.pk), str(bad))
    far = tmp_path / "far.json"
    far.write_text(json.dumps({"mag": 20, "nuc": {"1": {"centroid": [99999, 2], "contour": [[99998, 1], [99999, 3], [99997, 3]],
                                                        "type": 1, "type_prob": 0.9, "bbox": [[1, 99997], [3, 99999]]}}}))
    with pytest.raises(CommandError, match="outside the slide"):
        call_command("import_cells", "--slide", str(he_slide.pk), str(far))
    assert not AnalysisRun.objects.exists()


@pytest.mark.slow
def test_scmtop_features_command_writes_the_reference_files(shared_file, tmp_path, db):
    """The command writes sc-MTOP's four files with its columns and rows (values: tests/analysis/core/graph/test_scmtop.py)."""
    import pandas as pd

    reference = shared_file("scmtop/cmu-1-small-region")
    call_command("scmtop_features", "--cells", str(reference / "cmu-1-small-region.json"),
                 "--slide", str(shared_file("slides/CMU-1-Small-Region.svs")), "--out", str(tmp_path))
    for suffix in ("Feats_T", "Feats_I", "Feats_S", "Edges"):
        ours = pd.read_csv(tmp_path / f"CMU-1-Small-Region_{suffix}.csv")
        theirs = pd.read_csv(reference / f"cmu-1-small-region_{suffix}.csv")
        assert list(ours.columns) == list(theirs.columns) and len(ours) == len(theirs), suffix


def test_segment_image_reads_a_vendor_slide_with_its_mpp(shared_file, tmp_path, db):
    """An Aperio SVS: level 0 through OpenSlide, the scanner's MPP (0.499) used, no --mpp needed."""
    out = tmp_path / "cmu1.geojson"
    call_command("segment_image", str(shared_file("slides/CMU-1-Small-Region.svs")), "--stain", "he",
                 "--segmenter", "classical", "--out", str(out))
    features = json.loads(out.read_text())["features"]
    assert len(features) > 300
    xs = [x for feature in features for ring in feature["geometry"]["coordinates"] for x, _ in ring]
    assert max(xs) <= 2220  # level-0 pixel coordinates of the 2220 x 2967 slide

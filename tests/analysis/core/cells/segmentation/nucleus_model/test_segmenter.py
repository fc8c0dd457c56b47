"""The shipped nucleus model on real tiles, and how the product chooses its segmenter."""
import numpy as np
import pytest
from PIL import Image

from analysis.core.cells.segmentation.metrics import detection_scores, polygons_to_label_image, read_geojson_polygons
from analysis.core.cells.segmentation.nucleus_model import inference
from analysis.core.cells.segmentation.nucleus_model.segmenter import SHIPPED_WEIGHTS, NucleusModelSegmenter


@pytest.fixture(scope="module")
def segmenter():
    return NucleusModelSegmenter()


def _f1(segmenter, image_path, mpp):
    rgb = np.asarray(Image.open(image_path).convert("RGB"))
    cells = segmenter.segment(rgb=rgb, mpp=mpp)
    truth = polygons_to_label_image(polygons=[p - 0.5 for p in read_geojson_polygons(path=image_path.with_suffix(".geojson"))],
                                    shape=rgb.shape[:2])
    pred = polygons_to_label_image(polygons=list(cells["contour"]), shape=rgb.shape[:2])
    return detection_scores(truth=truth, pred=pred).f1, cells


def test_shipped_weights_find_breast_nuclei(segmenter, shared_file):
    # A TNBC tile of slide 08 (seen in training: this checks the shipped file and the code path,
    # not generalisation; benchmarks/segmentation.py and the model card hold the held-out numbers).
    f1, cells = _f1(segmenter, shared_file("nuclei/breast-tnbc/08_1.png"), 0.25)
    assert f1 > 0.6
    assert set(cells["cls"]) <= {"tumour", "stroma", "lymphocyte", "other"}
    assert ((cells["prob"] > 0) & (cells["prob"] <= 1)).all()


def test_every_run_records_the_weights_checksum(segmenter):
    import hashlib

    assert segmenter.info.weights == f"ladder-nucleus-v1.pt sha256:{hashlib.sha256(SHIPPED_WEIGHTS.read_bytes()).hexdigest()}"
    assert segmenter.info.approximate is False and "ihc" in segmenter.stains
    # the default: PyTorch, in bfloat16 where the CPU computes it natively (ONNX Runtime costs +0.65 GB)
    native = inference.cpu_has_native_bfloat16()
    assert segmenter.info.params["runtime"] == ("torch bfloat16" if native else "torch")


def test_a_misnamed_runtime_is_refused_not_silently_replaced():
    from analysis.core.cells.segmentation.nucleus_model.inference import NucleusRuntimeError

    with pytest.raises(NucleusRuntimeError, match="LADDER_NUCLEUS_RUNTIME must be one of"):
        NucleusModelSegmenter(runtime="onnx")


def test_nuclei_on_real_her2_ihc(segmenter, shared_file):
    rgb = np.asarray(Image.open(shared_file("ihc/skimage-ihc.png")).convert("RGB"))
    cells = segmenter.segment(rgb=rgb, mpp=0.5)
    assert len(cells) > 50  # hematoxylin nuclei of the real IHC image are found


def test_segmenter_choice(settings, tmp_path):
    from analysis.core.cells.segmentation.classical import ClassicalSegmenter
    from analysis.core.her2.grading import IhcNucleusSegmenter
    from analysis.segmenters import segmenter_for

    settings.LADDER_SEGMENTER = "auto"
    settings.LADDER_HOVERNET_WEIGHTS = ""
    settings.LADDER_NUCLEUS_WEIGHTS = ""
    assert isinstance(segmenter_for(stain="he"), NucleusModelSegmenter)
    assert isinstance(segmenter_for(stain="ihc"), NucleusModelSegmenter)
    assert isinstance(segmenter_for(stain="he", choice="classical"), ClassicalSegmenter)
    assert isinstance(segmenter_for(stain="ihc", choice="classical"), IhcNucleusSegmenter)
    broken = tmp_path / "broken.pt"
    broken.write_bytes(b"not weights")
    settings.LADDER_NUCLEUS_WEIGHTS = str(broken)
    said = []
    assert isinstance(segmenter_for(stain="he", log=said.append), ClassicalSegmenter)  # labelled last resort
    assert "could not be loaded" in said[0]
    with pytest.raises(ValueError):
        segmenter_for(stain="he", choice="magic")

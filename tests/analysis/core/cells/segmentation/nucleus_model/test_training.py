"""Training code path on a tiny real subset: partial-label loss, sampler, a few iterations, and
the train_segmenter command end to end (never the real model)."""
import json

import numpy as np
import pytest
import torch

from analysis.core.cells.segmentation.nucleus_model.data import MODEL_CLASSES, class_bits, group_folds, load_tiles
from analysis.core.cells.segmentation.nucleus_model.training import PatchSampler, TrainConfig, losses


@pytest.fixture(scope="module")
def tiles(shared_data):
    root = shared_data / "nuclei"
    if not root.is_dir():
        pytest.skip("no annotated nuclei")
    found = load_tiles(root=root, datasets=["breast-pannuke", "breast-tnbc"])
    return [t for t in found if t.dataset == "breast-pannuke"][:2] + [t for t in found if t.dataset == "breast-tnbc"][:2]


def test_tiles_keep_the_annotators_classes_as_allowed_sets(tiles):
    pannuke = [t for t in tiles if t.dataset == "breast-pannuke"]
    bits = {b for t in pannuke for b in t.allowed.values()}
    assert bits <= {class_bits({"tumour"}), class_bits({"stroma", "lymphocyte", "other"})}
    assert all(not t.allowed for t in tiles if t.dataset == "breast-tnbc")


def test_folds_never_split_a_slide(shared_data):
    found = load_tiles(root=shared_data / "nuclei", datasets=["breast-tnbc"])
    folds = group_folds(tiles=found, n_folds=3, seed=0)
    by_slide = {}
    for tile, fold in zip(found, folds):
        by_slide.setdefault(tile.slide, set()).add(fold)
    assert all(len(f) == 1 for f in by_slide.values()) and len(set(folds)) == 3


def test_partial_label_loss_is_zero_when_mass_is_inside_the_allowed_set():
    k = len(MODEL_CLASSES)
    out = torch.zeros(1, 3 + k, 4, 4)
    out[:, 3 + MODEL_CLASSES.index("stroma")] = 20.0  # confident stroma
    batch = {"valid": torch.ones(1, 1, 4, 4), "np": torch.ones(1, 1, 4, 4), "hv": torch.zeros(1, 2, 4, 4),
             "tp": torch.full((1, 4, 4), class_bits({"stroma", "lymphocyte", "other"}))}
    assert float(losses(out, batch)["tp"]) < 1e-6  # "not tumour" is satisfied by stroma
    batch["tp"] = torch.full((1, 4, 4), class_bits({"tumour"}))
    assert float(losses(out, batch)["tp"]) > 10


def test_sampler_makes_targets_that_match_the_image(tiles):
    sampler = PatchSampler(tiles=tiles, config=TrainConfig(batch=3, patch=64, dataset_weights=(("breast-pannuke", 1), ("breast-tnbc", 1))),
                           rng=np.random.default_rng(0))
    batch = sampler.batch()
    assert batch["image"].shape == (3, 3, 64, 64) and batch["hv"].shape == (3, 2, 64, 64)
    assert ((batch["hv"].abs() > 0) <= (batch["np"] > 0)).all()  # HV only inside nuclei


def test_train_segmenter_command_runs_cross_validation_and_writes_loadable_weights(shared_data, tmp_path):
    from django.core.management import call_command

    from analysis.core.cells.segmentation.nucleus_model.segmenter import NucleusModelSegmenter

    call_command("train_segmenter", "--data", str(shared_data / "nuclei"), "--out", str(tmp_path),
                 "--datasets", "breast-pannuke", "--max-tiles", "4", "--folds", "2",
                 "--iterations", "2", "--cv-iterations", "2", "--batch", "2")
    report = json.loads((tmp_path / "cross_validation.json").read_text())
    assert report["pooled"]["breast-pannuke"]["tiles"] == 4
    segmenter = NucleusModelSegmenter(weights=tmp_path / "ladder-nucleus.pt")
    assert segmenter.info.weights.startswith("ladder-nucleus.pt sha256:")
    cells = segmenter.segment(rgb=np.full((64, 64, 3), 230, np.uint8), mpp=0.25)
    assert list(cells.columns) == ["x", "y", "contour", "cls", "prob", "area_px"]

"""The nucleus + neighbourhood tumour call measured beside the network's head (tumour_context.py):
its measurements against scikit-image and by hand, QuPath's Gaussian smoothing, the call."""
from __future__ import annotations

import math

import numpy as np
import pytest
from skimage.color import rgb2hed
from skimage.draw import ellipse
from skimage.measure import regionprops

from analysis.core.cells.segmentation.nucleus_model.data import load_tiles
from analysis.core.cells.segmentation.nucleus_model.net import instance_contours
from analysis.core.cells.segmentation.nucleus_model.tumour_context import (
    FEATURES,
    OWN,
    TumourContextModel,
    call_tumour,
    fit,
    labelled_rows,
    measure,
)


def _measure(labels, rgb, mpp=0.5):
    ids, contours = instance_contours(labels)
    return ids, measure(labels=labels, rgb=rgb, mpp=mpp, ids=ids, contours=contours)


@pytest.fixture
def pannuke_tile(shared_data):
    tiles = load_tiles(root=shared_data / "nuclei", datasets=["breast-pannuke"])
    both = [t for t in tiles if len(set(t.allowed.values())) == 2]  # tumour and non-tumour nuclei
    return max(both, key=lambda t: len(t.allowed))


def test_shape_and_stain_measurements_match_scikit_image_on_real_nuclei(pannuke_tile):
    tile = pannuke_tile
    ids, table = _measure(tile.labels, tile.rgb, tile.mpp)
    assert table.shape == (len(ids), len(FEATURES))
    props = {p.label: p for p in regionprops(tile.labels, intensity_image=rgb2hed(tile.rgb)[..., 0])}
    area = np.array([props[i].area for i in ids])
    assert np.allclose(table[:, OWN.index("log_area_um2")], np.log(area * tile.mpp**2))
    assert np.allclose(table[:, OWN.index("eccentricity")], [props[i].eccentricity for i in ids], atol=1e-9)
    h_mean = np.array([props[i].intensity_mean for i in ids])
    h_sd = np.array([props[i].intensity_std for i in ids])
    assert np.allclose(table[:, OWN.index("hematoxylin_mean_rel")], h_mean / np.median(h_mean))
    assert np.allclose(table[:, OWN.index("hematoxylin_sd_rel")], h_sd / np.median(h_mean), atol=1e-9)
    # solidity from the traced contour's hull: close to scikit-image's pixel-hull figure
    solidity = table[:, OWN.index("solidity")]
    assert np.median(np.abs(solidity - [props[i].solidity for i in ids])) < 0.1
    assert ((solidity > 0) & (solidity <= 1)).all()


def test_an_isolated_nucleus_keeps_its_own_values_and_close_ones_mix_with_gaussian_weights():
    labels = np.zeros((600, 600), np.int32)
    for k, (r, c, a, b) in enumerate([(100, 100, 12, 6), (100, 120, 8, 8), (500, 500, 10, 10)], start=1):
        rr, cc = ellipse(r, c, a, b, labels.shape)
        labels[rr, cc] = k
    rgb = np.full((600, 600, 3), 220, np.uint8)
    rgb[labels > 0] = (90, 60, 140)
    ids, table = _measure(labels, rgb, mpp=0.5)
    own = table[:, :len(OWN)]
    smoothed_25 = table[:, len(OWN):2 * len(OWN)]
    assert np.allclose(smoothed_25[2], own[2])  # 280 um from the others: beyond 3 sigma
    sigma = 25 / (2 * math.sqrt(2 * math.log(2)))
    centres = np.array([[100, 100], [100, 120]]) * 0.5  # 10 um apart
    w = math.exp(-0.5 * (np.linalg.norm(centres[0] - centres[1]) / sigma) ** 2)
    assert np.allclose(smoothed_25[0], (own[0] + w * own[1]) / (1 + w), atol=1e-3)  # centroids of drawn ellipses
    # an elongated nucleus is more eccentric than a round one
    assert own[0, OWN.index("eccentricity")] > 0.8 > own[1, OWN.index("eccentricity")]


def _model(intercept: float) -> TumourContextModel:
    n = len(FEATURES)
    return TumourContextModel(mean=(0.0,) * n, scale=(1.0,) * n, coef=(0.0,) * n, intercept=intercept)


def test_the_call_takes_tumour_from_the_context_and_the_rest_from_the_network():
    labels = np.zeros((80, 80), np.int32)
    labels[10:20, 10:20], labels[40:52, 40:50] = 1, 2
    rgb = np.full((80, 80, 3), 200, np.uint8)
    classes = ("tumour", "stroma", "lymphocyte", "other")
    probs = np.zeros((4, 3))
    probs[:, 1] = [0.7, 0.1, 0.15, 0.05]  # the network: tumour, then lymphocyte
    probs[:, 2] = [0.6, 0.3, 0.05, 0.05]  # the network: tumour, then stroma
    cls, prob = call_tumour(context=_model(-20), classes=classes, labels=labels, rgb=rgb, mpp=0.5, probs=probs)
    assert [classes[c] for c in cls[1:]] == ["lymphocyte", "stroma"]
    assert prob[1] == pytest.approx(0.15 / 0.3, rel=1e-6)
    cls, prob = call_tumour(context=_model(20), classes=classes, labels=labels, rgb=rgb, mpp=0.5, probs=probs)
    assert [classes[c] for c in cls[1:]] == ["tumour", "tumour"] and prob[1] == pytest.approx(1.0)


def test_fitted_on_the_hand_labels_of_real_tiles_and_refused_without_both_classes(pannuke_tile):
    table, tumour = labelled_rows(tile=pannuke_tile, labels=pannuke_tile.labels)  # its own outlines: all match
    traced = set(instance_contours(pannuke_tile.labels)[0].tolist())  # hidden or sub-pixel ones have no outline
    assert len(tumour) == len([i for i in pannuke_tile.allowed if i in traced]) and 0 < tumour.sum() < len(tumour)
    model = fit(tables=[table], tumour=[tumour])
    called = model.tumour_probability(table) >= 0.5
    assert (called == tumour.astype(bool)).mean() > 0.7  # it learns its training tile
    with pytest.raises(ValueError, match="tumour and non-tumour"):
        fit(tables=[table], tumour=[np.zeros(len(table))])

"""HoVer-Net targets and post-processing of the nucleus model, on hand-made cases."""
import numpy as np
from PIL import Image

from analysis.core.cells.segmentation.nucleus_model.net import build_model, hv_targets, instances_from_maps, split_outputs


def _two_touching_discs():
    yy, xx = np.mgrid[0:64, 0:64]
    labels = np.zeros((64, 64), np.int32)
    labels[(yy - 32) ** 2 + (xx - 22) ** 2 <= 100] = 1
    labels[(yy - 32) ** 2 + (xx - 40) ** 2 <= 100] = 2  # overlaps disc 1: they touch along a seam
    return labels


def test_hv_targets_are_normalised_offsets_from_each_centre():
    labels = _two_touching_discs()
    hv = hv_targets(labels)
    for index in (1, 2):
        mask = labels == index
        assert hv[0][mask].min() == -1 and hv[0][mask].max() == 1
        assert hv[1][mask].min() == -1 and hv[1][mask].max() == 1
        cols = np.nonzero(mask)[1]
        # left of the centre negative, right positive (Graham et al. 2019)
        assert (hv[0][mask][cols < cols.mean() - 1] < 0).all()
        assert (hv[0][mask][cols > cols.mean() + 1] > 0).all()
    assert (hv[:, labels == 0] == 0).all()


def test_post_processing_separates_touching_nuclei_from_perfect_maps():
    labels = _two_touching_discs()
    found = instances_from_maps(np_prob=(labels > 0).astype(np.float32), hv=hv_targets(labels))
    assert found.max() == 2
    # each found nucleus lies mostly inside one true nucleus
    for index in (1, 2):
        overlap = np.bincount(labels[found == index], minlength=3)[1:]
        assert overlap.max() / overlap.sum() > 0.9


def test_post_processing_of_an_empty_map_is_empty():
    assert instances_from_maps(np_prob=np.zeros((32, 32), np.float32), hv=np.zeros((2, 32, 32), np.float32)).max() == 0


def test_model_outputs_np_hv_and_class_maps_at_input_size():
    import torch

    model = build_model(n_classes=4, widths=(4, 8, 8, 8, 8)).eval()
    with torch.inference_mode():
        np_prob, hv, tp = split_outputs(model(torch.zeros(1, 3, 48, 64)))
    assert np_prob.shape == (1, 1, 48, 64) and hv.shape == (1, 2, 48, 64) and tp.shape == (1, 4, 48, 64)
    assert float(hv.abs().max()) <= 1


def test_fill_holes_is_scipys_to_the_pixel(shared_file):
    """The watershed's hole filling gives scipy's `binary_fill_holes` exactly: random masks of
    every density and shape (edges, single rows), and dark-pixel masks of a real breast H&E tile."""
    from scipy import ndimage as ndi

    from analysis.core.cells.segmentation.nucleus_model.net import fill_holes

    rng = np.random.default_rng(0)
    masks = [rng.random(shape) < p for p in (0.05, 0.3, 0.5, 0.6, 0.8, 0.97)
             for shape in ((1, 9), (3, 3), (57, 83), (240, 200))]
    masks += [ndi.binary_opening(m) for m in masks if min(m.shape) > 3]
    section = np.asarray(Image.open(shared_file("nuclei/breast-tnbc/08_1.png")).convert("L"))
    masks += [section < level for level in (90, 120, 160)]
    for mask in masks:
        assert np.array_equal(fill_holes(mask), ndi.binary_fill_holes(mask)), (mask.shape, mask.mean())
    assert fill_holes(np.zeros((4, 4), bool)).sum() == 0 and fill_holes(np.ones((4, 4), bool)).all()

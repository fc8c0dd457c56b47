"""HoVer-Net through tiatoolbox: merge rules, coordinates, weights errors, and the whole
path (patching, inference, tiatoolbox post-processing, merging) with random weights.

No real weights can be had here. The whole-path test builds the tiatoolbox HoVerNet
architecture with seeded random initialisation and saves it as the local weights files;
only the last 1x1 layer of each decoder head is rescaled so that its outputs vary across
the tile (a raw random network predicts p(nucleus) ~ 0.5 everywhere and so no nuclei,
which would leave the structure checks empty). The rescale constants are the per-channel
mean / std of those layers' outputs on the test tile, measured once for seed 0.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import tifffile

from analysis.core.cells.classes import CellClass
from analysis.core.cells.segmentation.base import RESULT_COLUMNS
from analysis.core.cells.segmentation.hovernet import (
    MONUSAC_MODEL,
    PANNUKE_MODEL,
    WEIGHTS_ENV,
    HoverNetInputError,
    HoverNetSegmenter,
    HoverNetUnavailable,
    ModelNuclei,
    merge_pannuke_monusac,
    to_tile_coordinates,
)


def _nuclei(instance_map: np.ndarray, types: dict[int, int]) -> ModelNuclei:
    rows = []
    for inst_id, nucleus_type in types.items():
        ys, xs = np.nonzero(instance_map == inst_id)
        rows.append({
            "inst_id": inst_id, "x": xs.mean(), "y": ys.mean(),
            "contour": np.array([[xs.min(), ys.min()], [xs.max(), ys.min()], [xs.max(), ys.max()]], np.int32),
            "type": nucleus_type, "prob": 0.9, "area_px": float(len(xs)),
        })
    return ModelNuclei(instance_map=instance_map, table=pd.DataFrame(rows))


def test_merge_follows_the_documented_rules():
    pan_map = np.zeros((40, 40), np.int32)
    pan_map[0:10, 0:10] = 1  # neoplastic -> tumour, authority
    pan_map[20:30, 0:10] = 2  # inflammatory: replaced by MoNuSAC's lymphocyte
    pan_map[20:30, 20:30] = 3  # dead -> other, stays (nothing overlaps)
    pan_map[0:10, 30:40] = 4  # inflammatory, no MoNuSAC partner: stays as lymphocyte
    pannuke = _nuclei(pan_map, {1: 1, 2: 2, 3: 4, 4: 2})
    mon_map = np.zeros((40, 40), np.int32)
    mon_map[1:9, 1:9] = 1  # macrophage inside the tumour nucleus: dropped
    mon_map[21:31, 1:11] = 2  # lymphocyte over PanNuke inflammatory (overlap 81/100): wins
    mon_map[32:40, 32:40] = 3  # neutrophil alone: added
    mon_map[12:18, 12:18] = 4  # epithelial: MoNuSAC epithelial is never used
    monusac = _nuclei(mon_map, {1: 3, 2: 2, 3: 4, 4: 1})
    merged = merge_pannuke_monusac(pannuke=pannuke, monusac=monusac)
    got = sorted(zip(merged["source"], merged["cls"], np.round(merged["x"]), np.round(merged["y"])))
    assert got == sorted([
        ("pannuke", "tumour", 4.0, 4.0),
        ("pannuke", "other", 24.0, 24.0),  # x 20-29 -> mean 24.5 rounds to 24
        ("pannuke", "lymphocyte", 34.0, 4.0),
        ("monusac", "lymphocyte", 6.0, 26.0),
        ("monusac", "neutrophil", 36.0, 36.0),
    ])


def test_small_overlap_keeps_both():
    pan_map = np.zeros((20, 20), np.int32)
    pan_map[0:10, 0:10] = 1
    mon_map = np.zeros((20, 20), np.int32)
    mon_map[8:18, 8:18] = 1  # overlap 4 px of 100: different nuclei
    merged = merge_pannuke_monusac(pannuke=_nuclei(pan_map, {1: 3}), monusac=_nuclei(mon_map, {1: 2}))
    assert sorted(merged["cls"]) == ["lymphocyte", "stroma"]


def test_coordinates_map_back_to_tile_pixels():
    merged = pd.DataFrame({
        "x": [1.5, 0.0], "y": [3.5, 300.0],
        "contour": [np.array([[1, 3], [3, 3], [3, 5]]), np.array([[0, 298], [2, 299], [0, 300]])],
        "cls": ["tumour", "stroma"], "prob": [0.5, 1.0], "area_px": [16.0, 8.0],
    })
    # Model at 0.25 um/px, tile at 0.5 um/px: scale 2 model px per tile px.
    out = to_tile_coordinates(merged=merged, scale=2.0, tile_shape=(100, 150))
    assert tuple(out.columns) == RESULT_COLUMNS
    assert out.loc[0, "x"] == pytest.approx(0.5) and out.loc[0, "y"] == pytest.approx(1.5)
    assert out.loc[0, "area_px"] == pytest.approx(4.0)
    assert out.loc[1, "y"] == 99  # clipped into the tile
    assert out.loc[0, "contour"].dtype == np.int32
    assert out["contour"].map(lambda c: c[:, 1].max()).max() <= 99


def test_missing_weights_raise_a_clear_error(tmp_path, monkeypatch):
    with pytest.raises(HoverNetUnavailable, match=f"{PANNUKE_MODEL}.pth"):
        HoverNetSegmenter(weights_dir=tmp_path)
    monkeypatch.setenv(WEIGHTS_ENV, str(tmp_path / "nowhere"))
    with pytest.raises(HoverNetUnavailable, match="not found"):
        HoverNetSegmenter()
    monkeypatch.delenv(WEIGHTS_ENV)
    with pytest.raises(HoverNetUnavailable, match=WEIGHTS_ENV):
        HoverNetSegmenter(allow_download=False)


# Per-channel (mean, std) of each head's last-layer output on the test tile, seed 0.
_CALIBRATION = {
    PANNUKE_MODEL: {
        "np": ([0.02896, 0.01818], [0.00400, 0.00497]),
        "hv": ([-0.08090, -0.04408], [0.00275, 0.00194]),
        "tp": ([0.05301, -0.04606, 0.02104, 0.02830, 0.00564, -0.02110],
               [0.00927, 0.00252, 0.00390, 0.00668, 0.00294, 0.00922]),
    },
    MONUSAC_MODEL: {
        "np": ([-0.00980, 0.06940], [0.00212, 0.01551]),
        "hv": ([-0.05626, -0.00702], [0.00621, 0.00648]),
        "tp": ([-0.14175, 0.04375, 0.10908, 0.04910, 0.08304], [0.00927, 0.00252, 0.00390, 0.00668, 0.00294]),
    },
}
# Target spread and offset of each head: np logits std 3 (+0.5 toward "nucleus"), hv +-0.5,
# tp standardised so that every type wins somewhere.
_TARGET = {"np": (3.0, [0.0, 0.5]), "hv": (0.5, 0.0), "tp": (1.0, 0.0)}


def _save_random_weights(folder) -> None:
    import torch
    from tiatoolbox.models.architecture.hovernet import HoVerNet

    for name, num_types in ((PANNUKE_MODEL, 6), (MONUSAC_MODEL, 5)):
        torch.manual_seed(0)
        state = HoVerNet(num_types=num_types, mode="fast").state_dict()
        for head, (scale, offset) in _TARGET.items():
            mean, std = (torch.tensor(v, dtype=torch.float32) for v in _CALIBRATION[name][head])
            k = scale / std
            state[f"decoder.{head}.u0.conv.weight"] *= k[:, None, None, None]
            bias = state[f"decoder.{head}.u0.conv.bias"]
            state[f"decoder.{head}.u0.conv.bias"] = (bias - mean) * k + torch.as_tensor(offset, dtype=torch.float32)
        torch.save(state, folder / f"{name}.pth")


@pytest.mark.slow
def test_whole_path_with_random_weights(tmp_path, monkeypatch, shared_file, capfd):
    """Real tile -> resize to 0.25 um/px -> patches -> infer_batch -> postproc -> merge -> tile px."""
    import torch

    torch.set_num_threads(2)
    _save_random_weights(tmp_path)
    monkeypatch.setenv(WEIGHTS_ENV, str(tmp_path))
    segmenter = HoverNetSegmenter(weights_label="random-init")
    assert segmenter.info.weights == "random-init"
    assert segmenter.info.params["models"] == [PANNUKE_MODEL, MONUSAC_MODEL]
    assert segmenter.info.approximate is False and segmenter.target_mpp == 0.25
    # 82 x 82 px at 0.5 um/px = 164 x 164 at the model's 0.25: one patch per checkpoint.
    rgb = tifffile.imread(shared_file("nuclei/gbm/01.tif"))[:82, :82, :3]
    capfd.readouterr()
    result = segmenter.segment(rgb=rgb, mpp=0.5)
    assert "Generating 'info_dict'" not in capfd.readouterr().err, "tiatoolbox's progress bar in the worker log"
    assert tuple(result.columns) == RESULT_COLUMNS
    assert len(result) >= 1, "calibrated random weights should give some nuclei"
    assert set(result["cls"]) <= {c.value for c in CellClass}
    assert result["x"].between(0, 81).all() and result["y"].between(0, 81).all()
    assert result["prob"].between(0, 1).all() and (result["area_px"] > 0).all()
    for contour in result["contour"]:
        assert contour.dtype == np.int32 and contour.shape[1] == 2 and len(contour) >= 3
        assert contour.min() >= 0 and contour.max() <= 81
    # Each centroid lies inside its contour's bounding box (coordinates were mapped together).
    for (x, y), contour in zip(result[["x", "y"]].to_numpy(), result["contour"]):
        assert contour[:, 0].min() - 1 <= x <= contour[:, 0].max() + 1
        assert contour[:, 1].min() - 1 <= y <= contour[:, 1].max() + 1
    with pytest.raises(HoverNetInputError, match="mpp"):
        segmenter.segment(rgb=rgb, mpp=0.0)
    # Weights of the wrong checkpoint do not load: a clear error, not a crash later.
    (tmp_path / f"{MONUSAC_MODEL}.pth").unlink()
    (tmp_path / f"{MONUSAC_MODEL}.pth").symlink_to(tmp_path / f"{PANNUKE_MODEL}.pth")
    with pytest.raises(HoverNetUnavailable, match="do not load"):
        HoverNetSegmenter(weights_dir=tmp_path)

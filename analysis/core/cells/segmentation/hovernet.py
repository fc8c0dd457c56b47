"""HoVer-Net nucleus segmentation through tiatoolbox: PanNuke + MoNuSAC merged as FUSCC did.

HoVer-Net: Graham et al., "HoVer-Net: Simultaneous segmentation and classification of
nuclei in multi-tissue histology images", Med Image Anal 58:101563, 2019. We run the
tiatoolbox 2.x architecture (tiatoolbox.models.architecture.hovernet.HoVerNet, "fast"
mode as in the PanNuke paper) with its own ``infer_batch`` and ``postproc`` (the HoVer-Net
np/hv marker watershed and per-instance type vote), on one tile:

1. The tile is resized to the checkpoints' 0.25 um/px (both ioconfigs say 0.25 mpp).
2. It is cut into 256 x 256 input patches whose 164 x 164 centres tile the image
   (stride 164, margin 46 = (256 - 164) / 2, mirrored padding at the tile border),
   exactly the patch geometry of the tiatoolbox ioconfig; ``infer_batch`` runs them.
3. The np / hv / tp centre outputs are stitched into whole-tile maps and post-processed
   once (so no nucleus is cut at a patch seam), then mapped back to the tile's pixels.

Two checkpoints, as FUSCC ran them (DESIGN.md 2.1): "hovernet_fast-pannuke" gives tumour
(1 neoplastic) and stroma (3 connective); "hovernet_fast-monusac" gives lymphocyte (2),
macrophage (3), neutrophil (4). Merge (``merge_pannuke_monusac``), by overlap =
intersection / smaller area of two nuclei at the model resolution:
- PanNuke tumour / stroma nuclei are kept as they are (PanNuke is the authority for them);
  a MoNuSAC immune nucleus overlapping one by >= 0.5 is dropped.
- A MoNuSAC immune nucleus overlapping a PanNuke inflammatory / dead / epithelial nucleus
  by >= 0.5 replaces it (MoNuSAC names the immune subtype).
- Other MoNuSAC immune nuclei are added; MoNuSAC epithelial nuclei are not used.
- PanNuke inflammatory nuclei no MoNuSAC nucleus replaced stay, as lymphocyte
  (classes.PANNUKE_TO_CLASS); PanNuke dead / epithelial stay as "other".

Weights: a folder named by the LADDER_HOVERNET_WEIGHTS environment variable (or the
``weights_dir`` argument) holding "hovernet_fast-pannuke.pth" and
"hovernet_fast-monusac.pth" (tiatoolbox's own file names: fetch_pretrained_weights
saves ``f"{model_name}.pth"``); otherwise tiatoolbox downloads them from its model hub
where the network allows. When neither works, ``HoverNetUnavailable`` says why; the
caller falls back to the classical segmenter and the UI says so.

tiatoolbox and torch are imported inside functions: they take seconds to import.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from analysis.core.cells.classes import PANNUKE_TO_CLASS, CellClass
from analysis.core.cells.segmentation.base import RESULT_COLUMNS, SegmenterInfo

PANNUKE_MODEL = "hovernet_fast-pannuke"
MONUSAC_MODEL = "hovernet_fast-monusac"
MODEL_MPP = 0.25  # both checkpoints' ioconfig: input and output at 0.25 um/px
PATCH_INPUT = 256  # ioconfig patch_input_shape
PATCH_OUTPUT = 164  # ioconfig patch_output_shape (fast mode) = stride
MARGIN = (PATCH_INPUT - PATCH_OUTPUT) // 2  # 46
WEIGHTS_ENV = "LADDER_HOVERNET_WEIGHTS"
MONUSAC_TO_CLASS = {
    2: CellClass.LYMPHOCYTE,
    3: CellClass.MACROPHAGE,
    4: CellClass.NEUTROPHIL,
}
PANNUKE_KEPT = {1: CellClass.TUMOUR, 3: CellClass.STROMA}
OVERLAP_SAME_NUCLEUS = 0.5
VERSION = "1"


class HoverNetUnavailable(RuntimeError):
    """HoVer-Net cannot run here (no weights, no network, no tiatoolbox); use classical."""


class HoverNetInputError(ValueError):
    """A tile or resolution HoVer-Net cannot work on."""


def _weights_file(*, model_name: str, weights_dir: Path | None, allow_download: bool) -> str:
    """Local weights file of a tiatoolbox checkpoint, downloading it if allowed."""
    if weights_dir is not None:
        path = Path(weights_dir) / f"{model_name}.pth"
        if path.is_file():
            return str(path)
        raise HoverNetUnavailable(
            f"HoVer-Net weights {path} not found: {WEIGHTS_ENV} / weights_dir must be a "
            f"folder holding {PANNUKE_MODEL}.pth and {MONUSAC_MODEL}.pth"
        )
    if not allow_download:
        raise HoverNetUnavailable(
            f"no HoVer-Net weights: set {WEIGHTS_ENV} to a folder holding "
            f"{PANNUKE_MODEL}.pth and {MONUSAC_MODEL}.pth"
        )
    try:
        from tiatoolbox.models.architecture import fetch_pretrained_weights
    except ImportError as error:
        raise HoverNetUnavailable(f"tiatoolbox is not installed ({error})") from error
    try:
        return str(fetch_pretrained_weights(model_name))
    except Exception as error:  # network, hub or disk: all mean "not available here"
        raise HoverNetUnavailable(
            f"could not download {model_name} weights ({type(error).__name__}: {error}); "
            f"set {WEIGHTS_ENV} to a folder holding {PANNUKE_MODEL}.pth and {MONUSAC_MODEL}.pth"
        ) from error


def _quiet_instance_info_progress() -> None:
    """tiatoolbox's ``HoVerNet.postproc`` calls ``get_instance_info`` with its progress bar on and
    no way to turn it off: one tqdm bar per tile in the worker's log. Give that module a tqdm
    that is always disabled (our own progress goes to the job's progress bar instead)."""
    from tiatoolbox.models.architecture import hovernet as tia_hovernet

    if getattr(tia_hovernet.tqdm, "ladder_quiet", False):
        return
    loud = tia_hovernet.tqdm

    def quiet(*args, **kwargs):
        kwargs["disable"] = True
        return loud(*args, **kwargs)

    quiet.ladder_quiet = True
    tia_hovernet.tqdm = quiet


def load_hovernet(*, model_name: str, weights_dir: Path | None = None, allow_download: bool = True):
    """tiatoolbox HoVerNet of ``model_name`` with its weights loaded (strict), in eval mode."""
    # Weights first: a missing file is reported without the slow tiatoolbox import.
    weights = _weights_file(model_name=model_name, weights_dir=weights_dir, allow_download=allow_download)
    try:
        from tiatoolbox.models.architecture import get_pretrained_model
    except ImportError as error:
        raise HoverNetUnavailable(f"tiatoolbox is not installed ({error})") from error
    _quiet_instance_info_progress()
    try:
        model, _ = get_pretrained_model(model_name, pretrained_weights=weights)
    except (RuntimeError, KeyError, OSError, ValueError) as error:
        raise HoverNetUnavailable(f"weights {weights} do not load into {model_name}: {error}") from error
    model.eval()
    return model, weights


def _resize(*, image: np.ndarray, shape: tuple[int, int], nearest: bool) -> np.ndarray:
    import cv2

    if image.shape[:2] == shape:
        return image
    interpolation = cv2.INTER_NEAREST if nearest else cv2.INTER_LINEAR
    return cv2.resize(image, (shape[1], shape[0]), interpolation=interpolation)


@dataclass(frozen=True)
class RawMaps:
    """Stitched HoVer-Net head outputs over a tile at model resolution."""

    np_map: np.ndarray  # (H, W, 1) nucleus probability
    hv_map: np.ndarray  # (H, W, 2) horizontal / vertical distance maps
    tp_map: np.ndarray  # (H, W, 1) type id per pixel (argmax of the type softmax)


def infer_tile_maps(*, model, rgb: np.ndarray, device: str = "cpu", batch_size: int = 8) -> RawMaps:
    """Run ``model.infer_batch`` over 256 px patches whose 164 px centres tile ``rgb``."""
    import torch

    height, width = rgb.shape[:2]
    rows = -(-height // PATCH_OUTPUT)
    cols = -(-width // PATCH_OUTPUT)
    pad_bottom = rows * PATCH_OUTPUT - height + MARGIN
    pad_right = cols * PATCH_OUTPUT - width + MARGIN
    padded = np.pad(rgb, ((MARGIN, pad_bottom), (MARGIN, pad_right), (0, 0)), mode="reflect")
    origins = [(r * PATCH_OUTPUT, c * PATCH_OUTPUT) for r in range(rows) for c in range(cols)]
    np_map = np.zeros((rows * PATCH_OUTPUT, cols * PATCH_OUTPUT, 1), np.float32)
    hv_map = np.zeros((rows * PATCH_OUTPUT, cols * PATCH_OUTPUT, 2), np.float32)
    tp_map = np.zeros((rows * PATCH_OUTPUT, cols * PATCH_OUTPUT, 1), np.float32)
    for start in range(0, len(origins), batch_size):
        chunk = origins[start : start + batch_size]
        batch = np.stack([padded[y : y + PATCH_INPUT, x : x + PATCH_INPUT] for y, x in chunk])
        np_out, hv_out, tp_out = model.infer_batch(model, torch.from_numpy(batch), device=device)
        for k, (y, x) in enumerate(chunk):
            np_map[y : y + PATCH_OUTPUT, x : x + PATCH_OUTPUT] = np_out[k]
            hv_map[y : y + PATCH_OUTPUT, x : x + PATCH_OUTPUT] = hv_out[k]
            tp_map[y : y + PATCH_OUTPUT, x : x + PATCH_OUTPUT] = tp_out[k]
    return RawMaps(
        np_map=np_map[:height, :width], hv_map=hv_map[:height, :width], tp_map=tp_map[:height, :width]
    )


@dataclass(frozen=True)
class ModelNuclei:
    """One checkpoint's nuclei on a tile, at model resolution."""

    instance_map: np.ndarray  # (H, W) int32 label image, ids as in ``table``
    table: pd.DataFrame  # columns: inst_id, x, y, contour, type, prob, area_px


def run_checkpoint(*, model, rgb_model_res: np.ndarray, device: str = "cpu") -> ModelNuclei:
    """Infer + tiatoolbox ``postproc`` on one tile already at the model's resolution."""
    maps = infer_tile_maps(model=model, rgb=rgb_model_res, device=device)
    (result,) = model.postproc([maps.np_map, maps.hv_map, maps.tp_map])
    instance_map = np.asarray(result["predictions"], dtype=np.int32)
    info = result["info_dict"]
    ids = np.unique(instance_map)
    ids = ids[ids > 0]
    areas = np.bincount(instance_map.ravel(), minlength=int(instance_map.max()) + 1)
    n = len(info.get("centroid", []))
    if n == 0:
        table = pd.DataFrame({"inst_id": [], "x": [], "y": [], "contour": [], "type": [],
                              "prob": [], "area_px": []})
        return ModelNuclei(instance_map=instance_map, table=table)
    # info_dict columns are in instance-id order; instances postproc skipped (< 3 contour
    # points) are absent from it, so recover each row's id from its centroid pixel.
    centroids = np.asarray([np.asarray(c, dtype=np.float64) for c in info["centroid"]])
    contours = [_unpad_contour(np.asarray(c)) for c in info["contours"]]
    inst_ids = _ids_of_rows(instance_map=instance_map, contours=contours, candidates=ids)
    table = pd.DataFrame({
        "inst_id": inst_ids,
        "x": centroids[:, 0],
        "y": centroids[:, 1],
        "contour": contours,
        "type": np.asarray(info["type"], dtype=np.int64),
        "prob": np.asarray(info["prob"], dtype=np.float32),
        "area_px": areas[inst_ids].astype(np.float32),
    })
    return ModelNuclei(instance_map=instance_map, table=table)


def _unpad_contour(contour: np.ndarray) -> np.ndarray:
    """tiatoolbox pads ragged contour lists (pad_contours) with -1 rows; drop them."""
    contour = np.asarray(contour).reshape(-1, 2)
    keep = ~(contour < 0).all(axis=1)
    return contour[keep].astype(np.int32)


def _ids_of_rows(*, instance_map: np.ndarray, contours: list[np.ndarray], candidates: np.ndarray) -> np.ndarray:
    """Instance id under each contour's points (the mode: contour points lie on the nucleus)."""
    ids = np.zeros(len(contours), dtype=np.int64)
    height, width = instance_map.shape
    for k, contour in enumerate(contours):
        xs = np.clip(contour[:, 0], 0, width - 1)
        ys = np.clip(contour[:, 1], 0, height - 1)
        values = instance_map[ys, xs]
        values = values[values > 0]
        ids[k] = np.bincount(values).argmax() if len(values) else 0
    return ids


def _overlap_fraction(*, a_map: np.ndarray, b_map: np.ndarray) -> pd.DataFrame:
    """Pairs of overlapping instances of two label images: inter / smaller area."""
    both = (a_map > 0) & (b_map > 0)
    width = int(b_map.max()) + 1
    codes, inter = np.unique(a_map[both].astype(np.int64) * width + b_map[both], return_counts=True)
    a_ids, b_ids = codes // width, codes % width
    a_area = np.bincount(a_map.ravel())
    b_area = np.bincount(b_map.ravel())
    smaller = np.minimum(a_area[a_ids], b_area[b_ids])
    return pd.DataFrame({"a": a_ids, "b": b_ids, "fraction": inter / smaller})


def merge_pannuke_monusac(*, pannuke: ModelNuclei, monusac: ModelNuclei) -> pd.DataFrame:
    """Merged nuclei (model resolution) with a CellClass ``cls``; rules in the module docstring.

    Returns the rows of both tables that survive, with columns x, y, contour, cls, prob,
    area_px and ``source`` ("pannuke" / "monusac").
    """
    pan = pannuke.table.copy()
    mon = monusac.table[monusac.table["type"].isin(list(MONUSAC_TO_CLASS))].copy()
    pan["cls"] = [PANNUKE_TO_CLASS.get(int(t), CellClass.OTHER).value for t in pan["type"]]
    pan["source"] = "pannuke"
    mon["cls"] = [MONUSAC_TO_CLASS[int(t)].value for t in mon["type"]]
    mon["source"] = "monusac"
    pairs = _overlap_fraction(a_map=monusac.instance_map, b_map=pannuke.instance_map)
    pairs = pairs[pairs["fraction"] >= OVERLAP_SAME_NUCLEUS]
    pan_authority = set(pan.loc[pan["type"].isin(list(PANNUKE_KEPT)), "inst_id"].astype(int))
    mon_ids = set(mon["inst_id"].astype(int))
    drop_mon: set[int] = set()
    drop_pan: set[int] = set()
    for mon_id, group in pairs.groupby("a"):
        if int(mon_id) not in mon_ids:
            continue  # a MoNuSAC epithelial nucleus: not used
        partners = set(group["b"].astype(int))
        if partners & pan_authority:
            drop_mon.add(int(mon_id))  # PanNuke says tumour / stroma: it wins
        else:
            drop_pan |= partners  # inflammatory / dead / epithelial: MoNuSAC names it
    pan = pan[~pan["inst_id"].astype(int).isin(drop_pan)]
    mon = mon[~mon["inst_id"].astype(int).isin(drop_mon)]
    merged = pd.concat([pan, mon], ignore_index=True)
    return merged[["x", "y", "contour", "cls", "prob", "area_px", "source"]]


class HoverNetSegmenter:
    """HoVer-Net PanNuke + MoNuSAC through tiatoolbox (base.Segmenter).

    Loads both checkpoints on construction (raises HoverNetUnavailable when it cannot).
    """

    target_mpp = MODEL_MPP
    stains = ("he",)
    label = "HoVer-Net"

    def __init__(
        self,
        *,
        weights_dir: str | Path | None = None,
        allow_download: bool = True,
        device: str = "cpu",
        weights_label: str | None = None,
    ) -> None:
        if weights_dir is None and os.environ.get(WEIGHTS_ENV):
            weights_dir = os.environ[WEIGHTS_ENV]
        weights_dir = Path(weights_dir) if weights_dir is not None else None
        self.device = device
        self.pannuke, pannuke_weights = load_hovernet(
            model_name=PANNUKE_MODEL, weights_dir=weights_dir, allow_download=allow_download
        )
        self.monusac, monusac_weights = load_hovernet(
            model_name=MONUSAC_MODEL, weights_dir=weights_dir, allow_download=allow_download
        )
        if device != "cpu":
            self.pannuke.to(device)
            self.monusac.to(device)
        self.info = SegmenterInfo(
            name="hovernet-pannuke+monusac",
            version=VERSION,
            approximate=False,
            weights=weights_label or f"{pannuke_weights};{monusac_weights}",
            params={
                "models": [PANNUKE_MODEL, MONUSAC_MODEL],
                "model_mpp": MODEL_MPP,
                "patch_input": PATCH_INPUT,
                "patch_output": PATCH_OUTPUT,
                "overlap_same_nucleus": OVERLAP_SAME_NUCLEUS,
            },
        )

    def segment(self, *, rgb: np.ndarray, mpp: float) -> pd.DataFrame:
        rgb = np.asarray(rgb)
        if rgb.ndim != 3 or rgb.shape[2] not in (3, 4) or rgb.dtype != np.uint8:
            raise HoverNetInputError(
                f"expected an (H, W, 3) uint8 RGB tile, got shape {rgb.shape} dtype {rgb.dtype}"
            )
        if mpp is None or not np.isfinite(mpp) or not 0.05 <= float(mpp) <= 4.0:
            raise HoverNetInputError(f"mpp must be a resolution in um/px in [0.05, 4], got {mpp!r}")
        rgb = np.ascontiguousarray(rgb[..., :3])
        scale = float(mpp) / MODEL_MPP  # model pixels per tile pixel
        model_shape = (max(1, int(round(rgb.shape[0] * scale))), max(1, int(round(rgb.shape[1] * scale))))
        if min(model_shape) < 2:
            raise HoverNetInputError(f"tile {rgb.shape[:2]} at {mpp} um/px is too small")
        at_model = _resize(image=rgb, shape=model_shape, nearest=False)
        pannuke = run_checkpoint(model=self.pannuke, rgb_model_res=at_model, device=self.device)
        monusac = run_checkpoint(model=self.monusac, rgb_model_res=at_model, device=self.device)
        merged = merge_pannuke_monusac(pannuke=pannuke, monusac=monusac)
        return to_tile_coordinates(merged=merged, scale=scale, tile_shape=rgb.shape[:2])


def to_tile_coordinates(*, merged: pd.DataFrame, scale: float, tile_shape: tuple[int, int]) -> pd.DataFrame:
    """Model-resolution nuclei back to tile pixels (RESULT_COLUMNS).

    Pixel centres map as x_tile = (x_model + 0.5) / scale - 0.5 (cv2.resize's geometry);
    contours are rounded and clipped into the tile; areas scale by 1 / scale^2.
    """
    height, width = tile_shape
    x = (merged["x"].to_numpy(np.float64) + 0.5) / scale - 0.5
    y = (merged["y"].to_numpy(np.float64) + 0.5) / scale - 0.5
    contours = []
    for contour in merged["contour"]:
        c = (np.asarray(contour, dtype=np.float64) + 0.5) / scale - 0.5
        c = np.rint(c).astype(np.int32)
        c[:, 0] = np.clip(c[:, 0], 0, width - 1)
        c[:, 1] = np.clip(c[:, 1], 0, height - 1)
        contours.append(c)
    return pd.DataFrame({
        "x": np.clip(x, 0, width - 1),
        "y": np.clip(y, 0, height - 1),
        "contour": pd.Series(contours, dtype=object),
        "cls": merged["cls"].astype(object).to_numpy(),
        "prob": merged["prob"].to_numpy(np.float32),
        "area_px": (merged["area_px"].to_numpy(np.float64) / scale**2).astype(np.float32),
    }, columns=list(RESULT_COLUMNS))

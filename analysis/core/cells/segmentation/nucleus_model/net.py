"""The nucleus model: a small U-Net with HoVer-Net's three outputs, and its post-processing.

Why this design (HoVer-Net: Graham et al., Medical Image Analysis 58, 2019):

- **Nuclear pixels (NP)**, **horizontal/vertical distance maps (HV)** and **nuclear type (TP)**
  from one shared encoder-decoder. The HV maps give each pixel its normalised offset from its
  nucleus's centre of mass; their gradient is steep exactly where two touching nuclei meet,
  so a marker-controlled watershed separates them without any per-object search. StarDist
  needs star-convex shapes and a polygon NMS; Cellpose's flow-following is an iterative
  per-pixel simulation: both cost more on CPU for no gain on H&E nuclei.
- The product already speaks HoVer-Net (its JSON, its PanNuke type codes, tiatoolbox's
  checkpoints), so the same post-processing and instance/type rules apply to both.
- Small on purpose: four resolution levels, 16-128 channels (about 1.9 M parameters), run at
  0.5 um/px, so a whole slide runs on CPU. Trained from scratch (no downloadable weights).
"""
from __future__ import annotations

import numpy as np

ARCH_VERSION = "ladder-hovernet-small-v1"


def _torch():
    import torch

    return torch


def build_model(*, n_classes: int, widths=(16, 32, 64, 128, 160)):
    """U-Net: encoder of double 3x3 convs (BN, ReLU) with max-pool, decoder with bilinear
    upsampling + skip concatenation, three 1x1 heads (np: 1, hv: 2, tp: n_classes)."""
    torch = _torch()
    nn = torch.nn

    def block(c_in, c_out):
        return nn.Sequential(
            nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
            nn.BatchNorm2d(c_out),
            nn.ReLU(inplace=True),
            nn.Conv2d(c_out, c_out, 3, padding=1, bias=False),
            nn.BatchNorm2d(c_out),
            nn.ReLU(inplace=True),
        )

    class NucleusUNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.widths = tuple(widths)
            self.n_classes = n_classes
            self.down = nn.ModuleList()
            c_in = 3
            for w in widths:
                self.down.append(block(c_in, w))
                c_in = w
            self.up = nn.ModuleList()
            for w_skip in reversed(widths[:-1]):
                self.up.append(block(c_in + w_skip, w_skip))
                c_in = w_skip
            self.head = nn.Conv2d(c_in, 1 + 2 + n_classes, 1)

        def forward(self, x):
            skips = []
            for i, stage in enumerate(self.down):
                if i:
                    x = torch.nn.functional.max_pool2d(x, 2)
                x = stage(x)
                skips.append(x)
            for stage, skip in zip(self.up, reversed(skips[:-1])):
                x = torch.nn.functional.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
                x = stage(torch.cat([x, skip], dim=1))
            return self.head(x)  # (B, 1 + 2 + K, H, W): np logit, hv (tanh later), tp logits

    return NucleusUNet()


def split_outputs(out):
    """np probability, hv in [-1, 1], tp logits."""
    torch = _torch()
    return torch.sigmoid(out[:, :1]), torch.tanh(out[:, 1:3]), out[:, 3:]


# --- targets -------------------------------------------------------------------------------


def hv_targets(labels: np.ndarray) -> np.ndarray:
    """HoVer-Net's horizontal and vertical maps (2, H, W): per nucleus, each pixel's offset from
    the nucleus's centre of mass, scaled to [-1, 0] on one side and [0, 1] on the other
    (Graham et al. 2019, section 3.2; as gen_targets in the public code)."""
    from scipy import ndimage as ndi

    hv = np.zeros((2,) + labels.shape, dtype=np.float32)
    for index, sl in enumerate(ndi.find_objects(labels), start=1):
        if sl is None:
            continue
        mask = labels[sl] == index
        if mask.sum() < 2:
            continue
        rows, cols = np.nonzero(mask)
        cy, cx = rows.mean(), cols.mean()
        for channel, offsets in ((0, cols - cx), (1, rows - cy)):
            values = offsets.astype(np.float32)
            neg, pos = values < 0, values > 0
            if neg.any():
                values[neg] /= -values[neg].min()
            if pos.any():
                values[pos] /= values[pos].max()
            view = hv[channel][sl]
            view[rows, cols] = values
    return hv


def type_targets(*, labels: np.ndarray, allowed: dict[int, int]) -> np.ndarray:
    """Per pixel, the bitmask of allowed classes of its nucleus (0 where none is known)."""
    lut = np.zeros(int(labels.max()) + 1, dtype=np.int64)
    for index, bits in allowed.items():
        if index < len(lut):
            lut[index] = bits
    return lut[labels]


# --- post-processing -------------------------------------------------------------------------


def fill_holes(mask: np.ndarray) -> np.ndarray:
    """`scipy.ndimage.binary_fill_holes(mask)`, the same pixels, ~3x faster on a tile: one
    labelling of the background (4-connected, as fill_holes propagates) instead of dilating the
    image border pixel by pixel; holes are the background parts that touch no image edge."""
    from scipy import ndimage as ndi

    mask = np.asarray(mask, dtype=bool)
    background, n = ndi.label(~mask)
    touches_edge = np.zeros(n + 1, dtype=bool)
    touches_edge[0] = True  # label 0: the mask itself
    for edge in (background[0], background[-1], background[:, 0], background[:, -1]):
        touches_edge[edge] = True
    return mask | ~touches_edge[background]


def instances_from_maps(
    *, np_prob: np.ndarray, hv: np.ndarray, np_threshold: float = 0.5, edge_threshold: float = 0.6,
    min_area_px: int = 10, marker_min_px: int = 4, sobel_ksize: int = 11,
) -> np.ndarray:
    """Instance label map from NP and HV maps: HoVer-Net's marker-controlled watershed
    (Graham et al. 2019, section 3.4; `proc_np_hv` in the public code and in tiatoolbox).

    The Sobel gradient of each HV map, min-max normalised, is large on the boundary between
    nuclei; markers are nuclear pixels away from those boundaries; the watershed grows them
    over the 'energy' (1 - gradient) inside the nuclear mask."""
    import cv2
    from scipy import ndimage as ndi
    from skimage.segmentation import watershed

    fg = np_prob >= np_threshold
    fg = fill_holes(fg)
    fg_labels, n = ndi.label(fg)
    if n == 0:
        return np.zeros(np_prob.shape, dtype=np.int32)
    sizes = np.bincount(fg_labels.ravel())
    fg = (sizes >= min_area_px)[fg_labels] & fg

    def norm(channel):
        return cv2.normalize(channel.astype(np.float32), None, 0, 1, cv2.NORM_MINMAX)

    h_dir, v_dir = norm(hv[0]), norm(hv[1])
    sobel_h = cv2.Sobel(h_dir, cv2.CV_32F, 1, 0, ksize=sobel_ksize)
    sobel_v = cv2.Sobel(v_dir, cv2.CV_32F, 0, 1, ksize=sobel_ksize)
    sobel_h = 1 - norm(sobel_h)
    sobel_v = 1 - norm(sobel_v)
    overall = np.maximum(sobel_h, sobel_v)
    overall = overall - (1 - fg)
    overall[overall < 0] = 0
    energy = -cv2.GaussianBlur((1.0 - overall) * fg, (3, 3), 0)
    overall = (overall >= edge_threshold).astype(np.int32)
    marker = fg.astype(np.int32) - overall
    marker[marker < 0] = 0
    marker = fill_holes(marker).astype(np.uint8)
    marker = cv2.morphologyEx(marker, cv2.MORPH_OPEN, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5)))
    markers, n_markers = ndi.label(marker)
    if n_markers:
        msizes = np.bincount(markers.ravel())
        small = msizes < marker_min_px
        small[0] = False
        markers[small[markers]] = 0
    out = watershed(energy, markers=markers, mask=fg).astype(np.int32)
    # drop fragments below the minimum area
    sizes = np.bincount(out.ravel())
    out[(sizes < min_area_px)[out]] = 0
    return out


def instance_contours(labels: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
    """(instance ids, outer contour of each: OpenCV, [x, y] int32 in tile pixels), for every
    instance with a contour of at least 3 points (the largest piece where it has several)."""
    import cv2
    from scipy import ndimage as ndi

    ids, contours = [], []
    for index, sl in enumerate(ndi.find_objects(labels), start=1):
        if sl is None:
            continue
        mask = (labels[sl] == index).astype(np.uint8)
        found, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        if not found:
            continue
        contour = max(found, key=cv2.contourArea).reshape(-1, 2).astype(np.int32)
        if len(contour) < 3:
            continue
        contour[:, 0] += sl[1].start
        contour[:, 1] += sl[0].start
        ids.append(index)
        contours.append(contour)
    return np.asarray(ids, dtype=np.int64), contours

"""A tumour call from a nucleus *and its neighbours* (QuPath-style smoothed features and a
logistic regression, fitted on the model's own outlines): measured beside the network's class
head in cross-validation (train_segmenter) and in benchmarks/tumour_context.py. Not the
product's call; why not is below.

Why try it: the network's head decides tumour vs non-tumour from a 20x receptive field and
memorises the few labelled nuclei there are (450 on PanNuke breast): cross-validated by slide
its balanced accuracy is 0.53. A pathologist calls a nucleus malignant from its size, shape and
chromatin and from the nuclei around it; QuPath's object classifiers do the same with
"Add smoothed features" (each measurement averaged over neighbours with a Gaussian weight of
FWHM 25 um; Bankhead et al., Sci Rep 7:16878, 2017). Here:

- six measurements per nucleus: log area (um^2), eccentricity (of the pixel inertia tensor,
  as scikit-image's regionprops), solidity (area over the contour's convex hull), circularity
  (4 pi area / perimeter^2), mean and s.d. of hematoxylin optical density (scikit-image's
  H-E-DAB deconvolution, so DAB on IHC does not count) relative to the tile's median nucleus;
- the same six smoothed over neighbours at FWHM 25 and 50 um (self included, weights
  normalised, so nuclei at a tile edge get the mean of the neighbours they have);
- a standardised, class-balanced logistic regression on those 18 numbers, fitted on the
  nuclei the *model* outlines where they match a labelled one (hand outlines are drawn larger:
  a classifier fitted on them misjudges the model's, see the benchmark).

Why it is not the product's call: on held-out PanNuke tiles it does much better than the head
(benchmark: 0.80 against 0.53), but on the her2st section (0.7 um/px, another lab and
scanner) it calls every nucleus tumour where the head separates the tumour nests from the
stroma as a pathologist would: its largest weight is the neighbourhood's absolute nuclear size,
which is what changes with scanner, focus and resolution. 450 labelled nuclei from one source
cannot teach a call that travels; more labelled sources could (docs/segmentation.md).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

FWHM_UM = (25.0, 50.0)
OWN = ("log_area_um2", "eccentricity", "solidity", "circularity", "hematoxylin_mean_rel", "hematoxylin_sd_rel")
FEATURES = OWN + tuple(f"{name}_smoothed_{int(f)}um" for f in FWHM_UM for name in OWN)


def _hematoxylin_od(rgb: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Hematoxylin optical density of the pixels under `mask` (skimage.color.rgb2hed, channel 0)."""
    from skimage.color import rgb2hed

    pixels = rgb[mask][:, None, :3]
    return rgb2hed(pixels)[:, 0, 0] if len(pixels) else np.zeros(0)


def measure(*, labels: np.ndarray, rgb: np.ndarray, mpp: float, ids: np.ndarray, contours: list) -> np.ndarray:
    """FEATURES (n, 18) for the instances `ids` of `labels`, whose outer contours (OpenCV,
    tile pixels) are `contours`; `rgb` is the tile the labels were drawn on."""
    import cv2

    ids = np.asarray(ids, dtype=np.int64)
    n = len(ids)
    if n == 0:
        return np.zeros((0, len(FEATURES)))
    mask = labels > 0
    which = labels[mask].astype(np.int64)
    size = int(max(labels.max(), ids.max())) + 1
    ys, xs = np.nonzero(mask)
    area = np.bincount(which, minlength=size).astype(float)
    sx, sy = np.bincount(which, xs, size), np.bincount(which, ys, size)
    sxx, syy, sxy = np.bincount(which, xs * xs * 1.0, size), np.bincount(which, ys * ys * 1.0, size), np.bincount(which, xs * ys * 1.0, size)
    h = _hematoxylin_od(rgb, mask)
    sh, shh = np.bincount(which, h, size), np.bincount(which, h * h, size)

    a = np.maximum(area[ids], 1)
    cx, cy = sx[ids] / a, sy[ids] / a
    mu20, mu02, mu11 = sxx[ids] / a - cx**2, syy[ids] / a - cy**2, sxy[ids] / a - cx * cy
    half_trace, root = (mu20 + mu02) / 2, np.sqrt(np.maximum(((mu20 - mu02) / 2) ** 2 + mu11**2, 0))
    major, minor = half_trace + root, np.maximum(half_trace - root, 0)
    eccentricity = np.where(major > 0, np.sqrt(np.clip(1 - minor / np.where(major > 0, major, 1), 0, 1)), 0)
    perimeter = np.array([max(cv2.arcLength(c.reshape(-1, 1, 2).astype(np.int32), True), 1.0) for c in contours])
    hull = np.array([max(cv2.contourArea(cv2.convexHull(c.reshape(-1, 1, 2).astype(np.int32))), 1.0) for c in contours])
    h_mean = sh[ids] / a
    h_sd = np.sqrt(np.maximum(shh[ids] / a - h_mean**2, 0))
    reference = max(float(np.median(h_mean)), 1e-6)
    area_um2 = a * mpp**2
    own = np.c_[np.log(area_um2), eccentricity, np.clip(a / np.maximum(hull, a * 0.5), 0, 1),
                np.clip(4 * np.pi * a / perimeter**2, 0, 2), h_mean / reference, h_sd / reference]
    return np.hstack([own, *(_smoothed(own, np.c_[cx, cy] * mpp, fwhm) for fwhm in FWHM_UM)])


def _smoothed(values: np.ndarray, centres_um: np.ndarray, fwhm_um: float) -> np.ndarray:
    """Gaussian-weighted mean of `values` over each nucleus and its neighbours (QuPath's smoothing)."""
    from scipy.spatial import cKDTree

    sigma = fwhm_um / (2 * np.sqrt(2 * np.log(2)))
    tree = cKDTree(centres_um)
    pairs = tree.sparse_distance_matrix(tree, 3 * sigma, output_type="coo_matrix")
    others = pairs.row != pairs.col  # scipy stores the zero self-distances too: drop them, add self once below
    n = len(values)
    rows, cols = np.r_[pairs.row[others], np.arange(n)], np.r_[pairs.col[others], np.arange(n)]
    weights = np.r_[np.exp(-0.5 * (pairs.data[others] / sigma) ** 2), np.ones(n)]
    total = np.bincount(rows, weights, n)
    return np.stack([np.bincount(rows, weights * values[cols, k], n) for k in range(values.shape[1])], 1) / total[:, None]


def call_tumour(*, context: "TumourContextModel", classes, labels, rgb, mpp, probs, outlines=None):
    """Class index and probability per instance id (arrays indexed by id, as segment_rgb's):
    tumour where the context model says so (p >= 0.5); otherwise the network's likeliest
    non-tumour class (`probs`: its (K, n + 1) per-instance class probabilities), with that
    class's share of the non-tumour probability scaled by (1 - p)."""
    from analysis.core.cells.segmentation.nucleus_model.net import instance_contours

    ids, contours = outlines if outlines is not None else instance_contours(labels)
    tumour = list(classes).index("tumour")
    others = np.array([k for k in range(len(classes)) if k != tumour])
    p = context.tumour_probability(measure(labels=labels, rgb=rgb, mpp=mpp, ids=ids, contours=contours))
    rest = probs[others][:, ids]  # (K - 1, n)
    best = rest.argmax(0) if len(ids) else np.zeros(0, dtype=np.int64)
    share = rest[best, np.arange(len(ids))] / np.maximum(rest.sum(0), 1e-9)
    cls = np.zeros(probs.shape[1], dtype=np.int64)
    prob = np.zeros(probs.shape[1], dtype=np.float64)
    is_tumour = p >= 0.5
    cls[ids] = np.where(is_tumour, tumour, others[best])
    prob[ids] = np.where(is_tumour, p, (1 - p) * share)
    return cls, prob


def labelled_rows(*, tile, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """FEATURES of the nuclei in `labels` (a model's outlines of `tile`, at its resolution) that
    match a class-labelled hand-drawn nucleus at IoU >= 0.5, and 1 where that nucleus is tumour."""
    from analysis.core.cells.segmentation.nucleus_model.data import class_bits
    from analysis.core.cells.segmentation.nucleus_model.evaluation import matched_pairs
    from analysis.core.cells.segmentation.nucleus_model.net import instance_contours

    tumour = class_bits({"tumour"})
    ids, contours = instance_contours(labels)
    table = measure(labels=labels, rgb=tile.rgb, mpp=tile.mpp, ids=ids, contours=contours)
    row_of = {int(i): k for k, i in enumerate(ids)}
    rows, truth = [], []
    for true_id, pred_id in zip(*matched_pairs(tile.labels, labels)):
        bits = tile.allowed.get(int(true_id), 0)
        if bits and int(pred_id) in row_of:
            rows.append(row_of[int(pred_id)])
            truth.append(int(bits == tumour))
    return table[rows].reshape(len(rows), len(FEATURES)), np.asarray(truth, dtype=int)


@dataclass(frozen=True)
class TumourContextModel:
    """A fitted standardised logistic regression over FEATURES."""

    mean: tuple
    scale: tuple
    coef: tuple
    intercept: float

    def tumour_probability(self, table: np.ndarray) -> np.ndarray:
        if len(table) == 0:
            return np.zeros(0)
        z = (np.asarray(table, float) - np.asarray(self.mean)) / np.asarray(self.scale)
        return 1 / (1 + np.exp(-(z @ np.asarray(self.coef) + self.intercept)))


def fit(*, tables: list[np.ndarray], tumour: list[np.ndarray], c: float = 0.3) -> TumourContextModel:
    """Fit on per-tile FEATURES tables and 0/1 tumour labels (class-balanced, L2, C=0.3)."""
    from sklearn.linear_model import LogisticRegression

    x = np.vstack(tables)
    y = np.concatenate(tumour).astype(int)
    if len(np.unique(y)) < 2:
        raise ValueError("the tumour call needs labelled tumour and non-tumour nuclei")
    mean, scale = x.mean(0), x.std(0)
    scale[scale == 0] = 1
    regression = LogisticRegression(C=c, class_weight="balanced", max_iter=5000).fit((x - mean) / scale, y)
    return TumourContextModel(mean=tuple(mean.tolist()), scale=tuple(scale.tolist()), coef=tuple(regression.coef_[0].tolist()),
                              intercept=float(regression.intercept_[0]))


def fit_tumour_context(*, loaded, tiles) -> TumourContextModel | None:
    """Fit the tumour call on `loaded`'s outlines of the class-labelled `tiles` (None where
    they hold no labelled tumour and non-tumour nuclei, e.g. outline-only sets)."""
    from analysis.core.cells.segmentation.nucleus_model.inference import segment_rgb

    tables, truth = [], []
    for tile in tiles:
        if not tile.allowed:
            continue
        labels, _, _, _ = segment_rgb(loaded=loaded, rgb=tile.rgb, mpp=tile.mpp)
        table, tumour = labelled_rows(tile=tile, labels=labels)
        tables.append(table)
        truth.append(tumour)
    if not truth or len(np.unique(np.concatenate(truth))) < 2:
        return None
    return fit(tables=tables, tumour=truth)

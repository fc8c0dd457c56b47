"""Hand-annotated nucleus tiles for training and measuring the nucleus model.

Reads the sets under ``shared/data/nuclei`` (one GeoJSON of polygons beside each image; see
its SOURCES.md): every tile becomes an image, an instance label map and, where the set has
classes, a set of allowed model classes per nucleus. Everything is resampled to the model's
working resolution (``WORK_MPP``) so a set scanned at 40x and one at 20x look alike.

Classes (what each rests on):

- ``tumour``: PanNuke "Neoplastic" (breast, pathologist-checked) and CoNSeP "epithelial"
  (colorectal adenocarcinoma: malignant epithelium dominates; an approximation we state).
- ``stroma``: CoNSeP "spindle-shaped" (fibroblasts, muscle, endothelium).
- ``lymphocyte``: CoNSeP "inflammatory" (mostly lymphocytes; also plasma cells and
  granulocytes, which no open set here separates).
- ``other``: CoNSeP "other" (dead cells, debris-like nuclei).
- PanNuke "No-neoplastic" merges stroma, inflammatory, dead and normal epithelium: it is a
  *set* label {stroma, lymphocyte, other}; the loss asks only that the model put its
  probability somewhere in that set (partial-label learning).
- MoNuSeg, TNBC and GBM have no classes: they teach outlines only.

Neutrophils and macrophages have no labels in any open set here, so the model does not
predict them (the product's classes keep them for HoVer-Net MoNuSAC and imported cells).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image
from skimage.draw import polygon as draw_polygon

WORK_MPP = 0.5  # the model sees every tile at 0.5 um/px (20x)
MODEL_CLASSES = ("tumour", "stroma", "lymphocyte", "other")
NON_TUMOUR = frozenset({"stroma", "lymphocyte", "other"})

# Folder -> (scan resolution um/px, class name -> allowed model classes, how to name the slide).
DATASETS: dict[str, dict] = {
    "breast-monuseg": {"mpp": 0.246, "classes": None, "slide": lambda stem: stem},
    "breast-tnbc": {"mpp": 0.25, "classes": None, "slide": lambda stem: stem.split("_")[0]},
    "breast-pannuke": {
        "mpp": 0.25,
        "classes": {"Neoplastic": {"tumour"}, "No-neoplastic": set(NON_TUMOUR)},
        # PanNuke tiles do not name their slide: each tile is its own group (stated limit).
        "slide": lambda stem: stem,
    },
    "colon-consep": {
        "mpp": 0.25,
        "classes": {
            "epithelial": {"tumour"},
            "spindle-shaped": {"stroma"},
            "inflammatory": {"lymphocyte"},
            "other": {"other"},
        },
        "slide": lambda stem: "_".join(stem.split("_")[:2]),  # test_3_005 -> test_3
    },
    "gbm": {"mpp": 0.5, "classes": None, "slide": lambda stem: stem},
}
IMAGE_SUFFIXES = (".tif", ".tiff", ".png", ".jpg", ".jpeg")


@dataclass
class AnnotatedTile:
    dataset: str
    name: str
    slide: str  # cross-validation group: tiles of one slide never straddle folds
    mpp: float
    rgb: np.ndarray  # (H, W, 3) uint8 at the scan resolution
    labels: np.ndarray  # (H, W) int32 instance ids, 0 background
    # Per instance id: bitmask over MODEL_CLASSES of the allowed classes (0: no class label).
    allowed: dict[int, int] = field(default_factory=dict)

    @property
    def n_nuclei(self) -> int:
        return int(self.labels.max())


def class_bits(names) -> int:
    return sum(1 << MODEL_CLASSES.index(n) for n in names)


def _read_rgb(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.ascontiguousarray(np.asarray(image.convert("RGB")))


def _polygon_rings(geometry: dict) -> list[np.ndarray]:
    if geometry["type"] == "Polygon":
        return [np.asarray(geometry["coordinates"][0], dtype=float)]
    if geometry["type"] == "MultiPolygon":
        return [np.asarray(p[0], dtype=float) for p in geometry["coordinates"]]
    return []


def load_tile(*, dataset: str, image_path: Path) -> AnnotatedTile:
    spec = DATASETS[dataset]
    rgb = _read_rgb(image_path)
    labels = np.zeros(rgb.shape[:2], dtype=np.int32)
    allowed: dict[int, int] = {}
    features = json.loads(image_path.with_suffix(".geojson").read_text())["features"]
    next_id = 1
    for feature in features:
        rings = _polygon_rings(feature["geometry"])
        if not rings:
            continue
        for ring in rings:
            # SOURCES.md: pixel (c, r) covers [c, c+1); rasterise at centres.
            rr, cc = draw_polygon(ring[:, 1] - 0.5, ring[:, 0] - 0.5, labels.shape)
            labels[rr, cc] = next_id
        name = (feature.get("properties") or {}).get("class")
        if spec["classes"] and name in spec["classes"]:
            allowed[next_id] = class_bits(spec["classes"][name])
        next_id += 1
    # Ids hidden entirely by later polygons disappear; keep the map's ids dense-ish as drawn.
    return AnnotatedTile(
        dataset=dataset,
        name=image_path.stem,
        slide=f"{dataset}:{spec['slide'](image_path.stem)}",
        mpp=spec["mpp"],
        rgb=rgb,
        labels=labels,
        allowed=allowed,
    )


def load_tiles(*, root: Path, datasets=None) -> list[AnnotatedTile]:
    tiles = []
    for dataset in datasets or DATASETS:
        folder = Path(root) / dataset
        if not folder.is_dir():
            continue
        for image_path in sorted(folder.iterdir()):
            if image_path.suffix.lower() in IMAGE_SUFFIXES and image_path.with_suffix(".geojson").exists():
                tiles.append(load_tile(dataset=dataset, image_path=image_path))
    return tiles


def resample_tile(*, tile: AnnotatedTile, mpp: float = WORK_MPP) -> tuple[np.ndarray, np.ndarray]:
    """Image (area-averaged) and instance map (nearest) at ``mpp``."""
    import cv2

    scale = tile.mpp / mpp
    if abs(scale - 1) < 1e-3:
        return tile.rgb, tile.labels
    h, w = tile.labels.shape
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    rgb = cv2.resize(tile.rgb, size, interpolation=interpolation)
    labels = cv2.resize(tile.labels, size, interpolation=cv2.INTER_NEAREST)
    return rgb, labels


def group_folds(*, tiles: list[AnnotatedTile], n_folds: int, seed: int) -> list[int]:
    """Fold index per tile, by slide (grouped), balanced per dataset."""
    rng = np.random.default_rng(seed)
    fold_of_slide: dict[str, int] = {}
    for dataset in sorted({t.dataset for t in tiles}):
        slides = sorted({t.slide for t in tiles if t.dataset == dataset})
        rng.shuffle(slides)
        offset = int(rng.integers(n_folds))
        for i, slide in enumerate(slides):
            fold_of_slide[slide] = (i + offset) % n_folds
    return [fold_of_slide[t.slide] for t in tiles]

"""Pyramidal TIFF writer: OpenSlide and large_image read what it writes, in bounded memory."""
from __future__ import annotations

import tracemalloc
from pathlib import Path

import numpy as np
import openslide
import pytest
import tifffile

from analysis.core.slides.pyramid import (
    InvalidPyramidRequestError,
    TileSourceError,
    box_downsample_2x,
    pyramid_level_dimensions,
    write_pyramidal_tiff,
)


def gradient(*, x: int, y: int, width: int, height: int) -> np.ndarray:
    """A smooth synthetic slide computed on demand (never held whole)."""
    xx = np.arange(x, x + width, dtype=np.int32)[None, :]
    yy = np.arange(y, y + height, dtype=np.int32)[:, None]
    out = np.empty((height, width, 3), dtype=np.uint8)
    out[..., 0] = (xx // 8) % 256
    out[..., 1] = (yy // 8) % 256
    out[..., 2] = ((xx + yy) // 16) % 256
    return out


def test_level_dimensions_halve_until_1024():
    assert pyramid_level_dimensions(width=5000, height=3001) == (
        (5000, 3001),
        (2500, 1501),
        (1250, 751),
        (625, 376),
    )
    assert pyramid_level_dimensions(width=1024, height=10) == ((1024, 10),)
    assert pyramid_level_dimensions(width=1025, height=10) == ((1025, 10), (513, 5))


def test_openslide_reads_levels_mpp_and_pixels(tmp_path: Path):
    dst = tmp_path / "slide.tif"
    info = write_pyramidal_tiff(dst=dst, width=3000, height=2100, read_region=gradient, mpp=0.25)
    slide = openslide.OpenSlide(dst)
    assert slide.properties["openslide.vendor"] == "generic-tiff"
    assert slide.level_count == 3
    assert slide.level_dimensions == ((3000, 2100), (1500, 1050), (750, 525)) == info.level_dimensions
    assert float(slide.properties["openslide.mpp-x"]) == pytest.approx(0.25)
    assert float(slide.properties["openslide.mpp-y"]) == pytest.approx(0.25)
    region = np.asarray(slide.read_region((1000, 700), 0, (300, 200)).convert("RGB")).astype(int)
    expected = gradient(x=1000, y=700, width=300, height=200).astype(int)
    assert np.abs(region - expected).mean() < 2.0  # JPEG q85 on a smooth image
    level2 = np.asarray(slide.read_region((0, 0), 2, (750, 525)).convert("RGB")).astype(int)
    full = gradient(x=0, y=0, width=3000, height=2100)
    expected2 = box_downsample_2x(box_downsample_2x(full)).astype(int)
    assert np.abs(level2 - expected2).mean() < 3.0
    slide.close()
    assert dst.stat().st_mode & 0o044  # readable by the web process, not 0600


def test_levels_are_top_level_ifds_marked_reduced(tmp_path: Path):
    dst = tmp_path / "slide.tif"
    write_pyramidal_tiff(dst=dst, width=2100, height=1500, read_region=gradient, mpp=None)
    with tifffile.TiffFile(dst) as tf:
        pages = list(tf.pages)
        assert [p.shape[:2] for p in pages] == [(1500, 2100), (750, 1050), (375, 525)]
        assert all(p.is_tiled and p.tilewidth == 256 and p.compression == 7 for p in pages)
        assert [p.subfiletype for p in pages] == [0, 1, 1]


def test_unknown_mpp_is_absent(tmp_path: Path):
    dst = tmp_path / "slide.tif"
    write_pyramidal_tiff(dst=dst, width=1200, height=900, read_region=gradient, mpp=None)
    props = openslide.OpenSlide(dst).properties
    assert "openslide.mpp-x" not in props and "openslide.mpp-y" not in props


def test_large_image_reads_it(tmp_path: Path):
    large_image = pytest.importorskip("large_image")
    dst = tmp_path / "slide.tif"
    write_pyramidal_tiff(dst=dst, width=3000, height=2100, read_region=gradient, mpp=0.5)
    source = large_image.open(str(dst))
    meta = source.getMetadata()
    assert (meta["sizeX"], meta["sizeY"]) == (3000, 2100)
    assert meta["mm_x"] == pytest.approx(0.0005)
    region, _ = source.getRegion(
        region={"left": 1000, "top": 700, "width": 300, "height": 200},
        format=large_image.constants.TILE_FORMAT_NUMPY,
    )
    expected = gradient(x=1000, y=700, width=300, height=200).astype(int)
    assert np.abs(region[..., :3].astype(int) - expected).mean() < 2.0
    # Both of large_image's readers for this format accept it.
    for module in ("large_image_source_tiff", "large_image_source_openslide"):
        reader = pytest.importorskip(module).open(str(dst))
        assert reader.getMetadata()["levels"] >= 3 and reader.getMetadata()["sizeX"] == 3000


def test_memory_is_bounded_and_source_asked_in_strips(tmp_path: Path):
    calls: list[tuple[int, int]] = []

    def source(*, x: int, y: int, width: int, height: int) -> np.ndarray:
        calls.append((width, height))
        return gradient(x=x, y=y, width=width, height=height)

    side = 4096  # 48 MiB as one RGB array
    tracemalloc.start()
    try:
        write_pyramidal_tiff(
            dst=tmp_path / "big.tif", width=side, height=side, read_region=source, mpp=0.5, read_width=2048
        )
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert max(h for _, h in calls) == 256 and max(w for w, _ in calls) == 2048
    assert peak < 16 * 2**20, f"peak traced memory {peak / 2**20:.1f} MiB"


def test_bad_tile_source_raises_and_leaves_nothing(tmp_path: Path):
    def wrong_dtype(*, x: int, y: int, width: int, height: int) -> np.ndarray:
        return np.zeros((height, width, 3), dtype=np.float32)

    with pytest.raises(TileSourceError, match="expected uint8"):
        write_pyramidal_tiff(dst=tmp_path / "x.tif", width=600, height=600, read_region=wrong_dtype, mpp=None)
    assert list(tmp_path.iterdir()) == []


def test_failure_keeps_the_previous_file(tmp_path: Path):
    dst = tmp_path / "slide.tif"
    write_pyramidal_tiff(dst=dst, width=600, height=400, read_region=gradient, mpp=None)
    before = dst.read_bytes()

    def breaks_halfway(*, x: int, y: int, width: int, height: int) -> np.ndarray:
        if y >= 256:
            raise RuntimeError("scanner unplugged")
        return gradient(x=x, y=y, width=width, height=height)

    with pytest.raises(RuntimeError):
        write_pyramidal_tiff(dst=dst, width=600, height=400, read_region=breaks_halfway, mpp=None)
    assert dst.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["slide.tif"]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"mpp": -1.0}, "mpp"),
        ({"mpp": float("nan")}, "mpp"),
        ({"jpeg_quality": 0}, "jpeg_quality"),
        ({"tile_size": 100}, "tile_size"),
        ({"width": 0}, "positive"),
        ({"description": "Aperio Image Library"}, "Aperio"),
    ],
)
def test_invalid_requests_are_refused(tmp_path: Path, kwargs, message):
    args = {"dst": tmp_path / "x.tif", "width": 512, "height": 512, "read_region": gradient, "mpp": None}
    with pytest.raises(InvalidPyramidRequestError, match=message):
        write_pyramidal_tiff(**{**args, **kwargs})


def test_box_downsample_rounds_half_up():
    image = np.array([[[0], [1]], [[1], [0]]], dtype=np.uint8)  # mean 0.5 -> 1
    assert box_downsample_2x(image)[0, 0, 0] == 1
    image = np.array([[[255], [255]], [[255], [254]]], dtype=np.uint8)  # 254.75 -> 255
    assert box_downsample_2x(image)[0, 0, 0] == 255


def test_image_smaller_than_one_tile(tmp_path: Path):
    dst = tmp_path / "tiny.tif"
    write_pyramidal_tiff(dst=dst, width=100, height=60, read_region=gradient, mpp=1.0)
    slide = openslide.OpenSlide(dst)
    assert slide.level_dimensions == ((100, 60),)
    region = np.asarray(slide.read_region((0, 0), 0, (100, 60)).convert("RGB")).astype(int)
    assert np.abs(region - gradient(x=0, y=0, width=100, height=60).astype(int)).mean() < 2.0

"""Slide access and deep-zoom geometry on real slides."""
from __future__ import annotations

import io

import numpy as np
import pytest
from openslide import OpenSlide
from openslide.deepzoom import DeepZoomGenerator
from PIL import Image

from analysis.core.slides.reader import (
    CorruptSlideError,
    DeepZoomGeometry,
    SlideReader,
    SlideReaderCache,
    TileNotFoundError,
    UnsupportedSlideError,
    read_slide_metadata,
    render_tile_jpeg,
)


def test_metadata_of_aperio_slide(shared_file):
    meta = read_slide_metadata(shared_file("slides/CMU-1-Small-Region.svs"))
    assert (meta.vendor, meta.width, meta.height, meta.level_count) == ("aperio", 2220, 2967, 1)
    assert meta.mpp_x == pytest.approx(0.499)
    assert meta.objective_power == 20
    assert "label" in meta.associated_images  # present in the file ...
    assert not any("label" in key or "macro" in key for key in meta.properties)  # ... never copied


def test_jpeg2000_slide_without_mpp_reports_unknown(shared_file):
    meta = read_slide_metadata(shared_file("slides/tcga-cr-7395-01a-01-ts1.svs"))
    assert meta.level_count == 2 and (meta.width, meta.height) == (4443, 3567)
    assert meta.mpp_x is None and meta.objective_power is None


def test_bad_files_raise_readable_errors(shared_file):
    with pytest.raises(CorruptSlideError, match="damaged or truncated"):
        read_slide_metadata(shared_file("bad/broken.svs"))
    with pytest.raises(CorruptSlideError, match="DICOM"):
        read_slide_metadata(shared_file("bad/malformed-wsi.dcm"))
    with pytest.raises(UnsupportedSlideError, match="converted on import"):
        read_slide_metadata(shared_file("slides/her2st-C2-HE.jpg"))


@pytest.mark.parametrize("size", [(2220, 2967), (4443, 3567), (1, 1), (256, 256), (257, 100)])
def test_geometry_matches_openslide_deepzoom(size):
    """Level sizes and tile counts equal openslide's DeepZoomGenerator (tile 256, overlap 0)."""

    class FakeSlide:  # DeepZoomGenerator only needs these attributes for geometry
        level_count = 1
        level_dimensions = (size,)
        level_downsamples = (1.0,)
        properties = {}
        dimensions = size

        def get_best_level_for_downsample(self, downsample):
            return 0

    reference = DeepZoomGenerator(FakeSlide(), tile_size=256, overlap=0)
    ours = DeepZoomGeometry(width=size[0], height=size[1], tile_size=256, overlap=0)
    assert ours.level_count == reference.level_count
    for level in range(ours.level_count):
        assert ours.level_dimensions(level) == reference.level_dimensions[level]
        assert ours.tile_count(level) == reference.level_tiles[level]


def test_full_resolution_tile_equals_openslide_pixels(shared_file):
    path = shared_file("slides/CMU-1-Small-Region.svs")
    reader = SlideReader(path)
    geometry = DeepZoomGeometry(width=reader.dimensions[0], height=reader.dimensions[1])
    jpeg = render_tile_jpeg(reader, geometry, level=geometry.max_level, col=2, row=3, quality=95)
    tile = np.asarray(Image.open(io.BytesIO(jpeg)).convert("RGB"), dtype=np.int16)
    expected = np.asarray(OpenSlide(str(path)).read_region((512, 768), 0, (256, 256)).convert("RGB"), dtype=np.int16)
    assert tile.shape == (256, 256, 3)
    assert np.abs(tile - expected).mean() < 3  # JPEG re-encoding only


def test_downsampled_tiles_cover_the_slide(shared_file):
    reader = SlideReader(shared_file("slides/tcga-cr-7395-01a-01-ts1.svs"))
    geometry = DeepZoomGeometry(width=reader.dimensions[0], height=reader.dimensions[1])
    level = geometry.max_level - 3  # 8x downsampled: read from the 2x level and reduced
    cols, rows = geometry.tile_count(level)
    last = Image.open(io.BytesIO(render_tile_jpeg(reader, geometry, level=level, col=cols - 1, row=rows - 1)))
    width, height = geometry.level_dimensions(level)
    assert last.size == (width - 256 * (cols - 1), height - 256 * (rows - 1))
    with pytest.raises(TileNotFoundError):
        geometry.tile_region(level, cols, 0)
    with pytest.raises(TileNotFoundError):
        geometry.tile_region(geometry.max_level + 1, 0, 0)


def test_thumbnail_is_pyramid_not_associated_image(shared_file):
    path = shared_file("slides/CMU-1-Small-Region.svs")
    thumb = SlideReader(path).thumbnail_image(256)
    assert max(thumb.size) == 256
    slide = OpenSlide(str(path))
    for name in ("label", "macro"):
        associated = slide.associated_images[name].convert("RGB").resize(thumb.size)
        assert np.abs(np.asarray(associated, np.int16) - np.asarray(thumb, np.int16)).mean() > 10


def test_reader_cache_reuses_and_evicts(shared_file):
    cache = SlideReaderCache(capacity=1)
    first = cache.get(shared_file("slides/CMU-1-Small-Region.svs"))
    assert cache.get(shared_file("slides/CMU-1-Small-Region.svs")) is first
    cache.get(shared_file("slides/tcga-cr-7395-01a-01-ts1.svs"))
    assert cache.get(shared_file("slides/CMU-1-Small-Region.svs")) is not first


def test_stored_jpeg_tiles_are_passed_through_with_the_same_pixels(tmp_path, shared_file):
    """A deep-zoom tile that is exactly one stored tile of a pyramidal TIFF is sent as stored."""
    from analysis.core.slides.convert import convert_to_pyramidal_tiff

    converted = tmp_path / "her2st.tiff"
    convert_to_pyramidal_tiff(src=shared_file("slides/her2st-C2-HE.jpg"), dst=converted)
    reader = SlideReader(converted)
    geometry = DeepZoomGeometry(width=reader.dimensions[0], height=reader.dimensions[1])
    level, col, row = geometry.max_level, 5, 7
    raw = reader.raw_jpeg_tile(level=0, col=col, row=row, tile_size=256)
    assert raw is not None and raw[:2] == b"\xff\xd8"
    served = render_tile_jpeg(reader, geometry, level=level, col=col, row=row)
    assert served == raw  # passed through, not re-encoded
    decoded = np.asarray(Image.open(io.BytesIO(served)).convert("RGB"), dtype=np.int16)
    expected = np.asarray(OpenSlide(str(converted)).read_region((col * 256, row * 256), 0, (256, 256)).convert("RGB"),
                          dtype=np.int16)
    assert np.abs(decoded - expected).max() <= 2  # same decoder output as OpenSlide's
    # an edge tile (partial) is rendered, not passed through
    cols, rows = geometry.tile_count(level)
    assert reader.raw_jpeg_tile(level=0, col=cols - 1, row=0, tile_size=256) is None
    reader.close()

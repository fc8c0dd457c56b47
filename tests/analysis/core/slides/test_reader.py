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
    with pytest.raises(CorruptSlideError, match="DICOM file that does not follow the whole-slide standard"):
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


# --- Aperio SVS: the deep-zoom grid of the file's own 240 px JPEG tiles -------------------------

def _openslide_reference(slide: OpenSlide, geometry: DeepZoomGeometry, level: int, col: int, row: int) -> np.ndarray:
    """What OpenSlide's read_region gives for a deep-zoom tile: level-0 pixels, each factor x factor block
    averaged (a partial last block over the pixels it has)."""
    (x0, y0, w0, h0), (tile_w, tile_h) = geometry.tile_region(level, col, row)
    region = slide.read_region((x0, y0), 0, (w0, h0)).convert("RGB").reduce(geometry.level_scale(level))
    assert region.size == (tile_w, tile_h)
    return np.asarray(region, dtype=np.int16)


def test_svs_tiles_have_openslide_colours_at_every_path(shared_file):
    """CMU-1-Small-Region.svs has real Aperio tables and RGB-photometric JPEG tiles (component ids 0, 1, 2).
    Passed-through tiles (1x), DCT-scaled tiles (2x, 4x, 8x) and edge tiles all decode to OpenSlide's
    colours; without the Adobe/RGB completion a decoder would read the tiles as YCbCr (mean error ~50)."""
    path = shared_file("slides/CMU-1-Small-Region.svs")
    reader, slide = SlideReader(path), OpenSlide(str(path))
    assert reader.stored_tile_size == 240
    geometry = DeepZoomGeometry(width=reader.dimensions[0], height=reader.dimensions[1], tile_size=240)
    for factor in (1, 2, 4, 8):
        level = geometry.max_level - factor.bit_length() + 1
        cols, rows = geometry.tile_count(level)
        for col, row in {(cols // 2, rows // 2), (0, 0), (cols - 1, rows - 1), (cols // 3, rows - 1)}:
            jpeg = render_tile_jpeg(reader, geometry, level=level, col=col, row=row, quality=95)
            ours = np.asarray(Image.open(io.BytesIO(jpeg)).convert("RGB"), dtype=np.int16)
            expected = _openslide_reference(slide, geometry, level, col, row)
            assert ours.shape == expected.shape
            # JPEG tolerance: what encoding OpenSlide's own pixels at q95 (4:2:0) costs, + 1 for the DCT-domain
            # reduction against a box filter; passed-through tiles are exact.
            encoded = io.BytesIO()
            Image.fromarray(expected.astype(np.uint8)).save(encoded, format="JPEG", quality=95)
            jpeg_error = np.abs(np.asarray(Image.open(encoded), dtype=np.int16) - expected).mean()
            error = np.abs(ours - expected).mean()
            assert error < (0.01 if factor == 1 and ours.shape == (240, 240, 3) else jpeg_error + 1.0), (factor, col, row)
    reader.close()


def test_svs_stored_level_tiles_are_the_files_bytes_plus_tables(shared_file):
    """At a stored level the served bytes are the file's own tile, completed with the page's JPEGTables
    (SOI + Adobe APP14 + tables + tile with component ids R, G, B): no decode, no re-encode."""
    import tifffile

    path = shared_file("slides/CMU-1-Small-Region.svs")
    reader = SlideReader(path)
    geometry = DeepZoomGeometry(width=reader.dimensions[0], height=reader.dimensions[1], tile_size=240)
    col, row = 4, 3
    served = render_tile_jpeg(reader, geometry, level=geometry.max_level, col=col, row=row)
    with tifffile.TiffFile(path) as tif:
        page = tif.pages[0]
        index = row * -(-page.imagewidth // page.tilewidth) + col
        tif.filehandle.seek(page.dataoffsets[index])
        stored = tif.filehandle.read(page.databytecounts[index])
        tables = page.jpegtables
    assert page.photometric == 2 and stored[:2] == b"\xff\xd8" and tables[:2] == b"\xff\xd8"
    adobe_rgb = b"\xff\xee\x00\x0eAdobe\x00\x64\x00\x00\x00\x00\x00"
    prefix = b"\xff\xd8" + adobe_rgb + tables[2:-2]
    assert served[:len(prefix)] == prefix
    body = served[len(prefix):]
    assert len(body) == len(stored) - 2
    differing = [i for i, (a, b) in enumerate(zip(body, stored[2:])) if a != b]
    assert len(differing) == 6 and bytes(body[i] for i in differing) == b"RGBRGB"  # the 3 + 3 component ids
    decoded = np.asarray(Image.open(io.BytesIO(served)).convert("RGB"), dtype=np.int16)
    expected = np.asarray(OpenSlide(str(path)).read_region((col * 240, row * 240), 0, (240, 240)).convert("RGB"),
                          dtype=np.int16)
    assert np.abs(decoded - expected).max() <= 1  # OpenSlide's decode of the same bytes
    reader.close()


def test_svs_pyramid_levels_pass_through_and_labels_are_never_indexed(tmp_path, shared_file):
    """A 3-level Aperio-style SVS (YCbCr tiles, levels 1x/4x/16x, made like ../shared/tools/make_svs_like.py,
    small): its stored levels are read raw, label/macro/thumbnail pages never; the JPEG 2000 SVS has no raw
    level and keeps the 256 px grid (served through OpenSlide as before)."""
    import tifffile

    section = np.asarray(Image.open(shared_file("slides/her2st-C2-HE.jpg")).convert("RGB"))[:1920, :1920]
    svs = tmp_path / "small.svs"
    desc = "Aperio Image Library v12.0.15 \r\n1920x1920 [0,0 1920x1920] (240x240) JPEG/RGB Q=70|AppMag = 20|MPP = 0.4990"
    with tifffile.TiffWriter(svs) as tw:
        for index, step in enumerate((1, 4, 16)):
            tw.write(np.ascontiguousarray(section[::step, ::step]), tile=(240, 240), compression="jpeg",
                     photometric="rgb", description=desc if index == 0 else f"1920x1920 -> {1920 // step}",
                     metadata=None)
        tw.write(section[:300, :400], compression="jpeg", photometric="rgb", description="Aperio label", metadata=None)
    reader = SlideReader(svs)
    assert reader.vendor == "aperio" and reader.stored_tile_size == 240
    assert [reader.raw_level_downsample(level) for level in range(3)] == [1, 4, 16]
    assert {(raw.width, raw.height) for raw in reader._raw_levels.values()} == {(1920, 1920), (480, 480), (120, 120)}
    geometry = DeepZoomGeometry(width=1920, height=1920, tile_size=240)
    top = geometry.max_level
    assert render_tile_jpeg(reader, geometry, level=top - 2, col=1, row=0) == reader.raw_jpeg_tile(
        level=1, col=1, row=0, tile_size=240)  # 4x: the 4x level's stored tile
    reader.close()
    jp2k = SlideReader(shared_file("slides/tcga-cr-7395-01a-01-ts1.svs"))
    assert jp2k.stored_tile_size is None and jp2k.raw_level_downsample(0) is None
    jp2k.close()


def test_rgb_tiles_with_their_own_jfif_marker_keep_openslide_colours(shared_file):
    """A JFIF marker makes libjpeg read YCbCr whatever else the stream says: an RGB-photometric tile that
    carries one (some writers add it) has it dropped, and its scan's component ids follow the frame's."""
    from analysis.core.slides.reader import complete_jpeg

    path = shared_file("slides/CMU-1-Small-Region.svs")
    reader = SlideReader(path)
    found = reader._raw_levels[0]
    index = 3 * found.across + 4
    with open(path, "rb") as handle:
        handle.seek(int(found.offsets[index]))
        stored = handle.read(int(found.counts[index]))
    jfif = b"\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
    with_jfif = stored[:2] + jfif + stored[2:]
    expected = np.asarray(OpenSlide(str(path)).read_region((4 * 240, 3 * 240), 0, (240, 240)).convert("RGB"),
                          dtype=np.int16)
    for data in (stored, with_jfif):
        completed = complete_jpeg(data, tables=found.tables, rgb=True)
        assert b"JFIF" not in completed[:400]
        decoded = np.asarray(Image.open(io.BytesIO(completed)).convert("RGB"), dtype=np.int16)
        assert np.abs(decoded - expected).max() <= 1
    reader.close()

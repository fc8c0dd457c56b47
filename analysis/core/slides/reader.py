"""Whole-slide access: open, describe and read slides, and cut deep-zoom tiles.

Every format OpenSlide reads (Aperio SVS, Hamamatsu NDPI, MIRAX, Leica SCN, Ventana BIF,
generic tiled TIFF, DICOM WSI) goes through one reader. Plain images are converted to a
pyramidal TIFF first (analysis.core.slides.convert). The tile geometry follows OpenSlide's
DeepZoomGenerator (openslide-python, BSD/LGPL): level L of the deep-zoom pyramid is the
slide scaled by 2**(L - max_level); each tile is read from the best pyramid level at or
below its downsample and resized.

Associated images (label, macro) carry patient names and are never read here.
"""
from __future__ import annotations

import hashlib
import io
import math
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image


class SlideError(ValueError):
    """A slide cannot be used; the message says why in words a user understands."""


class UnsupportedSlideError(SlideError):
    pass


class CorruptSlideError(SlideError):
    pass


class TileNotFoundError(LookupError):
    pass


# OpenSlide vendor names, for the UI.
VENDOR_NAMES = {
    "aperio": "Aperio (SVS)",
    "hamamatsu": "Hamamatsu (NDPI/VMS)",
    "mirax": "3DHISTECH MIRAX",
    "leica": "Leica (SCN)",
    "ventana": "Roche Ventana (BIF)",
    "philips": "Philips TIFF",
    "sakura": "Sakura (SVSLIDE)",
    "trestle": "Trestle",
    "generic-tiff": "Generic tiled TIFF",
    "dicom": "DICOM WSI",
    "zeiss": "Zeiss (CZI)",
}

WHOLE_SLIDE_SUFFIXES = {".svs", ".ndpi", ".vms", ".vmu", ".mrxs", ".scn", ".bif", ".svslide", ".dcm"}

# Properties that are safe and useful to keep; free-text vendor fields may hold names.
_KEPT_PROPERTY_PREFIXES = ("openslide.", "tiff.ImageWidth", "tiff.ImageLength", "aperio.AppMag", "aperio.MPP")
_DROPPED_PROPERTY_PREFIXES = ("openslide.comment", "openslide.associated.")


@dataclass(frozen=True)
class SlideMetadata:
    vendor: str
    width: int
    height: int
    level_count: int
    level_dimensions: list[tuple[int, int]]
    level_downsamples: list[float]
    mpp_x: float | None
    mpp_y: float | None
    objective_power: float | None
    associated_images: list[str] = field(default_factory=list)
    properties: dict[str, str] = field(default_factory=dict)


def _positive_float(value) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) and number > 0 else None


def _open_openslide(path: Path):
    import openslide  # imported here so that the module loads without the C library

    if not path.is_file():
        raise SlideError(f"{path.name}: file not found")
    try:
        vendor = openslide.OpenSlide.detect_format(str(path))
    except Exception as exc:  # OpenSlide raises its own error types for unreadable files
        raise CorruptSlideError(f"{path.name}: OpenSlide cannot read this file ({exc})") from exc
    if vendor is None:
        if path.suffix.lower() in WHOLE_SLIDE_SUFFIXES:
            raise CorruptSlideError(
                f"{path.name}: named like a {path.suffix.lower()} slide but OpenSlide cannot read it; "
                "the file is damaged or truncated"
            )
        raise UnsupportedSlideError(
            f"{path.name}: not a whole-slide format OpenSlide reads "
            "(SVS, NDPI, MRXS, SCN, BIF, tiled TIFF, DICOM); plain JPEG/PNG/TIFF images are converted on import"
        )
    try:
        return openslide.OpenSlide(str(path)), vendor
    except Exception as exc:
        if vendor == "dicom":  # OpenSlide's own reasons ("Couldn't get image flavor") mean nothing to a pathologist
            raise CorruptSlideError(
                f"{path.name}: a DICOM file that does not follow the whole-slide standard (VL Whole Slide "
                f"Microscopy Image) or is incomplete; export the slide again from the scanner or archive "
                f"(OpenSlide: {exc})") from exc
        raise CorruptSlideError(f"{path.name}: the {VENDOR_NAMES.get(vendor, vendor)} file is damaged or incomplete ({exc})") from exc


def read_slide_metadata(path: Path) -> SlideMetadata:
    """Open `path` and describe it; raise SlideError with a readable message if it can't be used.

    Reads one pixel region per level so that truncated files fail here, at import, rather
    than later in the viewer.
    """
    path = Path(path)
    slide, vendor = _open_openslide(path)
    try:
        props = dict(slide.properties)
        try:
            for level, (w, h) in enumerate(slide.level_dimensions):
                ds = slide.level_downsamples[level]
                x, y = int((w // 2) * ds), int((h // 2) * ds)
                slide.read_region((x, y), level, (min(64, w), min(64, h)))
        except Exception as exc:
            raise CorruptSlideError(f"{path.name}: pixel data cannot be decoded ({exc})") from exc
        width, height = slide.dimensions
        if width < 1 or height < 1:
            raise CorruptSlideError(f"{path.name}: slide has no pixels")
        kept = {
            key: value
            for key, value in props.items()
            if key.startswith(_KEPT_PROPERTY_PREFIXES) and not key.startswith(_DROPPED_PROPERTY_PREFIXES)
        }
        return SlideMetadata(
            vendor=vendor,
            width=width,
            height=height,
            level_count=slide.level_count,
            level_dimensions=[tuple(d) for d in slide.level_dimensions],
            level_downsamples=[float(d) for d in slide.level_downsamples],
            mpp_x=_positive_float(props.get("openslide.mpp-x")),
            mpp_y=_positive_float(props.get("openslide.mpp-y")),
            objective_power=_positive_float(props.get("openslide.objective-power")),
            associated_images=sorted(slide.associated_images.keys()),
            properties=kept,
        )
    finally:
        slide.close()


def file_checksum(path: Path, *, chunk_size: int = 8 << 20) -> str:
    """SHA-256 of the file's bytes (hex)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


class SlideReader:
    """Thread-safe pixel access to one slide (OpenSlide's C library is thread-safe)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._slide, self.vendor = _open_openslide(self.path)
        self.dimensions: tuple[int, int] = tuple(self._slide.dimensions)
        self.level_dimensions = [tuple(d) for d in self._slide.level_dimensions]
        self.level_downsamples = [float(d) for d in self._slide.level_downsamples]
        props = self._slide.properties
        self.mpp = _positive_float(props.get("openslide.mpp-x"))
        self._raw_levels = (_raw_jpeg_levels(self.path, self.level_dimensions)
                            if self.vendor in RAW_JPEG_VENDORS else {})
        self._fd = os.open(self.path, os.O_RDONLY) if self._raw_levels else None

    @property
    def stored_tile_size(self) -> int | None:
        """Side of the square JPEG tiles of pyramid level 0 when they can be read raw (240 for most
        SVS, 256 for our converted TIFFs), else None (JPEG 2000, other formats)."""
        found = self._raw_levels.get(0)
        return found.tile_w if found is not None and found.tile_w == found.tile_h else None

    def raw_level_downsample(self, level: int) -> int | None:
        """Integer downsample of pyramid `level` if its JPEG tiles can be read raw, else None."""
        found = self._raw_levels.get(level)
        return found.downsample if found is not None else None

    def raw_jpeg_tile(self, *, level: int, col: int, row: int, tile_size: int) -> bytes | None:
        """The stored JPEG of a full tile of pyramid `level`, as a standalone JPEG, or None."""
        found = self._raw_levels.get(level)
        if found is None or (found.tile_w, found.tile_h) != (tile_size, tile_size):
            return None
        if (col + 1) * found.tile_w > found.width or (row + 1) * found.tile_h > found.height:
            return None
        return self._stored_jpeg(found, col=col, row=row)

    def _stored_jpeg(self, found: "_RawLevel", *, col: int, row: int) -> bytes | None:
        """Stored tile (col, row) of a raw level as a complete JPEG stream, or None if absent."""
        if self._fd is None or not (0 <= col < found.across and 0 <= row < found.down):
            return None
        index = row * found.across + col
        count = int(found.counts[index])
        if count < 4:  # tiles never written (some scanners leave empty tiles)
            return None
        data = os.pread(self._fd, count, int(found.offsets[index]))
        if data[:2] != b"\xff\xd8":
            return None
        return complete_jpeg(data, tables=found.tables, rgb=found.rgb)

    def stored_region(self, *, level: int, col: int, row: int, tile_size: int, factor: int,
                      out_width: int, out_height: int) -> np.ndarray | None:
        """Deep-zoom tile (col, row) of side `tile_size` cut from raw pyramid `level`, reduced by `factor`
        (1, 2, 4 or 8) in the DCT domain (libjpeg-turbo scaled decoding: each stored tile is decoded straight
        to 1/factor of its size, no full-size pixels), cropped to (out_width, out_height); None when the
        stored tiles cannot serve it (then OpenSlide does)."""
        found = self._raw_levels.get(level)
        if found is None or (found.tile_w, found.tile_h) != (tile_size, tile_size) or factor not in (1, 2, 4, 8):
            return None
        if tile_size % factor:
            return None
        # Stored pixels this tile covers; past the stored level's edge the tiles hold only padding.
        valid_w = min(out_width * factor, found.width - col * tile_size * factor)
        valid_h = min(out_height * factor, found.height - row * tile_size * factor)
        if -(-valid_w // factor) != out_width or -(-valid_h // factor) != out_height:
            return None  # the deep-zoom level is larger than the stored level allows: OpenSlide reads it
        if valid_w % factor or valid_h % factor:
            # The last output pixel averages fewer stored pixels (a level size not a multiple of `factor`):
            # full-size decode of this edge tile, cropped to the level, box-reduced (Pillow's reduce averages
            # the partial last block), so that no padding gets into the average.
            full = self._stored_pixels(found, col=col, row=row, tile_size=tile_size, factor=factor, scale=1,
                                       width=valid_w, height=valid_h)
            return None if full is None else np.asarray(Image.fromarray(full).reduce(factor))
        return self._stored_pixels(found, col=col, row=row, tile_size=tile_size, factor=factor, scale=factor,
                                   width=out_width, height=out_height)

    def _stored_pixels(self, found: "_RawLevel", *, col: int, row: int, tile_size: int, factor: int, scale: int,
                       width: int, height: int) -> np.ndarray | None:
        """The factor x factor block of stored tiles under deep-zoom tile (col, row), each decoded at 1/scale,
        cropped to (width, height)."""
        import simplejpeg

        part = tile_size // scale
        out = np.empty((-(-height // part) * part, -(-width // part) * part, 3), dtype=np.uint8)
        for dy in range(out.shape[0] // part):
            for dx in range(out.shape[1] // part):
                jpeg = self._stored_jpeg(found, col=col * factor + dx, row=row * factor + dy)
                if jpeg is None:
                    return None
                try:
                    pixels = simplejpeg.decode_jpeg(jpeg, colorspace="RGB", min_height=part, min_width=part)
                except ValueError:
                    return None
                if pixels.shape[:2] != (part, part):
                    return None
                out[dy * part:(dy + 1) * part, dx * part:(dx + 1) * part] = pixels
        return np.ascontiguousarray(out[:height, :width])

    def close(self) -> None:
        self._slide.close()
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __del__(self) -> None:  # evicted from the LRU cache: release the file descriptor
        fd = getattr(self, "_fd", None)
        if fd is not None:
            os.close(fd)

    def best_level_for_downsample(self, downsample: float) -> int:
        # Small tolerance: a level at 3.9998x serves a 4x request without upsampling.
        best = 0
        for level, level_ds in enumerate(self.level_downsamples):
            if level_ds <= downsample * 1.0001:
                best = level
        return best

    def read_region_image(self, *, x: int, y: int, width: int, height: int, level: int = 0) -> Image.Image:
        """RGB PIL image of a region; (x, y) in level-0 pixels, size in `level` pixels; white outside."""
        region = self._slide.read_region((int(x), int(y)), level, (int(width), int(height)))
        return _flatten_rgba(region)

    def read_region(self, *, x: int, y: int, width: int, height: int, level: int = 0) -> np.ndarray:
        """(H, W, 3) uint8 RGB array of a region, as `read_region_image`."""
        return np.asarray(self.read_region_image(x=x, y=y, width=width, height=height, level=level))

    def read_scaled(self, *, x: int, y: int, width: int, height: int, out_width: int, out_height: int) -> Image.Image:
        """Level-0 region (x, y, width, height) resampled to (out_width, out_height), from the best level."""
        downsample = max(width / max(out_width, 1), height / max(out_height, 1))
        level = self.best_level_for_downsample(downsample)
        level_ds = self.level_downsamples[level]
        level_w = max(1, math.ceil(width / level_ds))
        level_h = max(1, math.ceil(height / level_ds))
        image = self.read_region_image(x=x, y=y, width=level_w, height=level_h, level=level)
        if image.size != (out_width, out_height):
            factor = min(image.size[0] // max(out_width, 1), image.size[1] // max(out_height, 1))
            if factor >= 2:
                image = image.reduce(factor)  # box filter, much faster than a general resize
            if image.size != (out_width, out_height):
                image = image.resize((out_width, out_height), Image.Resampling.BILINEAR)
        return image

    def thumbnail_image(self, max_size: int) -> Image.Image:
        """Whole-slide RGB thumbnail whose longer side is `max_size` (pyramid pixels, never the label)."""
        width, height = self.dimensions
        scale = max_size / max(width, height)
        out_w, out_h = max(1, round(width * scale)), max(1, round(height * scale))
        return self.read_scaled(x=0, y=0, width=width, height=height, out_width=out_w, out_height=out_h)

    def thumbnail(self, max_size: int) -> np.ndarray:
        return np.asarray(self.thumbnail_image(max_size))


def _flatten_rgba(region: Image.Image) -> Image.Image:
    """Composite OpenSlide's RGBA (transparent outside the scanned area) onto white."""
    if region.mode != "RGBA":
        return region.convert("RGB")
    alpha_min, _ = region.getchannel("A").getextrema()
    if alpha_min == 255:
        return region.convert("RGB")
    background = Image.new("RGB", region.size, (255, 255, 255))
    background.paste(region, mask=region.getchannel("A"))
    return background


@dataclass(frozen=True)
class DeepZoomGeometry:
    """Deep Zoom (DZI) pyramid geometry of a width x height image.

    Same arithmetic as openslide.deepzoom.DeepZoomGenerator and Microsoft's DZI spec.
    """

    width: int
    height: int
    tile_size: int = 256
    overlap: int = 0

    @property
    def max_level(self) -> int:
        return max(0, math.ceil(math.log2(max(self.width, self.height))))

    @property
    def level_count(self) -> int:
        return self.max_level + 1

    def level_scale(self, level: int) -> int:
        """Level-0 pixels per pixel of deep-zoom `level`."""
        return 2 ** (self.max_level - level)

    def level_dimensions(self, level: int) -> tuple[int, int]:
        scale = self.level_scale(level)
        return max(1, math.ceil(self.width / scale)), max(1, math.ceil(self.height / scale))

    def tile_count(self, level: int) -> tuple[int, int]:
        w, h = self.level_dimensions(level)
        return math.ceil(w / self.tile_size), math.ceil(h / self.tile_size)

    def tile_region(self, level: int, col: int, row: int) -> tuple[tuple[int, int, int, int], tuple[int, int]]:
        """((x0, y0, w0, h0) in level-0 pixels, (tile_w, tile_h) in output pixels)."""
        if not 0 <= level <= self.max_level:
            raise TileNotFoundError(f"no level {level}")
        cols, rows = self.tile_count(level)
        if not (0 <= col < cols and 0 <= row < rows):
            raise TileNotFoundError(f"no tile {col}_{row} at level {level}")
        level_w, level_h = self.level_dimensions(level)
        ts, ov = self.tile_size, self.overlap
        x = col * ts - (ov if col > 0 else 0)
        y = row * ts - (ov if row > 0 else 0)
        x_end = min(level_w, (col + 1) * ts + ov)
        y_end = min(level_h, (row + 1) * ts + ov)
        tile_w, tile_h = x_end - x, y_end - y
        scale = self.level_scale(level)
        x0, y0 = x * scale, y * scale
        w0 = min(self.width - x0, tile_w * scale)
        h0 = min(self.height - y0, tile_h * scale)
        return (x0, y0, w0, h0), (tile_w, tile_h)

    def dzi_xml(self, *, fmt: str = "jpeg") -> str:
        return (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            f'<Image xmlns="http://schemas.microsoft.com/deepzoom/2008" Format="{fmt}" '
            f'Overlap="{self.overlap}" TileSize="{self.tile_size}">'
            f'<Size Width="{self.width}" Height="{self.height}"/></Image>'
        )


def render_tile_jpeg(reader: SlideReader, geometry: DeepZoomGeometry, *, level: int, col: int, row: int,
                     quality: int = 80) -> bytes:
    """JPEG bytes of one deep-zoom tile.

    Stored JPEG tiles are used whenever the deep-zoom grid lines up with them (overlap 0, deep-zoom tile
    size = the file's tile size, a pyramid level whose downsample divides the tile's by 1, 2, 4 or 8):

    - same downsample, full tile: the stored JPEG is sent as it is, completed with the file's JPEGTables
      and colour space (`complete_jpeg`), without decoding and re-encoding, as large_image's TIFF source
      does; it then keeps the file's own JPEG quality;
    - 2x, 4x, 8x the downsample of a stored level, or an edge tile: the stored tiles are decoded at
      1/2, 1/4, 1/8 scale in the DCT domain (libjpeg-turbo through simplejpeg) and the result encoded
      with libjpeg-turbo at `quality`.

    Every other tile (other formats, JPEG 2000, levels below the smallest pyramid level / 8) is read
    through OpenSlide, reduced with a box filter and encoded. Associated images are never touched:
    only pages whose size is a pyramid level's are read raw (`_raw_jpeg_levels`).
    """
    (x0, y0, w0, h0), (tile_w, tile_h) = geometry.tile_region(level, col, row)
    if geometry.overlap == 0 and reader.stored_tile_size == geometry.tile_size:
        scale = geometry.level_scale(level)
        for stored in range(len(reader.level_dimensions) - 1, -1, -1):
            downsample = reader.raw_level_downsample(stored)
            if downsample is None or scale % downsample or downsample > scale:
                continue
            factor = scale // downsample
            if factor > 8:
                break  # the nearest stored level is too far above: OpenSlide reads a smaller one
            if factor == 1 and tile_w == tile_h == geometry.tile_size:
                raw = reader.raw_jpeg_tile(level=stored, col=col, row=row, tile_size=geometry.tile_size)
                if raw is not None:
                    return raw
            pixels = reader.stored_region(level=stored, col=col, row=row, tile_size=geometry.tile_size,
                                          factor=factor, out_width=tile_w, out_height=tile_h)
            if pixels is not None:
                return encode_jpeg_array(pixels, quality=quality)
            break
    image = reader.read_scaled(x=x0, y=y0, width=w0, height=h0, out_width=tile_w, out_height=tile_h)
    return encode_jpeg(image, quality=quality)


# Vendors whose pyramid levels are plain tiled TIFF pages OpenSlide reads with the file's JPEGTables and
# TIFF photometric (openslide-vendor-aperio.c, openslide-vendor-generic-tiff.c: `_openslide_tiff_read_tile`).
RAW_JPEG_VENDORS = {"generic-tiff", "aperio"}

# Adobe APP14 segment (Adobe TN 5116), transform 0: "the 3 components are RGB, do not convert from YCbCr".
_ADOBE_RGB = b"\xff\xee\x00\x0eAdobe\x00\x64\x00\x00\x00\x00\x00"


@dataclass(frozen=True)
class _RawLevel:
    tile_w: int
    tile_h: int
    across: int
    down: int
    offsets: np.ndarray
    counts: np.ndarray
    tables: bytes  # JPEGTables as stored (SOI ... EOI), or b""
    rgb: bool  # TIFF photometric RGB: the JPEG components are R, G, B, not YCbCr
    width: int
    height: int
    downsample: int


def complete_jpeg(data: bytes, *, tables: bytes = b"", rgb: bool = False) -> bytes:
    """A stored TIFF JPEG tile as a complete stream any decoder reads with OpenSlide's colours.

    TIFF JPEG tiles are often abbreviated: the shared quantisation and Huffman tables are in the page's
    JPEGTables tag, inserted here after the SOI (as large_image's tiff_reader `getTile` does). Aperio also
    stores tiles with TIFF photometric RGB whose JPEG components are R, G, B (no colour transform); OpenSlide
    decodes them as RGB (JCS_RGB), but a decoder left to guess (browsers, libjpeg without JFIF/Adobe
    markers) would take component ids 0, 1, 2 for YCbCr and turn the tissue green. Such tiles get an Adobe
    APP14 marker with transform 0 and their component ids relabelled 'R', 'G', 'B' (what large_image does
    for ids 0, 1, 2), so that libjpeg, libjpeg-turbo and browsers all decode them as RGB.
    """
    body = data[2:]
    if rgb:
        body = _relabel_rgb(body)
        head = b"\xff\xd8" + _ADOBE_RGB
    else:
        head = b"\xff\xd8"
    if tables and len(tables) > 4:
        return head + tables[2:-2] + body
    return head + body


def _relabel_rgb(body: bytes) -> bytes:
    """Give the 3 components of the frame (SOF) the ids 'R', 'G', 'B' in order, and the scan (SOS) the
    same, and drop JFIF (APP0) and Adobe (APP14) segments of the tile itself: libjpeg takes a JFIF marker
    for YCbCr whatever else it sees, and the last Adobe marker wins. `body` starts right after the SOI;
    marker segments are walked, never searched for, so entropy-coded bytes and table values are never
    mistaken for markers. Anything unexpected leaves the rest of the stream as it is."""
    out = bytearray()
    ids: dict[int, int] = {}
    pos = 0
    while pos + 4 <= len(body) and body[pos] == 0xFF:
        marker = body[pos + 1]
        length = (body[pos + 2] << 8) | body[pos + 3]
        segment = bytearray(body[pos:pos + 2 + length])
        if marker in (0xC0, 0xC1, 0xC2) and len(segment) >= 19 and segment[9] == 3:
            # SOFn: P, Y, X, Nf, then (C, H/V, Tq) x Nf
            for index, letter in enumerate(b"RGB"):
                ids[segment[10 + 3 * index]] = letter
                segment[10 + 3 * index] = letter
        elif marker == 0xDA:  # SOS: Ns, then (Cs, Td/Ta) x Ns; the entropy-coded data follows
            for index in range(segment[4]):
                segment[5 + 2 * index] = ids.get(segment[5 + 2 * index], segment[5 + 2 * index])
            out += segment
            return bytes(out) + body[pos + 2 + length:]
        if marker not in (0xE0, 0xEE):
            out += segment
        pos += 2 + length
    return bytes(out) + body[pos:]


def _raw_jpeg_levels(path: Path, level_dimensions) -> dict[int, _RawLevel]:
    """Pyramid levels stored as tiled 8-bit 3-sample JPEG (photometric YCbCr or RGB), by OpenSlide level.

    Pages are matched to OpenSlide's levels by size, tiled pages only: label, macro and thumbnail images
    (stripped, other sizes) are never indexed, so never served. A level is kept only when its downsample
    from level 0 is a power of two and its size is level 0's divided by it (floor or ceil), so that
    its stored pixels line up with the deep-zoom grid.
    """
    try:
        import tifffile

        found: dict[int, _RawLevel] = {}
        width0, height0 = level_dimensions[0]
        with tifffile.TiffFile(path) as tif:
            for page in tif.pages:
                if (not page.is_tiled or page.compression != 7 or page.photometric not in (2, 6)
                        or page.samplesperpixel != 3 or page.bitspersample != 8 or page.planarconfig != 1):
                    continue
                size = (page.imagewidth, page.imagelength)
                if size not in level_dimensions or level_dimensions.index(size) in found:
                    continue
                level = level_dimensions.index(size)
                downsample = max(1, round(width0 / size[0]))
                if downsample & (downsample - 1) or size[0] not in (width0 // downsample, -(-width0 // downsample)) \
                        or size[1] not in (height0 // downsample, -(-height0 // downsample)):
                    continue
                found[level] = _RawLevel(
                    tile_w=page.tilewidth, tile_h=page.tilelength,
                    across=-(-page.imagewidth // page.tilewidth), down=-(-page.imagelength // page.tilelength),
                    offsets=np.asarray(page.dataoffsets), counts=np.asarray(page.databytecounts),
                    tables=bytes(page.jpegtables or b""), rgb=page.photometric == 2,
                    width=size[0], height=size[1], downsample=downsample)
        return found
    except Exception:
        return {}


def encode_jpeg(image: Image.Image, *, quality: int = 80) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def encode_jpeg_array(pixels: np.ndarray, *, quality: int = 80) -> bytes:
    """(H, W, 3) uint8 RGB as JPEG with libjpeg-turbo (simplejpeg: 4:2:0, like Pillow's default)."""
    import simplejpeg

    return simplejpeg.encode_jpeg(np.ascontiguousarray(pixels), quality=quality, colorspace="RGB",
                                  colorsubsampling="420")


class SlideReaderCache:
    """LRU cache of open SlideReaders, keyed by path and modification time, behind a lock.

    Like the `_SlideCache` of openslide-python's deep-zoom example: opening a slide costs
    milliseconds to seconds (MRXS, NDPI), reading a tile from an open one much less.
    """

    def __init__(self, capacity: int = 32):
        self.capacity = capacity
        self._lock = threading.Lock()
        self._readers: OrderedDict[tuple[str, float], SlideReader] = OrderedDict()

    def get(self, path: Path) -> SlideReader:
        path = Path(path)
        key = (str(path), path.stat().st_mtime)
        with self._lock:
            reader = self._readers.get(key)
            if reader is not None:
                self._readers.move_to_end(key)
                return reader
        reader = SlideReader(path)  # opened outside the lock: other slides stay served meanwhile
        with self._lock:
            existing = self._readers.get(key)
            if existing is not None:
                reader.close()
                return existing
            self._readers[key] = reader
            while len(self._readers) > self.capacity:
                # Evicted readers are not closed: a request may still be using one; GC closes it.
                self._readers.popitem(last=False)
        return reader

    def clear(self) -> None:
        with self._lock:
            self._readers.clear()

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
        self._raw_levels = _raw_jpeg_levels(self.path, self.level_dimensions) if self.vendor == "generic-tiff" else {}
        self._fd = os.open(self.path, os.O_RDONLY) if self._raw_levels else None

    def raw_jpeg_tile(self, *, level: int, col: int, row: int, tile_size: int) -> bytes | None:
        """The stored JPEG of a full tile of pyramid `level`, as a standalone JPEG, or None."""
        found = self._raw_levels.get(level)
        if found is None or self._fd is None:
            return None
        tile_w, tile_h, across, offsets, counts, tables, (width, height) = found
        if (tile_w, tile_h) != (tile_size, tile_size) or (col + 1) * tile_w > width or (row + 1) * tile_h > height:
            return None
        index = row * across + col
        data = os.pread(self._fd, int(counts[index]), int(offsets[index]))
        # TIFF JPEG tiles are abbreviated streams; the shared tables go after the SOI.
        return tables[:-2] + data[2:] if tables else data

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

    When the deep-zoom tile is exactly one stored tile of a generic tiled TIFF (our converted
    slides and phantoms: 256 px YCbCr JPEG tiles, levels halving), the stored JPEG is sent as it
    is, without decoding and re-encoding (as large_image's TIFF source does); it then keeps the
    file's own JPEG quality. Every other tile is read through OpenSlide and encoded.
    """
    (x0, y0, w0, h0), (tile_w, tile_h) = geometry.tile_region(level, col, row)
    if geometry.overlap == 0 and tile_w == tile_h == geometry.tile_size:
        scale = geometry.level_scale(level)
        best = reader.best_level_for_downsample(scale)
        if reader.level_downsamples[best] == scale and x0 % (scale * tile_w) == 0 and y0 % (scale * tile_h) == 0:
            raw = reader.raw_jpeg_tile(level=best, col=x0 // (scale * tile_w), row=y0 // (scale * tile_h),
                                       tile_size=geometry.tile_size)
            if raw is not None:
                return raw
    image = reader.read_scaled(x=x0, y=y0, width=w0, height=h0, out_width=tile_w, out_height=tile_h)
    return encode_jpeg(image, quality=quality)


def _raw_jpeg_levels(path: Path, level_dimensions) -> dict:
    """Pyramid levels whose tiles are stored as YCbCr JPEG: level -> (tile w, h, across, offsets, counts, tables, size)."""
    try:
        import tifffile

        found = {}
        with tifffile.TiffFile(path) as tif:
            for page in tif.pages:
                if not page.is_tiled or page.compression != 7 or page.photometric != 6 or page.samplesperpixel != 3:
                    continue
                size = (page.imagewidth, page.imagelength)
                if size in level_dimensions and level_dimensions.index(size) not in found:
                    found[level_dimensions.index(size)] = (
                        page.tilewidth, page.tilelength, -(-page.imagewidth // page.tilewidth),
                        np.asarray(page.dataoffsets), np.asarray(page.databytecounts), page.jpegtables, size)
        return found
    except Exception:
        return {}


def encode_jpeg(image: Image.Image, *, quality: int = 80) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


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

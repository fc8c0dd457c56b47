"""Convert plain images (JPEG, PNG, flat TIFF) once into tiled pyramidal TIFFs.

DESIGN.md 4: slides that are plain large images are converted once, then served like
any other whole-slide image (OpenSlide "generic-tiff", see analysis.core.slides.pyramid).

- Format is sniffed from the magic bytes, not the file name.
- JPEG / PNG are decoded whole by Pillow (a 9274 x 9911 JPEG needs ~370 MB), with
  Pillow's decompression-bomb limit raised to ``max_pixels`` and a clear
  ImageTooLargeError beyond it; regions are then cut from the decoded image strip by
  strip, so no second full-size copy is made.
- Flat TIFF (one resolution level): uncompressed 8-bit pages are memory-mapped (memory
  bounded by the strips being written); compressed pages are decoded whole.
  Multi-resolution TIFFs (SVS, pyramidal OME-TIFF, ...) are refused: open them directly.
- EXIF / TIFF orientation is applied; alpha is composited on white (glass); greyscale
  becomes grey RGB; 16-bit is scaled to 8-bit by 255/65535; float in [0, 1] by 255.
- mpp comes from TIFF XResolution + ResolutionUnit (inch or centimetre) or the JPEG /
  PNG density, and only when it is plausible for a microscope (0.05-20 um/px): the
  72 / 96 / 300 dpi that editors write by default are screen or print densities, not
  scans, and are reported as unknown. An explicit ``mpp`` argument wins.
"""
from __future__ import annotations

import math
import struct
import threading
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tifffile
from numpy.typing import NDArray
from PIL import Image, ImageOps, UnidentifiedImageError

from analysis.core.slides.pyramid import InvalidPyramidRequestError, PyramidError, write_pyramidal_tiff

DEFAULT_MAX_PIXELS = 500_000_000  # ~2 GB decoded by Pillow (4 bytes/px); fits a worker
PLAUSIBLE_MPP = (0.05, 20.0)

_PIL_LOCK = threading.Lock()


class ConversionError(ValueError):
    """Base class: the image cannot be converted."""


class UnsupportedImageError(ConversionError):
    """Not a JPEG / PNG / flat TIFF image, or a kind of one we do not convert."""


class CorruptImageError(ConversionError):
    """Looks like a supported image but cannot be decoded (truncated or damaged)."""


class ImageTooLargeError(ConversionError):
    """Decoding the image whole would need more memory than allowed."""


@dataclass(frozen=True)
class ConvertResult:
    dst: Path
    width: int
    height: int
    level_dimensions: tuple[tuple[int, int], ...]
    mpp: float | None
    mpp_source: str  # "argument", "tiff-resolution", "jpeg-density", "png-density" or "unknown"
    source_format: str  # "JPEG", "PNG" or "TIFF"
    source_mode: str  # decoder's pixel layout, e.g. "RGB", "RGBA", "I;16", "uint16x3"
    orientation: int  # EXIF/TIFF orientation that was applied (1 = none)
    file_size_bytes: int


Region = Callable[..., NDArray[np.uint8]]


def sniff_image_format(*, path: Path) -> str | None:
    """'JPEG', 'PNG', 'TIFF' from the magic bytes, else None."""
    with open(path, "rb") as fh:
        head = fh.read(8)
    if head[:3] == b"\xff\xd8\xff":
        return "JPEG"
    if head == b"\x89PNG\r\n\x1a\n":
        return "PNG"
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "TIFF"
    return None


def plausible_mpp(*, mpp: float | None) -> float | None:
    """mpp if it could come from a microscope scan, else None (unknown)."""
    if mpp is None or not math.isfinite(mpp):
        return None
    return mpp if PLAUSIBLE_MPP[0] <= mpp <= PLAUSIBLE_MPP[1] else None


def convert_to_pyramidal_tiff(
    *,
    src: Path,
    dst: Path,
    mpp: float | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    jpeg_quality: int = 85,
) -> ConvertResult:
    """Convert ``src`` (JPEG / PNG / flat TIFF) into the pyramidal TIFF ``dst``, atomically.

    Raises UnsupportedImageError, CorruptImageError or ImageTooLargeError (all ValueError)
    before anything is written; nothing is left at ``dst`` or beside it on failure.
    """
    src, dst = Path(src), Path(dst)
    if not src.is_file():
        raise ConversionError(f"source image not found: {src}")
    if dst.suffix.lower() not in (".tif", ".tiff"):
        raise ConversionError(f"destination must end in .tif or .tiff, got {dst.name}")
    if dst.resolve() == src.resolve():
        raise ConversionError("destination must differ from the source")
    if mpp is not None and not (math.isfinite(mpp) and mpp > 0):
        raise ConversionError(f"mpp must be a positive number, got {mpp}")
    fmt = sniff_image_format(path=src)
    if fmt is None:
        raise UnsupportedImageError(f"{src.name} is not a JPEG, PNG or TIFF image{_what_it_is(src)}")
    if fmt == "TIFF":
        decoded = _open_tiff(src=src, max_pixels=max_pixels)
    else:
        decoded = _open_with_pillow(src=src, fmt=fmt, max_pixels=max_pixels)
    if mpp is not None:
        final_mpp, source = float(mpp), "argument"
    else:
        final_mpp = plausible_mpp(mpp=decoded.mpp)
        source = decoded.mpp_source if final_mpp is not None else "unknown"
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        info = write_pyramidal_tiff(
            dst=dst,
            width=decoded.width,
            height=decoded.height,
            read_region=decoded.read_region,
            mpp=final_mpp,
            jpeg_quality=jpeg_quality,
            description=f"HER2-LADDER conversion of {src.name}",
        )
    except InvalidPyramidRequestError as exc:
        raise ConversionError(str(exc)) from exc
    except (PyramidError, OSError, ValueError) as exc:
        if isinstance(exc, ConversionError):
            raise
        raise CorruptImageError(f"{src.name} could not be read to the end: {exc}") from exc
    finally:
        decoded.close()
    return ConvertResult(
        dst=dst,
        width=decoded.width,
        height=decoded.height,
        level_dimensions=info.level_dimensions,
        mpp=final_mpp,
        mpp_source=source,
        source_format=fmt,
        source_mode=decoded.mode,
        orientation=decoded.orientation,
        file_size_bytes=info.file_size_bytes,
    )


@dataclass
class _Decoded:
    width: int
    height: int
    read_region: Region
    mpp: float | None
    mpp_source: str
    mode: str
    orientation: int
    close: Callable[[], None]


def _what_it_is(path: Path) -> str:
    with open(path, "rb") as fh:
        head = fh.read(132)
    if head[128:132] == b"DICM":
        return " (it is DICOM: import it as a slide, not as a plain image)"
    if not head:
        return " (the file is empty)"
    return ""


def _too_large(*, name: str, width: int, height: int, max_pixels: int) -> ImageTooLargeError:
    return ImageTooLargeError(
        f"{name} is {width} x {height} = {width * height:,} px, above the conversion limit of "
        f"{max_pixels:,} px (decoding it whole would need ~{width * height * 4 / 1e9:.1f} GB); "
        "convert it with a tiling tool or raise max_pixels"
    )


# --------------------------------------------------------------------------- Pillow (JPEG, PNG)


def _open_with_pillow(*, src: Path, fmt: str, max_pixels: int) -> _Decoded:
    with _PIL_LOCK, warnings.catch_warnings():
        # Pillow refuses > 2 x MAX_IMAGE_PIXELS outright; we check max_pixels ourselves.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        previous = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = max(max_pixels, previous or 0)
        try:
            image = Image.open(src)
        except (UnidentifiedImageError, SyntaxError, OSError, ValueError) as exc:
            raise CorruptImageError(f"{src.name} looks like {fmt} but cannot be opened: {exc}") from exc
        except Image.DecompressionBombError as exc:
            raise ImageTooLargeError(f"{src.name}: {exc}") from exc
        finally:
            Image.MAX_IMAGE_PIXELS = previous
    if image.format != fmt:
        image.close()
        raise UnsupportedImageError(f"{src.name}: Pillow reads it as {image.format}, expected {fmt}")
    width, height = image.size
    if width * height > max_pixels:
        image.close()
        raise _too_large(name=src.name, width=width, height=height, max_pixels=max_pixels)
    dpi = image.info.get("dpi")
    mode = image.mode
    try:
        image.load()
        # After load: PNG keeps EXIF in chunks that may follow the pixel data.
        orientation = int(image.getexif().get(0x0112, 1) or 1)
        rgb = _pillow_to_rgb(ImageOps.exif_transpose(image))
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise CorruptImageError(f"{src.name} is damaged or truncated: {exc}") from exc
    finally:
        image.close()
    mpp = None
    if dpi and dpi[0] and dpi[0] > 0:
        mpp = 25_400.0 / float(dpi[0])

    def read_region(*, x: int, y: int, width: int, height: int) -> NDArray[np.uint8]:
        return np.asarray(rgb.crop((x, y, x + width, y + height)))

    return _Decoded(
        width=rgb.width,
        height=rgb.height,
        read_region=read_region,
        mpp=mpp,
        mpp_source="jpeg-density" if fmt == "JPEG" else "png-density",
        mode=mode,
        orientation=orientation if 1 <= orientation <= 8 else 1,
        close=rgb.close,
    )


def _pillow_to_rgb(image: Image.Image) -> Image.Image:
    mode = image.mode
    if mode == "RGB":
        return image
    if mode in ("RGBA", "LA", "PA", "RGBa", "La") or (mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    if mode.startswith("I;16") or mode in ("I", "F"):
        return Image.fromarray(_grey_to_rgb(_scaled_to_uint8(np.asarray(image), mode=mode)))
    return image.convert("RGB")  # 1, L, P, CMYK, YCbCr, LAB, HSV


# --------------------------------------------------------------------------- TIFF


def _open_tiff(*, src: Path, max_pixels: int) -> _Decoded:
    try:
        tf = tifffile.TiffFile(src)
    except (tifffile.TiffFileError, OSError, ValueError, struct.error) as exc:
        raise CorruptImageError(f"{src.name} looks like TIFF but cannot be parsed: {exc}") from exc
    try:
        return _decode_tiff(tf=tf, src=src, max_pixels=max_pixels)
    except BaseException:
        tf.close()
        raise


def _decode_tiff(*, tf: tifffile.TiffFile, src: Path, max_pixels: int) -> _Decoded:
    if not tf.pages:
        raise CorruptImageError(f"{src.name} holds no image")
    series = tf.series[0] if tf.series else None
    if tf.is_svs:
        raise UnsupportedImageError(
            f"{src.name} is an Aperio SVS whole-slide image; open it directly, no conversion needed"
        )
    if series is not None and len(series.levels) > 1:
        raise UnsupportedImageError(f"{src.name} is already a pyramidal TIFF; open it directly, no conversion needed")
    page = tf.pages.first
    photometric = tifffile.PHOTOMETRIC(page.photometric)
    supported = (
        tifffile.PHOTOMETRIC.MINISBLACK,
        tifffile.PHOTOMETRIC.MINISWHITE,
        tifffile.PHOTOMETRIC.RGB,
        tifffile.PHOTOMETRIC.YCBCR,
        tifffile.PHOTOMETRIC.PALETTE,
    )
    if photometric not in supported:
        raise UnsupportedImageError(f"{src.name}: TIFF colour space {photometric.name} is not supported")
    if page.imagedepth > 1 or len(page.shape) > 3 + int(page.planarconfig == 2):
        raise UnsupportedImageError(f"{src.name}: volumetric / multi-channel TIFF is not supported")
    width, height = int(page.imagewidth), int(page.imagelength)
    if width * height > max_pixels:
        raise _too_large(name=src.name, width=width, height=height, max_pixels=max_pixels)
    orientation = int(page.tags.valueof(274, 1) or 1)
    mpp = _tiff_mpp(page=page)
    mode = f"{page.dtype.name}x{page.samplesperpixel}"

    contiguous_8bit_rgb = (
        page.is_memmappable
        and page.dtype == np.uint8
        and photometric == tifffile.PHOTOMETRIC.RGB
        and page.samplesperpixel == 3
        and page.planarconfig == 1
        and orientation == 1
    )
    if contiguous_8bit_rgb:
        try:
            pixels = tf.pages.first.asarray(out="memmap")
        except (ValueError, OSError) as exc:
            raise CorruptImageError(f"{src.name} is truncated or damaged: {exc}") from exc

        def read_region(*, x: int, y: int, width: int, height: int) -> NDArray[np.uint8]:
            return np.ascontiguousarray(pixels[y : y + height, x : x + width])

        return _Decoded(width, height, read_region, mpp, "tiff-resolution", mode, orientation, tf.close)

    try:
        array = page.asarray()
    except Exception as exc:  # codecs raise their own error types
        raise CorruptImageError(f"{src.name} is truncated or damaged: {exc}") from exc
    finally:
        tf.close()
    rgb = _tiff_to_rgb(array=array, page=page, photometric=photometric, name=src.name)
    rgb = _oriented(rgb, orientation=orientation)

    def read_array(*, x: int, y: int, width: int, height: int) -> NDArray[np.uint8]:
        return np.ascontiguousarray(rgb[y : y + height, x : x + width])

    return _Decoded(
        rgb.shape[1], rgb.shape[0], read_array, mpp, "tiff-resolution", mode, orientation, lambda: None
    )


def _tiff_mpp(*, page: tifffile.TiffPage) -> float | None:
    unit = page.tags.valueof(296, 2)  # ResolutionUnit, TIFF default inch
    resolution = page.tags.valueof(282)  # XResolution, a rational
    if resolution is None:
        return None
    value = resolution[0] / resolution[1] if isinstance(resolution, tuple) else float(resolution)
    if not value or value <= 0:
        return None
    if unit == 2:
        return 25_400.0 / value
    if unit == 3:
        return 10_000.0 / value
    return None  # NONE: no physical unit


def _tiff_to_rgb(
    *, array: NDArray, page: tifffile.TiffPage, photometric: tifffile.PHOTOMETRIC, name: str
) -> NDArray[np.uint8]:
    if page.planarconfig == 2 and array.ndim == 3:
        array = np.moveaxis(array, 0, -1)
    if photometric == tifffile.PHOTOMETRIC.PALETTE:
        colormap = page.colormap  # (3, 2**bits), 16-bit
        if colormap is None:
            raise CorruptImageError(f"{name}: palette TIFF without a colour map")
        lut = _scaled_to_uint8(np.asarray(colormap).T, mode=str(colormap.dtype))
        return np.ascontiguousarray(lut[array])
    extra = page.extrasamples
    if array.ndim == 3 and array.shape[-1] in (2, 4) and len(extra):
        colour, alpha = array[..., :-1], array[..., -1]
        colour8 = _scaled_to_uint8(colour, mode=str(array.dtype))
        alpha8 = _scaled_to_uint8(alpha, mode=str(array.dtype)).astype(np.float32)[..., None] / 255.0
        if colour8.shape[-1] == 1:
            colour8 = np.repeat(colour8, 3, axis=-1)
        blended = colour8.astype(np.float32) * alpha8 + 255.0 * (1.0 - alpha8)
        return np.rint(blended).astype(np.uint8)
    array8 = _scaled_to_uint8(array, mode=str(array.dtype))
    if photometric == tifffile.PHOTOMETRIC.MINISWHITE:
        array8 = 255 - array8
    if array8.ndim == 2 or array8.shape[-1] == 1:
        return _grey_to_rgb(array8.reshape(array8.shape[0], array8.shape[1]))
    if array8.shape[-1] != 3:
        raise UnsupportedImageError(f"{name}: {array8.shape[-1]} samples per pixel is not supported")
    return np.ascontiguousarray(array8)


def _scaled_to_uint8(array: NDArray, *, mode: str) -> NDArray[np.uint8]:
    if array.dtype == np.uint8:
        return array
    if array.dtype == bool:
        return array.astype(np.uint8) * 255
    if array.dtype == np.uint16 or mode.startswith("I;16"):
        return ((array.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
    if np.issubdtype(array.dtype, np.floating):
        top = float(np.nanmax(array)) if array.size else 1.0
        scale = 255.0 if top <= 1.0 else 1.0  # [0, 1] floats; else assume 0..255
        return np.clip(np.rint(np.nan_to_num(array) * scale), 0, 255).astype(np.uint8)
    if np.issubdtype(array.dtype, np.integer):
        # 32-bit integer greyscale (Pillow "I"): 16-bit data when it fits, else 8-bit range.
        top = int(array.max()) if array.size else 0
        if top > 65535 or array.min() < 0:
            raise UnsupportedImageError(f"integer pixel values {array.min()}..{top} are not an image range")
        if top > 255:
            return ((array.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
        return array.astype(np.uint8)
    raise UnsupportedImageError(f"pixel type {array.dtype} is not supported")


def _grey_to_rgb(grey: NDArray[np.uint8]) -> NDArray[np.uint8]:
    return np.ascontiguousarray(np.repeat(grey[..., None], 3, axis=-1))


def _oriented(array: NDArray[np.uint8], *, orientation: int) -> NDArray[np.uint8]:
    """Apply a TIFF/EXIF Orientation (1-8) so row 0 is the visual top, column 0 the left."""
    ops = {
        1: lambda a: a,
        2: lambda a: a[:, ::-1],
        3: lambda a: a[::-1, ::-1],
        4: lambda a: a[::-1],
        5: lambda a: a.transpose(1, 0, 2),
        6: lambda a: np.rot90(a, k=-1),
        7: lambda a: np.rot90(a, k=2).transpose(1, 0, 2),
        8: lambda a: np.rot90(a, k=1),
    }
    return np.ascontiguousarray(ops.get(orientation, ops[1])(array))

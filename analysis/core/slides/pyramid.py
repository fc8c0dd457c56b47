"""Write tiled pyramidal TIFFs that OpenSlide opens as "generic-tiff", in bounded memory.

Layout (what OpenSlide's generic TIFF reader and large_image's tiff source both read):

- one top-level IFD per level, level 0 first, each level half the size of the one above
  (ceil), down to the first level whose larger side is <= ``smallest_level_max_side``;
  levels below 0 carry NewSubfileType = 1 (reduced-resolution image), as in vips/bfconvert;
- 256 x 256 tiles, JPEG (libjpeg via imagecodecs) with photometric RGB, which tifffile
  stores as YCbCr 4:2:0 JPEG (PhotometricInterpretation 6), the same as Aperio SVS;
- micrometres per pixel as XResolution/YResolution in pixels per centimetre with
  ResolutionUnit = CENTIMETER: OpenSlide's generic TIFF reader derives
  ``openslide.mpp-x``/``mpp-y`` = 10000 / resolution only from that unit
  (openslide-vendor-generic-tiff.c / openslide-decode-tiff.c, OpenSlide 4.0).
  Unknown mpp: ResolutionUnit NONE, so OpenSlide reports no mpp.

Memory stays bounded: level 0 is asked from the tile source one strip of
``tile_size`` rows (in chunks of ``read_width`` columns) at a time and written tile by
tile; each lower level is built by decoding back 2 x 2 tiles of the level above from a
scratch file, box-averaging them (the 2 x 2 mean that vips and OpenSlide-era pyramid
tools use), and writing one tile. The scratch levels are then copied as compressed
bytes (no re-encoding) into a temporary file next to ``dst`` that replaces ``dst``
atomically (analysis.core.files), so readers never see a half-written slide.
"""
from __future__ import annotations

import math
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import tifffile
from numpy.typing import NDArray

from analysis.core.files import atomic_path

TILE_SIZE = 256
DEFAULT_JPEG_QUALITY = 85
SMALLEST_LEVEL_MAX_SIDE = 1024
# Classic TIFF offsets are 32-bit; past ~3.5 GB of tile data a BigTIFF is needed.
_BIGTIFF_FROM_BYTES = 3_500_000_000


class PyramidError(ValueError):
    """Base class of the errors raised while writing a pyramidal TIFF."""


class InvalidPyramidRequestError(PyramidError):
    """The dimensions, mpp, tile size or quality asked for cannot be written."""


class TileSourceError(PyramidError):
    """The tile source returned something other than the RGB uint8 region asked for."""


class RegionReader(Protocol):
    """A tile source: returns the level-0 region as an (height, width, 3) uint8 RGB array."""

    def __call__(self, *, x: int, y: int, width: int, height: int) -> NDArray[np.uint8]: ...


@dataclass(frozen=True)
class PyramidInfo:
    """What was written."""

    path: Path
    level_dimensions: tuple[tuple[int, int], ...]  # (width, height) per level, level 0 first
    mpp: float | None
    tile_size: int
    jpeg_quality: int
    file_size_bytes: int


def pyramid_level_dimensions(
    *, width: int, height: int, smallest_level_max_side: int = SMALLEST_LEVEL_MAX_SIDE
) -> tuple[tuple[int, int], ...]:
    """Level sizes: each level ceil-halves the one above until max(side) <= the limit."""
    if width < 1 or height < 1:
        raise InvalidPyramidRequestError(f"image size must be positive, got {width} x {height}")
    if smallest_level_max_side < 1:
        raise InvalidPyramidRequestError("smallest_level_max_side must be >= 1")
    dims = [(width, height)]
    while max(dims[-1]) > smallest_level_max_side:
        w, h = dims[-1]
        dims.append(((w + 1) // 2, (h + 1) // 2))
    return tuple(dims)


def write_pyramidal_tiff(
    *,
    dst: Path,
    width: int,
    height: int,
    read_region: RegionReader,
    mpp: float | None,
    jpeg_quality: int = DEFAULT_JPEG_QUALITY,
    tile_size: int = TILE_SIZE,
    read_width: int = 4096,
    smallest_level_max_side: int = SMALLEST_LEVEL_MAX_SIDE,
    description: str = "HER2-LADDER pyramidal TIFF",
) -> PyramidInfo:
    """Write ``read_region``'s width x height RGB image to ``dst`` as a pyramidal TIFF.

    ``read_region(x=, y=, width=, height=)`` is called for strips of ``tile_size`` rows
    and at most ``read_width`` columns, in raster order, never for the whole image.
    ``mpp`` (micrometres per level-0 pixel) None means unknown: no resolution is stored.
    """
    dst = Path(dst)
    if tile_size < 16 or tile_size % 16:
        raise InvalidPyramidRequestError(f"tile_size must be a multiple of 16, got {tile_size}")
    if not 1 <= jpeg_quality <= 100:
        raise InvalidPyramidRequestError(f"jpeg_quality must be in 1..100, got {jpeg_quality}")
    if mpp is not None and not (math.isfinite(mpp) and mpp > 0):
        raise InvalidPyramidRequestError(f"mpp must be a positive finite number or None, got {mpp}")
    if read_width < tile_size:
        raise InvalidPyramidRequestError("read_width must be at least tile_size")
    if description.startswith("Aperio"):
        # OpenSlide would then take the file for an Aperio SVS.
        raise InvalidPyramidRequestError("description must not start with 'Aperio'")
    dims = pyramid_level_dimensions(
        width=width, height=height, smallest_level_max_side=smallest_level_max_side
    )
    if not dst.parent.is_dir():
        raise InvalidPyramidRequestError(f"output folder does not exist: {dst.parent}")

    common = dict(
        dtype=np.uint8,
        photometric="rgb",
        tile=(tile_size, tile_size),
        compression="jpeg",
        compressionargs={"level": jpeg_quality},
        metadata=None,
    )
    with tempfile.TemporaryDirectory(prefix=f".{dst.name}.", dir=dst.parent) as scratch_dir:
        scratch = [Path(scratch_dir) / f"level{i}.tif" for i in range(len(dims))]
        # Scratch levels: BigTIFF always, they are never handed to readers.
        with tifffile.TiffWriter(scratch[0], bigtiff=True) as tw:
            tw.write(
                _level0_tiles(
                    read_region=read_region,
                    width=width,
                    height=height,
                    tile_size=tile_size,
                    read_width=read_width,
                ),
                shape=(height, width, 3),
                **common,
            )
        for level in range(1, len(dims)):
            w, h = dims[level]
            with tifffile.TiffWriter(scratch[level], bigtiff=True) as tw:
                tw.write(
                    _downsampled_tiles(src=scratch[level - 1], tile_size=tile_size),
                    shape=(h, w, 3),
                    **common,
                )

        total_bytes = sum(p.stat().st_size for p in scratch)
        with atomic_path(dst) as tmp:  # slides are read by the web process: 0644
            with tifffile.TiffWriter(tmp, bigtiff=total_bytes >= _BIGTIFF_FROM_BYTES) as tw:
                for level, path in enumerate(scratch):
                    w, h = dims[level]
                    with tifffile.TiffFile(path) as tf:
                        page = tf.pages[0]
                        tw.write(
                            _raw_tiles(tf=tf, page=page),
                            shape=(h, w, 3),
                            subsampling=page.subsampling,
                            jpegtables=page.jpegtables,
                            subfiletype=0 if level == 0 else 1,
                            description=description if level == 0 else None,
                            software="HER2-LADDER",
                            **_resolution_tags(mpp=mpp, downsample=2**level),
                            **common,
                        )
    return PyramidInfo(
        path=dst,
        level_dimensions=dims,
        mpp=mpp,
        tile_size=tile_size,
        jpeg_quality=jpeg_quality,
        file_size_bytes=dst.stat().st_size,
    )


def _resolution_tags(*, mpp: float | None, downsample: int) -> dict[str, object]:
    if mpp is None:
        # tifffile would otherwise write 1 px/unit; NONE tells every reader "no unit".
        return {"resolution": (1, 1), "resolutionunit": "NONE"}
    pixels_per_cm = 10_000.0 / (mpp * downsample)
    return {"resolution": (pixels_per_cm, pixels_per_cm), "resolutionunit": "CENTIMETER"}


def _level0_tiles(
    *, read_region: RegionReader, width: int, height: int, tile_size: int, read_width: int
) -> Iterator[NDArray[np.uint8]]:
    chunk = max(tile_size, read_width // tile_size * tile_size)
    for y in range(0, height, tile_size):
        h = min(tile_size, height - y)
        for x0 in range(0, width, chunk):
            w = min(chunk, width - x0)
            region = read_region(x=x0, y=y, width=w, height=h)
            region = _checked_region(region=region, width=w, height=h, x=x0, y=y)
            for tx in range(0, w, tile_size):
                yield _padded_tile(region[:, tx : tx + tile_size], tile_size=tile_size)


def _checked_region(
    *, region: object, width: int, height: int, x: int, y: int
) -> NDArray[np.uint8]:
    if not isinstance(region, np.ndarray):
        raise TileSourceError(f"tile source returned {type(region).__name__}, not a numpy array")
    if region.shape != (height, width, 3) or region.dtype != np.uint8:
        raise TileSourceError(
            f"tile source returned {region.dtype} {region.shape} for region x={x} y={y}, "
            f"expected uint8 {(height, width, 3)}"
        )
    return region


def _padded_tile(tile: NDArray[np.uint8], *, tile_size: int) -> NDArray[np.uint8]:
    if tile.shape[0] == tile_size and tile.shape[1] == tile_size:
        return np.ascontiguousarray(tile)
    # Edge tiles: replicate the last row/column instead of tifffile's zero padding, so
    # that the 2 x 2 average of the next level does not darken the right/bottom edge.
    return np.pad(
        tile, ((0, tile_size - tile.shape[0]), (0, tile_size - tile.shape[1]), (0, 0)), mode="edge"
    )


def _raw_tiles(*, tf: tifffile.TiffFile, page: tifffile.TiffPage) -> Iterator[bytes]:
    fh = tf.filehandle
    for offset, count in zip(page.dataoffsets, page.databytecounts):
        fh.seek(offset)
        yield fh.read(count)


class _TileDecoder:
    """Decodes single tiles of the first page of a tiled TIFF (the level above)."""

    def __init__(self, *, tf: tifffile.TiffFile) -> None:
        self._tf = tf
        self._page = tf.pages[0]
        self.tile_size = int(self._page.tilewidth)
        self.width = int(self._page.imagewidth)
        self.height = int(self._page.imagelength)
        self.columns = math.ceil(self.width / self.tile_size)
        self.rows = math.ceil(self.height / self.tile_size)
        self._decode = self._page.decode

    def tile(self, *, row: int, column: int) -> NDArray[np.uint8]:
        index = row * self.columns + column
        fh = self._tf.filehandle
        fh.seek(self._page.dataoffsets[index])
        data = fh.read(self._page.databytecounts[index])
        array, _, _ = self._decode(data, index, jpegtables=self._page.jpegtables)
        return array.reshape(self.tile_size, self.tile_size, 3)


def _downsampled_tiles(*, src: Path, tile_size: int) -> Iterator[NDArray[np.uint8]]:
    with tifffile.TiffFile(src) as tf:
        above = _TileDecoder(tf=tf)
        columns = math.ceil(above.width / 2 / tile_size)
        rows = math.ceil(above.height / 2 / tile_size)
        block = np.empty((2 * tile_size, 2 * tile_size, 3), dtype=np.uint8)
        for row in range(rows):
            for column in range(columns):
                for dr in range(2):
                    for dc in range(2):
                        r, c = 2 * row + dr, 2 * column + dc
                        # Past the edge of the level above: repeat its last tile row/column.
                        tile = above.tile(row=min(r, above.rows - 1), column=min(c, above.columns - 1))
                        block[dr * tile_size : (dr + 1) * tile_size, dc * tile_size : (dc + 1) * tile_size] = tile
                yield box_downsample_2x(block)


def box_downsample_2x(image: NDArray[np.uint8]) -> NDArray[np.uint8]:
    """2 x 2 mean with round-half-up, for an (even h, even w, c) uint8 array."""
    if image.ndim != 3 or image.shape[0] % 2 or image.shape[1] % 2:
        raise InvalidPyramidRequestError(f"need an (even, even, channels) array, got {image.shape}")
    acc = image[0::2, 0::2].astype(np.uint16)
    acc += image[1::2, 0::2]
    acc += image[0::2, 1::2]
    acc += image[1::2, 1::2]
    acc += 2
    acc >>= 2
    return acc.astype(np.uint8)

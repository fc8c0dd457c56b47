"""Plain image -> pyramidal TIFF conversion, on real files and on crafted edge cases."""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import openslide
import pytest
import tifffile
from PIL import Image

from analysis.core.slides.convert import (
    ConversionError,
    CorruptImageError,
    ImageTooLargeError,
    UnsupportedImageError,
    convert_to_pyramidal_tiff,
    plausible_mpp,
)
from analysis.core.slides.pyramid import write_pyramidal_tiff


def slide_pixels(path: Path, *, location=(0, 0), size=None) -> np.ndarray:
    slide = openslide.OpenSlide(path)
    size = size or slide.dimensions
    region = np.asarray(slide.read_region(location, 0, size).convert("RGB"))
    slide.close()
    return region


def mean_abs_diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(int) - b.astype(int)).mean())


def textured(width: int, height: int, seed: int = 0) -> np.ndarray:
    """Smooth colour image that JPEG keeps close (pixel comparisons stay meaningful)."""
    yy, xx = np.mgrid[0:height, 0:width]
    rng = np.random.default_rng(seed)
    phase = rng.uniform(0, 6, 3)
    channels = [127 + 100 * np.sin(xx / (17 + 5 * k) + yy / (23 + 3 * k) + phase[k]) for k in range(3)]
    return np.clip(np.stack(channels, axis=-1), 0, 255).astype(np.uint8)


# --------------------------------------------------------------------------- real data


@pytest.fixture(scope="module")
def converted_her2st(shared_file, tmp_path_factory):
    src = shared_file("slides/her2st-C2-HE.jpg")
    dst = tmp_path_factory.mktemp("her2st") / "her2st.tif"
    return src, convert_to_pyramidal_tiff(src=src, dst=dst)


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_her2st_jpeg_converts_with_right_size_and_pixels(converted_her2st):
    src, result = converted_her2st
    slide = openslide.OpenSlide(result.dst)
    assert slide.properties["openslide.vendor"] == "generic-tiff"
    assert slide.dimensions == (9274, 9911) == (result.width, result.height)
    assert slide.level_count == len(result.level_dimensions) == 5
    assert max(slide.level_dimensions[-1]) <= 1024
    # 72 dpi in the JPEG is an editor default, not a scan resolution.
    assert result.mpp is None and result.mpp_source == "unknown"
    assert "openslide.mpp-x" not in slide.properties
    with Image.open(src) as original:
        expected = np.asarray(original.crop((4000, 5000, 4512, 5400)).convert("RGB"))
    region = np.asarray(slide.read_region((4000, 5000), 0, (512, 400)).convert("RGB"))
    assert mean_abs_diff(region, expected) < 4.0  # one extra JPEG generation at q85


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_her2st_with_explicit_mpp(shared_file, tmp_path: Path):
    # Small crop keeps this fast; the explicit mpp reaches OpenSlide.
    with Image.open(shared_file("slides/her2st-C2-HE.jpg")) as im:
        im.crop((0, 0, 1500, 1200)).save(tmp_path / "crop.jpg", quality=95)
    result = convert_to_pyramidal_tiff(src=tmp_path / "crop.jpg", dst=tmp_path / "crop.tif", mpp=0.7)
    assert result.mpp_source == "argument"
    assert float(openslide.OpenSlide(result.dst).properties["openslide.mpp-x"]) == pytest.approx(0.7)


def test_kidney_flat_tiff(shared_file, tmp_path: Path):
    src = shared_file("ihc/kidney-ihc-48-5.tif")
    result = convert_to_pyramidal_tiff(src=src, dst=tmp_path / "kidney.tif")
    assert (result.width, result.height) == (1493, 901)
    assert result.level_dimensions == ((1493, 901), (747, 451))
    assert result.source_format == "TIFF"
    assert mean_abs_diff(slide_pixels(result.dst), tifffile.imread(src)) < 3.0


def test_skimage_ihc_png(shared_file, tmp_path: Path):
    src = shared_file("ihc/skimage-ihc.png")
    result = convert_to_pyramidal_tiff(src=src, dst=tmp_path / "ihc.tif")
    assert (result.width, result.height) == (512, 512)
    assert result.mpp is None  # 96 dpi screen density
    with Image.open(src) as im:
        expected = np.asarray(im.convert("RGB"))
    assert mean_abs_diff(slide_pixels(result.dst), expected) < 3.0


@pytest.mark.parametrize(
    "name, error, message",
    [
        ("bad/broken.svs", UnsupportedImageError, "not a JPEG, PNG or TIFF"),
        ("bad/malformed-wsi.dcm", UnsupportedImageError, "DICOM"),
        ("slides/CMU-1-Small-Region.svs", UnsupportedImageError, "open it directly"),
    ],
)
def test_bad_and_unconvertible_files(shared_file, tmp_path: Path, name, error, message):
    with pytest.raises(error, match=message):
        convert_to_pyramidal_tiff(src=shared_file(name), dst=tmp_path / "out.tif")
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- crafted files


def write_truncated(path: Path, data: bytes) -> Path:
    path.write_bytes(data[: len(data) // 2])
    return path


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_truncated_jpeg_png_are_corrupt(tmp_path: Path, fmt):
    buffer = io.BytesIO()
    Image.fromarray(textured(600, 400)).save(buffer, format=fmt)
    src = write_truncated(tmp_path / f"cut.{fmt.lower()}", buffer.getvalue())
    with pytest.raises(CorruptImageError, match="cut"):
        convert_to_pyramidal_tiff(src=src, dst=tmp_path / "out" / "cut.tif")
    assert [p.name for p in tmp_path.iterdir()] == [src.name]


def test_truncated_uncompressed_tiff_is_corrupt(tmp_path: Path):
    buffer = io.BytesIO()
    tifffile.imwrite(buffer, textured(600, 400), photometric="rgb")
    src = write_truncated(tmp_path / "cut.tif", buffer.getvalue())
    with pytest.raises(CorruptImageError):
        convert_to_pyramidal_tiff(src=src, dst=tmp_path / "out" / "cut.tif")
    assert [p.name for p in tmp_path.iterdir()] == ["cut.tif"]  # no output folder, no temp file


def test_text_and_empty_files_are_unsupported(tmp_path: Path):
    (tmp_path / "notes.jpg").write_text("not an image at all")
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(UnsupportedImageError):
        convert_to_pyramidal_tiff(src=tmp_path / "notes.jpg", dst=tmp_path / "a.tif")
    with pytest.raises(UnsupportedImageError, match="empty"):
        convert_to_pyramidal_tiff(src=tmp_path / "empty.png", dst=tmp_path / "b.tif")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty.png", "notes.jpg"]


def test_errors_are_value_errors():
    for error in (UnsupportedImageError, CorruptImageError, ImageTooLargeError):
        assert issubclass(error, ConversionError) and issubclass(error, ValueError)


def test_rgba_png_is_composited_on_white(tmp_path: Path):
    rgba = np.zeros((300, 400, 4), dtype=np.uint8)
    rgba[..., 0] = 200
    rgba[:, 200:, 3] = 255  # left half fully transparent
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    pixels = slide_pixels(convert_to_pyramidal_tiff(src=tmp_path / "a.png", dst=tmp_path / "a.tif").dst)
    assert pixels[150, 50].min() >= 250  # white glass, not black
    assert abs(int(pixels[150, 300, 0]) - 200) <= 3 and pixels[150, 300, 1] <= 5


def test_greyscale_and_16bit(tmp_path: Path):
    grey = textured(320, 240)[..., 0]
    Image.fromarray(grey, "L").save(tmp_path / "g.png")
    pixels = slide_pixels(convert_to_pyramidal_tiff(src=tmp_path / "g.png", dst=tmp_path / "g.tif").dst)
    assert mean_abs_diff(pixels, np.repeat(grey[..., None], 3, axis=-1)) < 3.0

    grey16 = grey.astype(np.uint16) * 257
    Image.fromarray(grey16).save(tmp_path / "g16.png")  # Pillow mode I;16
    pixels = slide_pixels(convert_to_pyramidal_tiff(src=tmp_path / "g16.png", dst=tmp_path / "g16.tif").dst)
    assert mean_abs_diff(pixels[..., 1], grey) < 3.0

    rgb16 = textured(320, 240).astype(np.uint16) * 257
    tifffile.imwrite(tmp_path / "rgb16.tif", rgb16, photometric="rgb", compression="zlib")
    result = convert_to_pyramidal_tiff(src=tmp_path / "rgb16.tif", dst=tmp_path / "rgb16-out.tif")
    assert result.source_mode == "uint16x3"
    assert mean_abs_diff(slide_pixels(result.dst), textured(320, 240)) < 3.0


def test_exif_orientation_is_applied(tmp_path: Path):
    image = Image.fromarray(textured(400, 240))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    image.save(tmp_path / "rot.jpg", exif=exif, quality=95)
    result = convert_to_pyramidal_tiff(src=tmp_path / "rot.jpg", dst=tmp_path / "rot.tif")
    assert (result.width, result.height) == (240, 400) and result.orientation == 6
    with Image.open(tmp_path / "rot.jpg") as im:
        from PIL import ImageOps

        expected = np.asarray(ImageOps.exif_transpose(im).convert("RGB"))
    assert mean_abs_diff(slide_pixels(result.dst), expected) < 3.0


def test_real_resolution_is_kept(tmp_path: Path):
    rgb = textured(600, 500)
    # 0.5 um/px = 20,000 px/cm, as a scanner export writes it.
    tifffile.imwrite(tmp_path / "cm.tif", rgb, photometric="rgb", resolution=(20000, 20000), resolutionunit="CENTIMETER")
    result = convert_to_pyramidal_tiff(src=tmp_path / "cm.tif", dst=tmp_path / "cm-out.tif")
    assert result.mpp == pytest.approx(0.5) and result.mpp_source == "tiff-resolution"
    assert float(openslide.OpenSlide(result.dst).properties["openslide.mpp-x"]) == pytest.approx(0.5)

    Image.fromarray(rgb).save(tmp_path / "dense.jpg", dpi=(50800, 50800), quality=95)  # 0.5 um/px
    result = convert_to_pyramidal_tiff(src=tmp_path / "dense.jpg", dst=tmp_path / "dense.tif")
    assert result.mpp == pytest.approx(0.5) and result.mpp_source == "jpeg-density"

    tifffile.imwrite(tmp_path / "72.tif", rgb, photometric="rgb", resolution=(72, 72), resolutionunit="INCH")
    result = convert_to_pyramidal_tiff(src=tmp_path / "72.tif", dst=tmp_path / "72-out.tif")
    assert result.mpp is None and result.mpp_source == "unknown"


def test_plausible_mpp_range():
    assert plausible_mpp(mpp=0.25) == 0.25
    assert plausible_mpp(mpp=25400 / 72) is None
    assert plausible_mpp(mpp=None) is None
    assert plausible_mpp(mpp=float("inf")) is None


def test_too_large_is_refused_before_decoding(tmp_path: Path):
    Image.fromarray(textured(400, 300)).save(tmp_path / "a.png")
    with pytest.raises(ImageTooLargeError, match="120,000 px"):
        convert_to_pyramidal_tiff(src=tmp_path / "a.png", dst=tmp_path / "a.tif", max_pixels=100_000)
    assert not (tmp_path / "a.tif").exists()


def test_pyramidal_tiff_is_not_converted_again(tmp_path: Path):
    def source(*, x: int, y: int, width: int, height: int) -> np.ndarray:
        return np.full((height, width, 3), 200, dtype=np.uint8)

    write_pyramidal_tiff(dst=tmp_path / "p.tif", width=2100, height=1200, read_region=source, mpp=0.5)
    with pytest.raises(UnsupportedImageError, match="already a pyramidal TIFF"):
        convert_to_pyramidal_tiff(src=tmp_path / "p.tif", dst=tmp_path / "q.tif")


def test_destination_checks(tmp_path: Path):
    Image.fromarray(textured(100, 100)).save(tmp_path / "a.png")
    with pytest.raises(ConversionError, match=".tif"):
        convert_to_pyramidal_tiff(src=tmp_path / "a.png", dst=tmp_path / "a.png.jpg")
    with pytest.raises(ConversionError, match="not found"):
        convert_to_pyramidal_tiff(src=tmp_path / "missing.png", dst=tmp_path / "m.tif")
    with pytest.raises(ConversionError, match="jpeg_quality") as raised:
        convert_to_pyramidal_tiff(src=tmp_path / "a.png", dst=tmp_path / "q.tif", jpeg_quality=0)
    assert not isinstance(raised.value, CorruptImageError)

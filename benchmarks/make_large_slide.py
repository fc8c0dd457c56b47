"""Build the large real-tissue pyramidal TIFF that the tile and memory benchmarks open.

The 9274 x 9911 HER2+ breast H&E (../shared/data/slides/her2st-C2-HE.jpg, Andersson et
al. 2021) is mirror-tiled (reflected at every edge, so no seams) over a square canvas
of ``--side`` px (default 51,200 = 200 tiles of 256) and written with
analysis.core.slides.pyramid.write_pyramidal_tiff: JPEG q85 256 px tiles, levels down to
<= 1024 px, in bounded memory (only the decoded source image, ~280 MB, is held).

Targets (stated for the benchmarks that use it): side >= 50,000 px; OpenSlide opens
it as generic-tiff with every level; peak RSS <= 1.5 GB; wall time <= 10 min on one
core of the 2-core CI machine.

The slide is written to the given path (default /tmp/her2st-mirrored-<side>.tif),
never inside the repository. Results go to benchmarks/results/make_large_slide.json.
Run: .venv/bin/python benchmarks/make_large_slide.py [/tmp/large.tif] [--side 51200] [--mpp 0.7]
"""
from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

PROJECT_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT_ROOT))
from analysis.core.slides.pyramid import write_pyramidal_tiff  # noqa: E402

DEFAULT_SOURCE = PROJECT_ROOT.parent / "shared" / "data" / "slides" / "her2st-C2-HE.jpg"
TARGETS = {"min_side_px": 50_000, "max_peak_rss_gb": 1.5, "max_wall_s": 600.0}


def mirrored_indices(*, start: int, count: int, period: int) -> np.ndarray:
    """Source index of canvas positions start..start+count-1 when the source is reflected at its edges."""
    position = np.arange(start, start + count, dtype=np.int64) % (2 * period)
    return np.where(position < period, position, 2 * period - 1 - position)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("output", nargs="?", type=Path, help="where to write the slide (not inside the repo)")
    parser.add_argument("--side", type=int, default=51_200, help="canvas width = height in px")
    parser.add_argument("--mpp", type=float, default=None, help="um/px to record (the source has none; ~0.7)")
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE)
    parser.add_argument("--quality", type=int, default=85)
    args = parser.parse_args()
    output = (args.output or Path(f"/tmp/her2st-mirrored-{args.side}.tif")).resolve()
    if PROJECT_ROOT in output.parents:
        parser.error(f"{output} is inside the repository; write it to /tmp or another folder")

    started, cpu_started = time.perf_counter(), time.process_time()
    Image.MAX_IMAGE_PIXELS = 200_000_000  # the 92 Mpx source is trusted test data
    with Image.open(args.source) as image:
        # convert() would copy an RGB image once more (~370 MB); only convert when needed.
        source = np.asarray(image if image.mode == "RGB" else image.convert("RGB"))
    src_h, src_w = source.shape[:2]

    def read_region(*, x: int, y: int, width: int, height: int) -> np.ndarray:
        rows = mirrored_indices(start=y, count=height, period=src_h)
        cols = mirrored_indices(start=x, count=width, period=src_w)
        return np.take(np.take(source, rows, axis=0), cols, axis=1)

    info = write_pyramidal_tiff(
        dst=output,
        width=args.side,
        height=args.side,
        read_region=read_region,
        mpp=args.mpp,
        jpeg_quality=args.quality,
        description=f"HER2-LADDER benchmark slide: {args.source.name} mirror-tiled",
    )
    wall_s = time.perf_counter() - started
    cpu_s = time.process_time() - cpu_started
    peak_rss_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9  # Linux: KiB

    import openslide

    slide = openslide.OpenSlide(output)
    opened = {
        "vendor": slide.properties.get("openslide.vendor"),
        "level_count": slide.level_count,
        "level_dimensions": [list(d) for d in slide.level_dimensions],
        "mpp_x": slide.properties.get("openslide.mpp-x"),
    }
    probe = np.asarray(slide.read_region((args.side // 2, args.side // 2), 0, (512, 512)).convert("RGB"))
    expected = read_region(x=args.side // 2, y=args.side // 2, width=512, height=512)
    slide.close()
    result = {
        "output": str(output),
        "source": str(args.source),
        "side_px": args.side,
        "file_gb": info.file_size_bytes / 1e9,
        "levels": len(info.level_dimensions),
        "wall_s": round(wall_s, 1),
        "cpu_s": round(cpu_s, 1),
        "megapixels_per_cpu_s": round(args.side**2 / 1e6 / cpu_s, 1),
        "peak_rss_gb": round(peak_rss_gb, 3),
        "openslide": opened,
        "probe_mean_abs_diff": round(float(np.abs(probe.astype(int) - expected.astype(int)).mean()), 2),
        "targets": TARGETS,
    }
    result["pass"] = bool(
        args.side >= TARGETS["min_side_px"]
        and peak_rss_gb <= TARGETS["max_peak_rss_gb"]
        and wall_s <= TARGETS["max_wall_s"]
        and opened["vendor"] == "generic-tiff"
        and opened["level_count"] == len(info.level_dimensions)
    )
    results_dir = PROJECT_ROOT / "benchmarks" / "results"
    results_dir.mkdir(parents=True, exist_ok=True)
    (results_dir / "make_large_slide.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

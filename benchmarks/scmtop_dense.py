"""Benchmark (on demand): sc-MTOP per-cell outputs on a dense case, igraph/qhull path vs fast kernels.

The fast path is what the code runs today: graph metrics from one numba BFS sweep
(analysis/core/graph/fast_metrics.py) and nucleus features batched
(analysis/core/cells/features_batch.py, exact integer hull count) in worker processes. The
"igraph" variant puts the previous path back in the same code (igraph's four all-pairs
calls, regionprops nucleus by nucleus with skimage/qhull hull, one process), so both run
back to back in fresh subprocesses, same machine, same run, and every CSV is
sha256-compared between them (they must be byte-identical).

The dense input is NOT in the repository (17 MB JSON + 250 MB TIFF). `build` makes it from
../shared/data/slides/her2st-C2-HE.jpg (box x 3000, y 3500, 5200 x 4500 px, classical
segmenter at the true 0.7 um/px, native pixels labelled "mag": 40 so the graphs are as dense
as a HoVer-Net dense tumour at 40x: ~17.6k nuclei, ~115k edges):

    .venv/bin/python benchmarks/scmtop_dense.py build [--out DIR]       # default ../bench-cache/scmtop_dense
    .venv/bin/python benchmarks/scmtop_dense.py run [--case-dir DIR] [--repeats 1]
        # writes benchmarks/results/scmtop_dense.json

`run --reference` uses the reference case (../shared/data/scmtop/cmu-1-small-region) instead.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DATA = Path(os.environ.get("LADDER_TEST_DATA", ROOT.parent / "shared" / "data"))
DEFAULT_CASE_DIR = ROOT.parent / "bench-cache" / "scmtop_dense"
SOURCE = DATA / "slides" / "her2st-C2-HE.jpg"
SOURCE_MPP = 0.7
REFERENCE_CODE_SECONDS = {"dense": (413.0, 520.0), "reference": (272.0, 272.0)}  # public sc-MTOP code, 2 cores


def build(*, out: Path, box: tuple[int, int, int, int], marker_height_um: float) -> None:
    import numpy as np
    import tifffile
    from PIL import Image

    from analysis.core.cells.classes import CLASS_TO_PANNUKE, CellClass
    from analysis.core.cells.segmentation.classical import ClassicalParams, ClassicalSegmenter, segment_in_tiles

    out.mkdir(parents=True, exist_ok=True)
    Image.MAX_IMAGE_PIXELS = None
    x, y, w, h = box
    rgb = np.asarray(Image.open(SOURCE).convert("RGB").crop((x, y, x + w, y + h)))
    tifffile.imwrite(out / "dense.tif", rgb, tile=(256, 256), photometric="rgb", compression="zlib")
    segmenter = ClassicalSegmenter(params=ClassicalParams(marker_height_um=marker_height_um))
    cells = segment_in_tiles(rgb=rgb, mpp=SOURCE_MPP, segment=segmenter.segment)
    nuc = {}
    for i, row in enumerate(cells.itertuples(index=False)):
        contour = np.asarray(row.contour, dtype=np.int64)
        nuc[str(i + 1)] = {
            "bbox": [[int(contour[:, 1].min()), int(contour[:, 0].min())],
                     [int(contour[:, 1].max()), int(contour[:, 0].max())]],
            "centroid": [float(row.x), float(row.y)],
            "contour": contour.tolist(),
            "type_prob": float(row.prob),
            "type": int(CLASS_TO_PANNUKE.get(CellClass(row.cls), 4)),
        }
    (out / "dense.json").write_text(json.dumps({"mag": 40, "nuc": nuc}))
    print(f"{len(nuc)} nuclei -> {out}")


def _case(args) -> dict:
    if args.reference:
        base = DATA / "scmtop" / "cmu-1-small-region"
        return dict(name="reference", json=base / "cmu-1-small-region.json",
                    slide=DATA / "slides" / "CMU-1-Small-Region.svs", sample="cmu-1-small-region")
    return dict(name="dense", json=args.case_dir / "dense.json", slide=args.case_dir / "dense.tif", sample="dense")


def child(variant: str, spec: dict, out_dir: Path) -> dict:
    from analysis.core.cells import features
    from analysis.core.graph import graphs, scmtop
    from analysis.core.graph.fast_metrics import csr_from_edges, sweep_metrics

    if variant == "igraph":
        import numpy as np
        from skimage.morphology import convex_hull_image

        def igraph_metrics(g, component_size):
            n = component_size.astype(np.float64)
            bc = np.asarray(g.betweenness(directed=False), dtype=np.float64)
            pairs = (n - 1.0) * (n - 2.0) / 2.0
            harmonic = np.asarray(g.harmonic_centrality(normalized=False), dtype=np.float64)
            with np.errstate(invalid="ignore", divide="ignore"):
                harmonic = np.where(n > 1, harmonic / (n - 1.0), 0.0)
                bc_normed = np.where(n > 2, bc / np.where(n > 2, pairs, 1.0), bc)
            ecc = np.asarray(g.eccentricity(), dtype=np.float64)
            return {
                "Nsubgraph": n,
                "Degrees": np.asarray(g.degree(), dtype=np.float64),
                "Coreness": np.asarray(g.coreness(), dtype=np.float64),
                "ClusteringCoefficient": np.asarray(g.transitivity_local_undirected(mode="nan"), dtype=np.float64),
                "Eccentricity": ecc, "Eccentricity_normed": ecc / n, "HarmonicCentrality": harmonic,
                "Closeness": np.asarray(g.closeness(normalized=True), dtype=np.float64),
                "Betweenness": bc, "Betweenness_normed": bc_normed,
            }

        serial = features.nucleus_features
        graphs.metrics_from_igraph = igraph_metrics
        features.convex_area = lambda img: int(np.sum(convex_hull_image(img)))
        features._MEASURE = features.measure_each  # nucleus by nucleus through regionprops
        scmtop.nucleus_features = lambda **kw: serial(**kw, workers=1)
    else:
        sweep_metrics(*csr_from_edges(2, [0], [1]))  # load the numba cache outside the timing
    start, cpu = time.perf_counter(), time.process_time()
    paths = scmtop.write_scmtop_outputs(hovernet_json=Path(spec["json"]), slide_path=Path(spec["slide"]),
                                        out_dir=out_dir, sample=spec["sample"])
    wall = time.perf_counter() - start
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {
        "variant": variant,
        "wall_s": round(wall, 2),
        "cpu_s": round(time.process_time() - cpu + children.ru_utime + children.ru_stime, 2),
        "loadavg_1min_after": round(os.getloadavg()[0], 2),
        "sha256": {k: hashlib.sha256(Path(p).read_bytes()).hexdigest() for k, p in paths.items()},
    }


def run(args) -> None:
    spec = {k: str(v) for k, v in _case(args).items()}
    for key in ("json", "slide"):
        if not Path(spec[key]).is_file():
            sys.exit(f"missing {spec[key]}: run `benchmarks/scmtop_dense.py build` first")
    runs = []
    load_before = [round(v, 2) for v in os.getloadavg()]
    with tempfile.TemporaryDirectory() as tmp:
        for repeat in range(args.repeats):
            for variant in ("igraph", "fast"):
                proc = subprocess.run(
                    [sys.executable, __file__, "child", variant, json.dumps(spec), str(Path(tmp) / f"{variant}{repeat}")],
                    check=True, capture_output=True, text=True,
                )
                runs.append(json.loads(proc.stdout.strip().splitlines()[-1]))
                print(json.dumps({k: v for k, v in runs[-1].items() if k != "sha256"}), flush=True)
    old = [r for r in runs if r["variant"] == "igraph"]
    new = [r for r in runs if r["variant"] == "fast"]
    result = {
        "case": spec["name"],
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform(),
                    "loadavg_before": load_before},
        "runs": runs,
        "igraph_wall_s": [r["wall_s"] for r in old],
        "fast_wall_s": [r["wall_s"] for r in new],
        "igraph_cpu_s": [r["cpu_s"] for r in old],
        "fast_cpu_s": [r["cpu_s"] for r in new],
        "outputs_byte_identical": all(r["sha256"] == runs[0]["sha256"] for r in runs),
        "speedup_wall": round(min(r["wall_s"] for r in old) / min(r["wall_s"] for r in new), 2),
        "reference_code_wall_s": REFERENCE_CODE_SECONDS[spec["name"]],
    }
    print(json.dumps({k: v for k, v in result.items() if k != "runs"}, indent=1))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build")
    b.add_argument("--out", type=Path, default=DEFAULT_CASE_DIR)
    b.add_argument("--box", type=int, nargs=4, default=[3000, 3500, 5200, 4500], help="x y w h in source px")
    b.add_argument("--marker-height-um", type=float, default=0.5)
    r = sub.add_parser("run")
    r.add_argument("--case-dir", type=Path, default=DEFAULT_CASE_DIR)
    r.add_argument("--reference", action="store_true", help="the reference case instead of the dense one")
    r.add_argument("--repeats", type=int, default=1)
    r.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "scmtop_dense.json")
    c = sub.add_parser("child")
    c.add_argument("variant")
    c.add_argument("spec")
    c.add_argument("out_dir", type=Path)
    args = parser.parse_args()
    if args.command == "build":
        build(out=args.out, box=tuple(args.box), marker_height_um=args.marker_height_um)
    elif args.command == "run":
        run(args)
    else:
        print(json.dumps(child(args.variant, json.loads(args.spec), args.out_dir)))


if __name__ == "__main__":
    main()

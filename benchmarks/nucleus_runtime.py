"""Which runtime runs the nucleus model's network fastest on THIS CPU, and does `auto` pick it?

Run on demand (not in CI), from the project root, on each kind of CPU a worker will run on:

    .venv/bin/python benchmarks/nucleus_runtime.py [--rounds 3]
        # writes benchmarks/results/nucleus_runtime-<cpu>.json

What it times: the network (BatchNorm folded, activations included) on one 1,200 px window of
real breast H&E (the her2st C2 section in ../shared/data), each runtime in a fresh process,
`rounds` times alternately, `repeats` windows each, median seconds: float32 PyTorch, bfloat16 autocast PyTorch (forced, even where the
CPU emulates it), ONNX Runtime where installed. Records the CPU's model and bfloat16 flags and
the runtime that `LADDER_NUCLEUS_RUNTIME=auto` chooses.

Target: `auto` within 10 % of the fastest PyTorch runtime (issue 16: bfloat16 by default only
where the CPU computes it; on an AVX-512 Xeon without BF16, emulated bfloat16 was 2.2x slower).
ONNX Runtime is timed and reported beside them but stays opt-in: its memory arena keeps
+0.65 GB resident (docs/segmentation.md, "Memory and speed on CPU").
"""
from __future__ import annotations

import argparse
import json
import platform
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SECTION = ROOT.parent / "shared" / "data" / "slides" / "her2st-C2-HE.jpg"


def cpu_description() -> dict:
    model, flags = platform.processor() or "unknown", set()
    try:
        text = Path("/proc/cpuinfo").read_text()
        model = re.search(r"^model name\s*:\s*(.+)$", text, re.M).group(1).strip()
        flags = set(re.search(r"^flags\s*:\s*(.+)$", text, re.M).group(1).split())
    except (OSError, AttributeError):
        pass
    return {"model": model, "avx512f": "avx512f" in flags,
            "bfloat16_flags": sorted(flags & {"avx512_bf16", "amx_bf16", "amx_tile"})}


def time_one(name: str, repeats: int) -> list[float]:
    """Seconds per window for one runtime, in this (fresh) process: runtimes side by side in
    one process disturb each other (oneDNN's caches, ONNX Runtime's thread pool)."""
    import cv2

    from analysis.core.cells.segmentation.nucleus_model import inference
    from analysis.core.cells.segmentation.nucleus_model.segmenter import SHIPPED_WEIGHTS

    window = inference.WINDOW_PX
    rgb = np.ascontiguousarray(cv2.imread(str(SECTION))[4000:4000 + window, 5000:5000 + window, ::-1])
    loaded = inference.load_weights(path=SHIPPED_WEIGHTS, runtime="torch")
    network = inference._with_activations(inference.fold_batchnorm(loaded.model))
    run = {"torch": lambda: inference._torch_runner(network, "cpu"),
           "torch-bf16": lambda: inference._torch_runner(network, "cpu", bfloat16=True),
           "onnxruntime": lambda: inference._onnx_runner(network)[0]}[name]()
    image = ((rgb.astype(np.float32) - loaded.mean) / loaded.std).transpose(2, 0, 1)[None]
    image = np.ascontiguousarray(image, dtype=np.float32)
    run(image[..., :256, :256])  # warm-up: first-call allocations and kernel selection
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        run(image)
        seconds.append(time.perf_counter() - start)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=2, help="windows timed per process")
    parser.add_argument("--only", help=argparse.SUPPRESS)  # internal: time one runtime in this process
    args = parser.parse_args()
    if args.only:
        print(json.dumps(time_one(args.only, args.repeats)))
        return

    import torch

    from analysis.core.cells.segmentation.nucleus_model import inference
    from analysis.core.cells.segmentation.nucleus_model.segmenter import SHIPPED_WEIGHTS

    names = ["torch", "torch-bf16"] + (["onnxruntime"] if inference._onnxruntime_available() else [])
    seconds = {name: [] for name in names}
    for _ in range(args.rounds):  # alternately, each in a fresh process, so that load drifts hit all alike
        for name in names:
            out = subprocess.run([sys.executable, __file__, "--only", name, "--repeats", str(args.repeats)],
                                 check=True, capture_output=True, text=True).stdout
            seconds[name] += json.loads(out.strip().splitlines()[-1])
    median = {name: round(statistics.median(values), 3) for name, values in seconds.items()}
    auto = inference.load_weights(path=SHIPPED_WEIGHTS, runtime="auto").runtime
    auto_key = {"torch": "torch", "torch bfloat16": "torch-bf16"}.get(auto, "onnxruntime")
    fastest = min(median, key=median.get)
    fastest_torch = min(("torch", "torch-bf16"), key=median.get)
    cpu = cpu_description()
    result = {
        "benchmark": "nucleus_runtime",
        "command": " ".join(["python", *sys.argv]),
        "cpu": cpu, "torch": torch.__version__, "threads": torch.get_num_threads(),
        "window_px": inference.WINDOW_PX, "rounds": args.rounds, "repeats": args.repeats,
        "seconds": {name: [round(v, 3) for v in values] for name, values in seconds.items()},
        "median_seconds": median, "auto_chooses": auto, "fastest": fastest,
        "auto_vs_fastest": round(median[auto_key] / median[fastest], 2),
        "auto_vs_fastest_torch": round(median[auto_key] / median[fastest_torch], 2),
        "target": "auto within 10 % of the fastest PyTorch runtime (ONNX Runtime opt-in, for memory)",
        "pass": median[auto_key] <= 1.1 * median[fastest_torch],
        "date": time.strftime("%Y-%m-%d"),
    }
    slug = re.sub(r"[^a-z0-9]+", "-", cpu["model"].lower()).strip("-")[:40]
    out = ROOT / "benchmarks" / "results" / f"nucleus_runtime-{slug}.json"
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()

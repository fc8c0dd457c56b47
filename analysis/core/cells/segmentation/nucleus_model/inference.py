"""Running the trained nucleus model on a tile: maps, instances, classes, contours.

The network runs with its BatchNorm folded into the convolutions (channels-last on CPU), in
PyTorch, or on request through ONNX Runtime (the model is exported in memory from the loaded
weights, so the two can never disagree about which weights they hold). Measured on CPU: one
1,200 px window (loaded machine) eager 6.2 s, folded 3.9 s, ONNX Runtime 1.9 s; a whole
1,400 px her2st crop (idle) folded PyTorch 5.1 s, ONNX Runtime 4.2 s but +0.65 GB resident for
its memory arena (5.5 s without the arena). A whole slide must stay under 4 GB, so PyTorch is
the default and ONNX Runtime the faster choice where memory allows. Maps agree within 1e-4
(tests/analysis/core/cells/segmentation/nucleus_model/test_inference.py).

On CPUs that compute in bfloat16 natively (AVX512-BF16, AMX) PyTorch can run the convolutions
in bfloat16 under autocast: ~1.8x faster and half the activation memory, maps within ~0.03 of
float32 and the same nuclei (benchmarks/nucleus_bf16.py measures both on every annotated set).

``LADDER_NUCLEUS_RUNTIME`` = auto (default: torch-bf16 where the CPU has native bfloat16, else
torch) | torch (float32) | torch-bf16 | onnxruntime (CPU only, float32).
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from analysis.core.cells.segmentation.nucleus_model.net import build_model, instances_from_maps


RUNTIMES = ("auto", "torch", "torch-bf16", "onnxruntime")


class NucleusRuntimeError(RuntimeError):
    """LADDER_NUCLEUS_RUNTIME names a runtime that is unknown or cannot run here."""


@dataclass
class LoadedModel:
    model: object
    classes: tuple
    work_mpp: float
    mean: np.ndarray
    std: np.ndarray
    sha256: str
    path: str
    device: str = "cpu"
    runtime: str = "torch"  # what runs the network: "torch", "torch bfloat16" or "onnxruntime <version>"
    run: object = field(default=None, repr=False)  # (1, 3, H, W) float32 -> (3 + K, H, W) activated maps

    @classmethod
    def from_model(cls, *, model, config, runtime: str = "torch") -> "LoadedModel":
        """An in-memory model (cross-validation folds), as if loaded from a file."""
        from analysis.core.cells.segmentation.nucleus_model.data import MODEL_CLASSES, WORK_MPP
        from analysis.core.cells.segmentation.nucleus_model.training import MEAN, STD

        device = str(next(model.parameters()).device)
        loaded = cls(model=model.eval(), classes=tuple(MODEL_CLASSES), work_mpp=WORK_MPP, mean=MEAN, std=STD,
                     sha256="", path="(in memory)", device=device)
        return loaded.with_runtime(runtime)

    def with_runtime(self, runtime: str | None = None) -> "LoadedModel":
        """This model ready to run: BatchNorm folded, on ONNX Runtime or PyTorch (see module doc)."""
        choice = (runtime or os.environ.get("LADDER_NUCLEUS_RUNTIME") or "auto").strip().lower()
        if choice not in RUNTIMES:
            raise NucleusRuntimeError(f"LADDER_NUCLEUS_RUNTIME must be one of {', '.join(RUNTIMES)}, got {choice!r}")
        network = _with_activations(fold_batchnorm(self.model))
        if choice == "onnxruntime":
            if not _onnxruntime_available():
                raise NucleusRuntimeError("LADDER_NUCLEUS_RUNTIME=onnxruntime but onnx / onnxruntime are not installed")
            if self.device != "cpu":
                raise NucleusRuntimeError("LADDER_NUCLEUS_RUNTIME=onnxruntime runs on CPU only; use torch on a GPU")
            self.run, self.runtime = _onnx_runner(network)
            return self
        if choice == "auto":
            choice = "torch-bf16" if self.device == "cpu" and cpu_has_native_bfloat16() else "torch"
        if choice == "torch-bf16" and self.device == "cpu" and not cpu_has_native_bfloat16():
            raise NucleusRuntimeError("LADDER_NUCLEUS_RUNTIME=torch-bf16 but this CPU has no native bfloat16 "
                                      "(AVX512-BF16 or AMX): it would be emulated and slower; use torch")
        bfloat16 = choice == "torch-bf16"
        self.run = _torch_runner(network, self.device, bfloat16=bfloat16)
        self.runtime = "torch bfloat16" if bfloat16 else "torch"
        return self


def cpu_has_native_bfloat16() -> bool:
    """Whether this CPU computes bfloat16 in hardware (AVX512-BF16, as on AMD Zen 4, or Intel's AMX).

    Not `torch.ops.mkldnn._is_mkldnn_bf16_supported()`: it answers True on any AVX-512 CPU, where
    oneDNN emulates bfloat16; on an AVX-512 Xeon without BF16 (Cascade Lake) that ran the network
    2.2x slower than float32 (1.2 vs 2.5 s a 1,200 px window)."""
    import torch

    try:
        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    except (AttributeError, RuntimeError):  # an older torch: read the kernel's flags (Linux)
        try:
            flags = set(Path("/proc/cpuinfo").read_text().split())
        except OSError:
            return False
        return bool(flags & {"avx512_bf16", "amx_bf16"})


def fold_batchnorm(model):
    """A copy of `model` (eval mode) with every Conv2d + BatchNorm2d pair of its Sequential blocks
    folded into one Conv2d: the same function up to rounding, one memory pass less per layer."""
    import copy

    import torch
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    folded = copy.deepcopy(model).eval()

    def fold(module) -> None:
        for name, child in list(module.named_children()):
            if isinstance(child, torch.nn.Sequential):
                layers, kept, i = list(child), [], 0
                while i < len(layers):
                    if (i + 1 < len(layers) and isinstance(layers[i], torch.nn.Conv2d)
                            and isinstance(layers[i + 1], torch.nn.BatchNorm2d)):
                        kept.append(fuse_conv_bn_eval(layers[i], layers[i + 1]))
                        i += 2
                    else:
                        kept.append(layers[i])
                        i += 1
                setattr(module, name, torch.nn.Sequential(*kept))
            else:
                fold(child)

    fold(folded)
    return folded


def _with_activations(network):
    """The network followed by its output activations: NP sigmoid, HV tanh, class softmax."""
    import torch

    class Activated(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, x):
            out = self.inner(x)
            return torch.cat([torch.sigmoid(out[:, :1]), torch.tanh(out[:, 1:3]), torch.softmax(out[:, 3:], 1)], 1)

    return Activated(network).eval()


def _onnxruntime_available() -> bool:
    try:
        import onnx  # noqa: F401  (the exporter needs it)
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def _onnx_runner(network):
    """Export `network` to ONNX in memory and open an ONNX Runtime session on it (CPU, this
    process's torch thread count)."""
    import io
    import warnings

    import onnxruntime
    import torch

    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.inference_mode():
        warnings.simplefilter("ignore")
        torch.onnx.export(network, torch.zeros(1, 3, 64, 64), buffer, input_names=["rgb"], output_names=["maps"],
                          dynamic_axes={"rgb": {2: "height", 3: "width"}, "maps": {2: "height", 3: "width"}},
                          opset_version=17, dynamo=False)
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    # Idle threads sleep instead of spinning: spinning, they took the core that the previous tile's
    # post-processing needs (pipeline._segment_tiles overlaps the two): 78-93 s vs 70-72 s on a
    # 10,000² SVS (docs/segmentation.md).
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = onnxruntime.InferenceSession(buffer.getvalue(), options, providers=["CPUExecutionProvider"])

    def run(x: np.ndarray) -> np.ndarray:
        return session.run(None, {"rgb": x})[0][0]

    return run, f"onnxruntime {onnxruntime.__version__}"


def _torch_runner(network, device: str, *, bfloat16: bool = False):
    """float32, or bfloat16 convolutions under autocast (the activations and softmax stay in
    autocast's float32 list; the maps come back as float32)."""
    import contextlib

    import torch

    network = network.to(device)
    if device == "cpu":
        network = network.to(memory_format=torch.channels_last)
    device_type = torch.device(device).type

    def run(x: np.ndarray) -> np.ndarray:
        precision = torch.autocast(device_type, dtype=torch.bfloat16) if bfloat16 else contextlib.nullcontext()
        with torch.inference_mode(), precision:
            tensor = torch.from_numpy(x).to(device)
            if device == "cpu":
                tensor = tensor.contiguous(memory_format=torch.channels_last)
            return network(tensor)[0].float().cpu().numpy()

    return run


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def load_weights(*, path: Path, device: str = "cpu", runtime: str | None = None) -> LoadedModel:
    import torch

    blob = torch.load(path, map_location="cpu", weights_only=True)
    model = build_model(n_classes=len(blob["classes"]), widths=tuple(blob["widths"]))
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in blob["state_dict"].items()})
    model.eval().to(device)
    return LoadedModel(
        model=model, classes=tuple(blob["classes"]), work_mpp=float(blob["work_mpp"]),
        mean=np.asarray(blob["mean"], np.float32), std=np.asarray(blob["std"], np.float32),
        sha256=file_sha256(path), path=str(path), device=device,
    ).with_runtime(runtime)


# Windows the network sees at once: activations of a 16-channel full-resolution U-Net cost about
# 0.5 KB per pixel, so a whole 2,048-px tile at once needs ~2 GB; 1,200-px windows keep it near 0.7 GB.
WINDOW_PX = 1200
CONTEXT_PX = 48  # discarded margin per side: the maps near a window's edge lack context


def _forward(*, loaded: LoadedModel, image: np.ndarray):
    """Activated maps (C, H, W) for a normalised (H, W, 3) float image, padded to a multiple of 16."""
    h, w = image.shape[:2]
    ph, pw = (-h) % 16, (-w) % 16
    if ph or pw:
        image = np.pad(image, ((0, ph), (0, pw), (0, 0)), mode="reflect")
    maps = loaded.run(np.ascontiguousarray(image.transpose(2, 0, 1)[None], dtype=np.float32))
    return np.ascontiguousarray(maps[:, :h, :w])


def predict_maps(*, loaded: LoadedModel, rgb: np.ndarray):
    """NP probability (H, W), HV (2, H, W), class probabilities (K, H, W) for an RGB image
    already at the working resolution.

    Large images go through the network in overlapping windows (WINDOW_PX, of which
    CONTEXT_PX per inner side is context only), so memory is bounded whatever the image size;
    the image edge is padded by reflection, as in training.
    """
    image = (rgb.astype(np.float32) - loaded.mean) / loaded.std
    h, w = image.shape[:2]
    if h <= WINDOW_PX and w <= WINDOW_PX:
        maps = _forward(loaded=loaded, image=image)
    else:
        maps = None
        # Even cores: a 2,048-px tile is 2 x 2 windows of 1,024 + context, not 3 x 3 with slivers.
        core_h = -(-h // -(-h // (WINDOW_PX - 2 * CONTEXT_PX)))
        core_w = -(-w // -(-w // (WINDOW_PX - 2 * CONTEXT_PX)))
        for y0 in range(0, h, core_h):
            for x0 in range(0, w, core_w):
                y1, x1 = min(y0 + core_h, h), min(x0 + core_w, w)
                ya, xa = max(0, y0 - CONTEXT_PX), max(0, x0 - CONTEXT_PX)
                yb, xb = min(h, y1 + CONTEXT_PX), min(w, x1 + CONTEXT_PX)
                out = _forward(loaded=loaded, image=image[ya:yb, xa:xb])
                if maps is None:
                    maps = np.empty((out.shape[0], h, w), np.float32)
                maps[:, y0:y1, x0:x1] = out[:, y0 - ya:y1 - ya, x0 - xa:x1 - xa]
    return maps[0], maps[1:3], maps[3:]


@dataclass
class Prediction:
    """The network's maps for one image at the working resolution, before post-processing
    (`predict_rgb` -> `instances_from_prediction`: two phases, so that a pipeline can run the
    network on the next tile while the previous one is post-processed)."""

    np_prob: np.ndarray   # (h, w) at the working resolution
    hv: np.ndarray        # (2, h, w)
    tp: np.ndarray        # (K, h, w)
    scale: float          # input px -> work px
    input_shape: tuple[int, int]


def predict_rgb(*, loaded: LoadedModel, rgb: np.ndarray, mpp: float) -> Prediction:
    """Resample to the model's resolution and run the network (releases the GIL while it runs)."""
    import cv2

    scale = mpp / loaded.work_mpp  # input px -> work px
    h, w = rgb.shape[:2]
    if abs(scale - 1) > 1e-3:
        size = (max(16, round(w * scale)), max(16, round(h * scale)))
        work = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    else:
        work = rgb
    np_prob, hv, tp = predict_maps(loaded=loaded, rgb=work)
    return Prediction(np_prob=np_prob, hv=hv, tp=tp, scale=scale, input_shape=(h, w))


def segment_rgb(*, loaded: LoadedModel, rgb: np.ndarray, mpp: float, at: str = "work"):
    """Instance map at the INPUT resolution and per-instance class and probability.

    at="work": post-process at the model's resolution and resize the label map (nearest);
    at="input": resize the maps to the input resolution first, then post-process."""
    return instances_from_prediction(predict_rgb(loaded=loaded, rgb=rgb, mpp=mpp), at=at)


def instances_from_prediction(prediction: Prediction, *, at: str = "work"):
    """`segment_rgb`'s second phase: watershed on the maps, one class per instance."""
    import cv2

    np_prob, hv, tp, scale = prediction.np_prob, prediction.hv, prediction.tp, prediction.scale
    h, w = prediction.input_shape
    if at == "input" and np_prob.shape[:2] != (h, w):
        np_prob = cv2.resize(np_prob, (w, h), interpolation=cv2.INTER_LINEAR)
        hv = np.stack([cv2.resize(c, (w, h), interpolation=cv2.INTER_LINEAR) for c in hv])
        tp = np.stack([cv2.resize(c, (w, h), interpolation=cv2.INTER_LINEAR) for c in tp])
        labels = instances_from_maps(np_prob=np_prob, hv=hv, min_area_px=int(10 / scale**2), marker_min_px=int(4 / scale**2))
    else:
        labels = instances_from_maps(np_prob=np_prob, hv=hv)
        if labels.shape != (h, w):
            labels = cv2.resize(labels, (w, h), interpolation=cv2.INTER_NEAREST)
            tp = np.stack([cv2.resize(c, (w, h), interpolation=cv2.INTER_LINEAR) for c in tp])
    # class per instance: the class with the largest summed probability over its pixels
    # (HoVer-Net takes the majority of per-pixel argmax; summed probabilities break ties smoothly)
    n = int(labels.max())
    flat = labels.ravel()
    sums = np.stack([np.bincount(flat, weights=c.ravel(), minlength=n + 1) for c in tp])  # (K, n+1)
    counts = np.bincount(flat, minlength=n + 1).astype(float)
    probs = sums / np.maximum(counts, 1)
    cls = probs.argmax(0)
    return labels, cls, probs.max(0), probs

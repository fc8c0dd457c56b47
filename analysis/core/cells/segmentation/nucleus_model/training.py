"""Training the nucleus model from hand-annotated tiles: sampling, augmentation, losses, loop.

Losses follow HoVer-Net (Graham et al. 2019, section 3.3): NP = binary cross-entropy + soft
Dice; HV = mean squared error + mean squared error of the Sobel gradients inside nuclei
(MSGE); TP = cross-entropy, here over *sets* of allowed classes (partial labels: PanNuke's
"non-neoplastic" says only "not tumour"), -log sum_{k in allowed} p_k.

Augmentation: flips and 90-degree turns, scale 0.8-1.25 around the working resolution
(covers scanners that call 0.4-0.63 um/px "20x"), stain jitter in optical density per
H/E channel (Tellez et al., Med Image Anal 2019), and, with probability ``ihc_p``, an
IHC-like recolouring: the eosin channel removed, the hematoxylin kept, DAB laid on a ring
just outside some nuclei (a membrane) and diffusely over others, so the same weights find
nuclei on HER2 IHC's hematoxylin counterstain.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np

from analysis.core.cells.segmentation.nucleus_model.data import MODEL_CLASSES, WORK_MPP, AnnotatedTile
from analysis.core.cells.segmentation.nucleus_model.net import build_model, hv_targets, split_outputs, type_targets

# RGB normalisation (fixed; recorded in the weights file)
MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32) * 255
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32) * 255

# Ruifrok & Johnston H, E, DAB optical-density vectors (as scikit-image's rgb_from_hed).
_RGB_FROM_HED = np.array([[0.65, 0.70, 0.29], [0.07, 0.99, 0.11], [0.27, 0.57, 0.78]], dtype=np.float32)
_RGB_FROM_HED /= np.linalg.norm(_RGB_FROM_HED, axis=1, keepdims=True)
_HED_FROM_RGB = np.linalg.inv(_RGB_FROM_HED)


@dataclass
class TrainConfig:
    iterations: int = 6000
    batch: int = 12
    patch: int = 128  # at WORK_MPP: 64 um
    lr: float = 2e-3
    weight_decay: float = 1e-4
    seed: int = 0
    ihc_p: float = 0.3
    widths: tuple = (16, 32, 64, 128, 160)
    threads: int = 2
    device: str = "cpu"
    # Sampling weight per dataset (the classed sets are small; oversample them).
    dataset_weights: tuple = (
        ("breast-monuseg", 0.25), ("breast-tnbc", 0.25), ("breast-pannuke", 0.2),
        ("colon-consep", 0.15), ("gbm", 0.15),
    )


class PatchSampler:
    """Random augmented patches at the working resolution, with their targets."""

    def __init__(self, *, tiles: list[AnnotatedTile], config: TrainConfig, rng: np.random.Generator):
        self.tiles = tiles
        self.config = config
        self.rng = rng
        by_dataset: dict[str, list[int]] = {}
        for i, tile in enumerate(tiles):
            by_dataset.setdefault(tile.dataset, []).append(i)
        weights = dict(config.dataset_weights)
        self.datasets = [d for d in by_dataset if weights.get(d, 0) > 0]
        p = np.array([weights[d] for d in self.datasets], dtype=float)
        self.dataset_p = p / p.sum()
        self.by_dataset = by_dataset

    def _crop(self, tile: AnnotatedTile):
        import cv2

        cfg = self.config
        scale = float(np.exp(self.rng.uniform(np.log(0.8), np.log(1.25))))
        # native pixels per output pixel
        step = WORK_MPP / tile.mpp * scale
        size_native = int(math.ceil(cfg.patch * step))
        h, w = tile.labels.shape
        y0 = int(self.rng.integers(min(0, h - size_native), max(1, h - size_native + 1)))
        x0 = int(self.rng.integers(min(0, w - size_native), max(1, w - size_native + 1)))
        # pad where the crop leaves the tile (small tiles at coarse scales)
        ys, xs = slice(max(y0, 0), min(y0 + size_native, h)), slice(max(x0, 0), min(x0 + size_native, w))
        rgb = np.full((size_native, size_native, 3), 0, dtype=np.uint8)
        lab = np.zeros((size_native, size_native), dtype=np.int32)
        valid = np.zeros((size_native, size_native), dtype=np.uint8)
        oy, ox = ys.start - y0, xs.start - x0
        rgb[oy : oy + ys.stop - ys.start, ox : ox + xs.stop - xs.start] = tile.rgb[ys, xs]
        lab[oy : oy + ys.stop - ys.start, ox : ox + xs.stop - xs.start] = tile.labels[ys, xs]
        valid[oy : oy + ys.stop - ys.start, ox : ox + xs.stop - xs.start] = 1
        out = (cfg.patch, cfg.patch)
        interp = cv2.INTER_AREA if step > 1 else cv2.INTER_LINEAR
        rgb = cv2.resize(rgb, out, interpolation=interp)
        lab = cv2.resize(lab, out, interpolation=cv2.INTER_NEAREST)
        valid = cv2.resize(valid, out, interpolation=cv2.INTER_NEAREST)
        return rgb, lab, valid

    def _stain(self, rgb: np.ndarray, lab: np.ndarray) -> np.ndarray:
        od = -np.log(np.maximum(rgb.astype(np.float32), 1) / 255.0)
        hed = od.reshape(-1, 3) @ _HED_FROM_RGB
        hed = np.maximum(hed, 0)
        r = self.rng
        hed[:, 0] = hed[:, 0] * r.uniform(0.7, 1.3) + r.uniform(-0.03, 0.03)
        hed[:, 1] = hed[:, 1] * r.uniform(0.6, 1.4) + r.uniform(-0.03, 0.03)
        hed[:, 2] = hed[:, 2] * r.uniform(0.5, 1.5)
        if r.random() < self.config.ihc_p:
            hed = self._ihc_like(hed.reshape(rgb.shape), lab).reshape(-1, 3)
        od = np.maximum(hed, 0) @ _RGB_FROM_HED
        out = 255.0 * np.exp(-od)
        out = out.reshape(rgb.shape)
        # brightness / contrast
        out = (out - 128) * r.uniform(0.85, 1.15) + 128 + r.uniform(-15, 15)
        return np.clip(out, 0, 255).astype(np.uint8)

    def _ihc_like(self, hed: np.ndarray, lab: np.ndarray) -> np.ndarray:
        """HER2 IHC look: no eosin, lighter hematoxylin, DAB membranes around some nuclei."""
        import cv2

        r = self.rng
        hed = hed.copy()
        hed[..., 0] *= r.uniform(0.5, 1.0)
        hed[..., 1] *= r.uniform(0.0, 0.15)
        n = int(lab.max())
        if n:
            stained = r.random(n + 1) < r.uniform(0.2, 1.0)
            stained[0] = False
            mask = stained[lab].astype(np.uint8)
            radius = int(r.integers(2, 6))
            kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
            grown = cv2.dilate(mask, kernel)
            inner = cv2.dilate(mask, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (3, 3)))
            ring = (grown > 0) & (inner == 0)
            ring = cv2.GaussianBlur(ring.astype(np.float32), (3, 3), 0)
            cytoplasm = cv2.GaussianBlur((grown > 0).astype(np.float32), (0, 0), radius)
            hed[..., 2] += ring * r.uniform(0.1, 1.0) + cytoplasm * r.uniform(0, 0.2)
        hed[..., 2] += r.uniform(0, 0.05)
        return hed

    def sample(self):
        dataset = self.datasets[int(self.rng.choice(len(self.datasets), p=self.dataset_p))]
        tile = self.tiles[int(self.rng.choice(self.by_dataset[dataset]))]
        rgb, lab, valid = self._crop(tile)
        k = int(self.rng.integers(4))
        rgb, lab, valid = np.rot90(rgb, k), np.rot90(lab, k), np.rot90(valid, k)
        if self.rng.random() < 0.5:
            rgb, lab, valid = rgb[:, ::-1], lab[:, ::-1], valid[:, ::-1]
        rgb, lab, valid = np.ascontiguousarray(rgb), np.ascontiguousarray(lab), np.ascontiguousarray(valid)
        rgb = self._stain(rgb, lab)
        return {
            "image": ((rgb.astype(np.float32) - MEAN) / STD).transpose(2, 0, 1),
            "np": (lab > 0).astype(np.float32)[None],
            "hv": hv_targets(lab),
            "tp": type_targets(labels=lab, allowed=tile.allowed),
            "valid": valid.astype(np.float32)[None],
        }

    def batch(self):
        import torch

        items = [self.sample() for _ in range(self.config.batch)]
        return {key: torch.from_numpy(np.stack([it[key] for it in items])) for key in items[0]}


def _sobel(x):
    import torch

    kx = torch.tensor([[-1.0, 0, 1], [-2, 0, 2], [-1, 0, 1]], device=x.device) / 4
    h = torch.nn.functional.conv2d(x[:, :1], kx[None, None], padding=1)
    v = torch.nn.functional.conv2d(x[:, 1:2], kx.T[None, None].contiguous(), padding=1)
    return torch.cat([h, v], 1)


def losses(out, batch) -> dict:
    import torch

    np_prob, hv, tp_logits = split_outputs(out)
    valid = batch["valid"]
    target_np = batch["np"]
    eps = 1e-6
    bce = torch.nn.functional.binary_cross_entropy(np_prob.clamp(eps, 1 - eps), target_np, reduction="none")
    bce = (bce * valid).sum() / valid.sum().clamp_min(1)
    inter = (np_prob * target_np * valid).sum()
    dice = 1 - (2 * inter + 1) / ((np_prob * valid).sum() + (target_np * valid).sum() + 1)
    hv_mse = (((hv - batch["hv"]) ** 2) * valid).sum() / (2 * valid.sum().clamp_min(1))
    fg = target_np * valid
    msge = (((_sobel(hv) - _sobel(batch["hv"])) ** 2) * fg).sum() / (2 * fg.sum().clamp_min(1))
    bits = batch["tp"]  # (B, H, W) int64 bitmask
    labelled = (bits > 0) & (valid[:, 0] > 0)
    if labelled.any():
        k = tp_logits.shape[1]
        allowed = torch.stack([(bits >> i) & 1 for i in range(k)], 1).bool()  # (B, K, H, W)
        log_all = torch.logsumexp(tp_logits, 1)
        log_allowed = torch.logsumexp(tp_logits.masked_fill(~allowed, -1e9), 1)
        tp = (log_all - log_allowed)[labelled].mean()
    else:
        tp = tp_logits.sum() * 0
    total = bce + dice + hv_mse + msge + tp
    return {"total": total, "np_bce": bce, "np_dice": dice, "hv_mse": hv_mse, "hv_msge": msge, "tp": tp}


def train_model(*, tiles: list[AnnotatedTile], config: TrainConfig, progress=None, log=print):
    """Train from scratch; return the model (eval mode) and the loss history."""
    import torch

    torch.manual_seed(config.seed)
    torch.set_num_threads(config.threads)
    rng = np.random.default_rng(config.seed)
    sampler = PatchSampler(tiles=tiles, config=config, rng=rng)
    model = build_model(n_classes=len(MODEL_CLASSES), widths=config.widths)
    model = model.to(config.device, memory_format=torch.channels_last)
    optimiser = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimiser, max_lr=config.lr, total_steps=config.iterations, pct_start=0.1
    )
    history = []
    model.train()
    started = time.perf_counter()
    running = None
    for step in range(config.iterations):
        batch = {key: value.to(config.device) for key, value in sampler.batch().items()}
        out = model(batch["image"].contiguous(memory_format=torch.channels_last))
        parts = losses(out, batch)
        optimiser.zero_grad(set_to_none=True)
        parts["total"].backward()
        optimiser.step()
        schedule.step()
        values = {k: float(v.detach()) for k, v in parts.items()}
        running = values if running is None else {k: 0.98 * running[k] + 0.02 * values[k] for k in values}
        if progress:
            progress(step + 1, running)
        if (step + 1) % 100 == 0 or step + 1 == config.iterations:
            history.append({"step": step + 1, "seconds": round(time.perf_counter() - started, 1), **{k: round(v, 4) for k, v in running.items()}})
            log(f"step {step + 1}/{config.iterations} loss {running['total']:.3f} "
                f"(np {running['np_bce']:.3f}+{running['np_dice']:.3f} hv {running['hv_mse']:.3f}+{running['hv_msge']:.3f} tp {running['tp']:.3f}) "
                f"{time.perf_counter() - started:.0f}s")
    model.eval()
    return model, history


def save_weights(*, model, config: TrainConfig, path, history=()) -> None:
    """The weights file the segmenter loads (torch.save of plain tensors and lists only, so
    torch.load(weights_only=True) reads it), written atomically."""
    import io

    import torch

    from analysis.core.cells.segmentation.nucleus_model.net import ARCH_VERSION
    from analysis.core.files import atomic_write_bytes

    buffer = io.BytesIO()
    torch.save({
        "arch": ARCH_VERSION, "widths": list(config.widths), "classes": list(MODEL_CLASSES),
        "work_mpp": WORK_MPP, "mean": MEAN.tolist(), "std": STD.tolist(), "step": config.iterations,
        "state_dict": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
        "history": list(history),
    }, buffer)
    atomic_write_bytes(path, buffer.getvalue())

"""Windowed inference: bounded memory, the same maps as one pass except at the seams' last digits."""
import numpy as np
from PIL import Image

from analysis.core.cells.segmentation.nucleus_model import inference
from analysis.core.cells.segmentation.nucleus_model.net import instances_from_maps
from analysis.core.cells.segmentation.nucleus_model.segmenter import SHIPPED_WEIGHTS


def test_windows_give_the_nuclei_of_one_pass(shared_file, monkeypatch):
    loaded = inference.load_weights(path=SHIPPED_WEIGHTS)
    rgb = np.asarray(Image.open(shared_file("nuclei/breast-tnbc/08_1.png")).convert("RGB"))[:400, :400]
    whole = inference.predict_maps(loaded=loaded, rgb=rgb)
    monkeypatch.setattr(inference, "WINDOW_PX", 240)  # 2 x 2 windows of 200 px + 2 x 20 px context
    monkeypatch.setattr(inference, "CONTEXT_PX", 20)
    windowed = inference.predict_maps(loaded=loaded, rgb=rgb)
    assert [m.shape for m in windowed] == [m.shape for m in whole]
    assert np.abs(windowed[0] - whole[0]).mean() < 0.01  # only near the seams, and little there
    n_whole = instances_from_maps(np_prob=whole[0], hv=whole[1]).max()
    n_windowed = instances_from_maps(np_prob=windowed[0], hv=windowed[1]).max()
    assert n_whole > 20 and abs(int(n_windowed) - int(n_whole)) <= max(2, 0.05 * n_whole)


def test_onnx_runtime_and_folded_torch_give_the_maps_of_the_trained_network(shared_file):
    """The runtimes change rounding only: maps within 1e-4 of the plain eager network's."""
    import pytest
    import torch

    rgb = np.asarray(Image.open(shared_file("nuclei/breast-tnbc/08_1.png")).convert("RGB"))[:288, :288]  # a multiple of 16: no padding
    on_torch = inference.load_weights(path=SHIPPED_WEIGHTS, runtime="torch")
    on_onnx = inference.load_weights(path=SHIPPED_WEIGHTS, runtime="onnxruntime")
    assert on_torch.runtime == "torch" and on_onnx.runtime.startswith("onnxruntime ")
    image = (rgb.astype(np.float32) - on_torch.mean) / on_torch.std
    with torch.inference_mode():  # the network as trained: BatchNorm not folded, PyTorch eager
        raw = on_torch.model(torch.from_numpy(image.transpose(2, 0, 1)[None].copy()))[0]
        eager = torch.cat([torch.sigmoid(raw[:1]), torch.tanh(raw[1:3]), torch.softmax(raw[3:], 0)]).numpy()
    for loaded in (on_torch, on_onnx):
        maps = np.concatenate([m.reshape(-1, *rgb.shape[:2]) for m in inference.predict_maps(loaded=loaded, rgb=rgb)])
        assert np.abs(maps - eager).max() < 1e-4, loaded.runtime
    with pytest.raises(inference.NucleusRuntimeError, match="one of auto, torch, torch-bf16, onnxruntime"):
        inference.load_weights(path=SHIPPED_WEIGHTS, runtime="tensorrt")


def test_bfloat16_finds_the_nuclei_of_float32(shared_file):
    """bfloat16 convolutions (the default where the CPU computes them natively) move the maps by
    a few hundredths and the nuclei hardly at all; benchmarks/nucleus_bf16.py measures it on
    every annotated set."""
    import pytest

    if not inference.cpu_has_native_bfloat16():
        pytest.skip("this CPU has no native bfloat16")
    rgb = np.asarray(Image.open(shared_file("nuclei/breast-tnbc/08_1.png")).convert("RGB"))[:400, :400]
    on_float32 = inference.load_weights(path=SHIPPED_WEIGHTS, runtime="torch")
    on_bfloat16 = inference.load_weights(path=SHIPPED_WEIGHTS, runtime="torch-bf16")
    assert on_bfloat16.runtime == "torch bfloat16"
    reference, reduced = inference.predict_maps(loaded=on_float32, rgb=rgb), inference.predict_maps(loaded=on_bfloat16, rgb=rgb)
    assert all(m.dtype == np.float32 for m in reduced)
    assert 0 < np.abs(reduced[0] - reference[0]).max() < 0.1  # really reduced precision, and not by much
    n_reference = instances_from_maps(np_prob=reference[0], hv=reference[1]).max()
    n_reduced = instances_from_maps(np_prob=reduced[0], hv=reduced[1]).max()
    assert n_reference > 20 and abs(int(n_reduced) - int(n_reference)) <= max(2, 0.03 * n_reference)


def test_auto_runs_bfloat16_only_where_the_cpu_computes_it(monkeypatch):
    import pytest

    monkeypatch.setattr(inference, "cpu_has_native_bfloat16", lambda: False)
    assert inference.load_weights(path=SHIPPED_WEIGHTS, runtime="auto").runtime == "torch"
    with pytest.raises(inference.NucleusRuntimeError, match="no native bfloat16"):
        inference.load_weights(path=SHIPPED_WEIGHTS, runtime="torch-bf16")
    monkeypatch.setattr(inference, "cpu_has_native_bfloat16", lambda: True)
    assert inference.load_weights(path=SHIPPED_WEIGHTS, runtime="auto").runtime == "torch bfloat16"


def test_native_bfloat16_means_the_cpu_flags_not_onednn_emulation():
    """AVX-512 alone is not bfloat16 hardware: oneDNN says "supported" and emulates it, 2.2x
    slower than float32 on a Cascade Lake Xeon. The answer must follow the CPU's own flags."""
    import pytest
    from pathlib import Path

    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.exists():
        pytest.skip("no /proc/cpuinfo to compare with")
    flags = set(cpuinfo.read_text().split())
    assert inference.cpu_has_native_bfloat16() == bool(flags & {"avx512_bf16", "amx_bf16"})

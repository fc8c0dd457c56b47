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

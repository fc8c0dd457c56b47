"""VALIS (Gatenbee et al., Nat Commun 2023; valis-wsi) on the her2st C2/C3 pair, for comparison.

Run in its own virtualenv (it pulls torch, kornia, pyvips, a JVM bridge), never the product's:
    python3.11 -m venv /tmp/valis-venv && /tmp/valis-venv/bin/pip install valis-wsi pyvips-binary
    OMP_NUM_THREADS=1 /tmp/valis-venv/bin/python benchmarks/registration_valis.py
valis-wsi 1.2's default matcher (DISK + LightGlue) downloads weights when `valis` is imported;
offline that fails, so DISK is made without pretrained weights here (it is then unused: the
classic VGG-descriptor matcher of the VALIS paper is passed explicitly).
Writes results/valis.json: time, the rigid transform at level 0, landmark errors.
"""
import json, sys, time, shutil, tempfile
from pathlib import Path
import numpy as np
import kornia.feature as KF

KF.DISK.from_pretrained = classmethod(lambda cls, *a, **k: cls())
_lg_init = KF.LightGlue.__init__
def _lg_no_weights(self, features="superpoint", **conf):
    conf["weights"] = None
    try:
        _lg_init(self, features, **conf)
    except Exception:
        _lg_init(self, "superpoint", weights=None) if False else None
KF.LightGlue.__init__ = _lg_no_weights

from valis import registration, feature_matcher, feature_detectors  # noqa: E402

HERE = Path(__file__).resolve().parent
DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "slides"


def main():
    work = Path(tempfile.mkdtemp(prefix="valis-"))
    src = work / "src"; src.mkdir()
    for n in ("C2", "C3"):
        (src / f"her2st-{n}-HE.jpg").symlink_to(DATA / f"her2st-{n}-HE.jpg")
    t0 = time.perf_counter()
    out = {"pair": "her2st C2 (reference) / C3", "valis_version": registration.__dict__.get("__version__")}
    try:
        reg = registration.Valis(str(src), str(work / "out"), reference_img_f="her2st-C2-HE.jpg",
                                 align_to_reference=True,
                                 matcher=feature_matcher.Matcher(feature_detector=feature_detectors.VggFD()),
                                 matcher_for_sorting=feature_matcher.Matcher(feature_detector=feature_detectors.VggFD()))
        rigid, non_rigid, summary = reg.register()
        out["seconds"] = round(time.perf_counter() - t0, 1)
        fixed = reg.get_slide("her2st-C2-HE.jpg"); moving = reg.get_slide("her2st-C3-HE.jpg")
        lm = json.loads((HERE.parent / "tests" / "data" / "landmarks-her2st-C2-C3.json").read_text())["pairs"]
        p = np.array([x["C2"] for x in lm], float); q = np.array([x["C3"] for x in lm], float)
        for nr in (False, True):
            # warp C3 landmarks into C2 (the reference) and compare to the C2 landmarks
            mapped = moving.warp_xy_from_to(q, fixed, non_rigid=nr)
            err = np.hypot(*(mapped - p).T) * 0.7
            out[f"landmark_error_um_{'nonrigid' if nr else 'rigid'}_median"] = round(float(np.median(err)), 1)
        out["summary"] = summary.to_dict() if hasattr(summary, "to_dict") else str(summary)
    except Exception as exc:  # report, do not hide
        import traceback
        out["error"] = f"{type(exc).__name__}: {exc}"
        out["traceback_tail"] = traceback.format_exc()[-1500:]
        out["seconds"] = round(time.perf_counter() - t0, 1)
    finally:
        try:
            registration.kill_jvm()
        except Exception:
            pass
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "valis.json").write_text(json.dumps(out, indent=1, default=str))
    print(json.dumps({k: v for k, v in out.items() if k != "summary"}, indent=1, default=str)[:3000])
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

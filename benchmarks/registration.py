"""Registration benchmark: known transforms on real sections, and the real serial pair her2st C2/C3.

(a) Known transforms. A real H&E section (her2st C2, CMU-1) is the fixed slide; the moving slide
    is the same section moved by a random similarity (rotation 0-180 deg either way, scale
    0.8-1.25, the tissue shifted by up to a third of the slide), bent by a smooth random elastic
    field, and restained HER2-IHC-like (hematoxylin kept, eosin removed, a DAB-like membrane
    stain put where eosin was inside hematoxylin-dense, tumour-like regions; another glass colour
    and some noise) - the recipe of ../shared/tools/make_registration_pair.py, but generated
    lazily through a region reader so that slides of ~40,000^2 px level 0 cost nothing to make.
    Target registration error (TRE, um) over tissue points, after the similarity stage and after
    the non-rigid stage; a failure is a median TRE > 200 um.
(b) Real serial sections her2st C2 (fixed) vs C3 (moving): Dice of the tissue masks and NCC of
    hematoxylin after each stage, and the error at hand-placed landmarks
    (landmarks-her2st-C2-C3.json).
(c) VALIS (valis-wsi) on the same pairs when its virtualenv works (benchmark_valis.py, run in
    that environment, writes results/valis.json which is merged here).

Usage:  OMP_NUM_THREADS=1 python benchmarks/registration.py [--cases 20] [--out results/registration.json]
        python benchmarks/registration.py --landmarks-only   (after editing the landmark file)
"""
from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image
from scipy import ndimage as ndi

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from analysis.core.slides import registration as reg  # noqa: E402

Image.MAX_IMAGE_PIXELS = None
cv2.setNumThreads(1)
DATA = Path(os.environ.get("LADDER_TEST_DATA", ROOT.parent / "shared" / "data")) / "slides"
HERE = Path(__file__).resolve().parent


# ---------------------------------------------------------------------------------------------
# Sections


@dataclass
class Section:
    name: str
    rgb: np.ndarray  # at `mpp`
    mpp: float
    level0_factor: float = 1.0  # the slide's level 0 is this many times finer than `rgb`


def load_section(name: str) -> Section:
    if name == "her2st-C2":
        im = Image.open(DATA / "her2st-C2-HE.jpg").convert("RGB")
        im = im.resize((im.width // 2, im.height // 2), Image.LANCZOS)  # 1.4 um/px, as make_registration_pair --shrink 2
        # declared as a ~40x slide of ~37,000 x 39,600 px level 0 (0.175 um/px): the timing case
        return Section(name=name, rgb=np.asarray(im), mpp=1.4, level0_factor=8.0)
    if name == "CMU-1":
        import openslide
        slide = openslide.OpenSlide(str(DATA / "CMU-1-Small-Region.svs"))
        rgb = np.asarray(slide.read_region((0, 0), 0, slide.dimensions).convert("RGB"))
        return Section(name=name, rgb=rgb, mpp=float(slide.properties["openslide.mpp-x"]))
    raise ValueError(name)


# Ruifrok & Johnston stain vectors (as registration._HED).
HED = reg._HED.astype(np.float32)


def restain_ihc(rgb: np.ndarray, *, rng: np.random.Generator, mpp: float) -> np.ndarray:
    """HER2-IHC-like copy: hematoxylin kept, eosin dropped, DAB on membranes in tumour-like regions."""
    bg = reg.background_rgb(rgb=rgb)
    od = reg.optical_density(rgb=rgb, background=bg)
    conc = od @ np.linalg.inv(HED).astype(np.float32)
    hema, eosin = np.maximum(conc[..., 0], 0), np.maximum(conc[..., 1], 0)
    dense = cv2.GaussianBlur(hema, (0, 0), 40.0 / mpp)  # hematoxylin-dense (tumour-like) regions
    tissue = dense > 0.02
    thr = np.percentile(dense[tissue], 55) if tissue.any() else 1.0
    tumour = np.clip((dense - thr) / (thr + 1e-6) * 3, 0, 1)
    edges = np.clip(eosin - np.percentile(eosin, 60), 0, None)
    dab = edges * tumour * rng.uniform(0.8, 1.6)
    # not the same pixels: nuclear-scale multiplicative texture (20%) and a slightly different focus
    texture = cv2.GaussianBlur(rng.normal(0, 1, hema.shape).astype(np.float32), (0, 0), 3.0 / mpp)
    texture /= texture.std() + 1e-9
    h = cv2.GaussianBlur(hema * np.exp(0.2 * texture) * rng.uniform(0.8, 1.1), (0, 0), 0.8)
    out_od = h[..., None] * HED[0] + dab[..., None] * HED[2] + 0.02 * np.maximum(eosin, 0)[..., None] * HED[1]
    glass = np.array([rng.uniform(232, 246), rng.uniform(232, 246), rng.uniform(228, 244)], np.float32)
    out = glass * np.power(10.0, -out_od)
    out += rng.normal(0, 2.0, out.shape).astype(np.float32)
    return np.clip(out, 0, 255).astype(np.uint8)


@dataclass
class Truth:
    """q = A(p - e(q)) + t, i.e. moving pixel q shows fixed point A^-1(q - t) + e(q) (all level-0 px)."""

    rotation: float
    scale: float
    offset: np.ndarray
    elastic_grid: np.ndarray  # (gy, gx, 2) in fixed level-0 px, defined over moving level-0
    elastic_spacing: float  # moving level-0 px between grid nodes

    @property
    def A(self) -> np.ndarray:
        t = math.radians(self.rotation)
        return self.scale * np.array([[math.cos(t), -math.sin(t)], [math.sin(t), math.cos(t)]])

    def elastic(self, q: np.ndarray) -> np.ndarray:
        coords = [q[:, 1] / self.elastic_spacing, q[:, 0] / self.elastic_spacing]
        return np.stack([ndi.map_coordinates(self.elastic_grid[..., c], coords, order=3, mode="nearest")
                         for c in range(2)], 1)

    def moving_to_fixed(self, q: np.ndarray) -> np.ndarray:
        return (q - self.offset) @ np.linalg.inv(self.A).T + self.elastic(q)

    def fixed_to_moving(self, p: np.ndarray, iterations: int = 30) -> np.ndarray:
        q = (p @ self.A.T) + self.offset
        for _ in range(iterations):
            q = (p - self.elastic(q)) @ self.A.T + self.offset
        return q


def make_case(section: Section, ihc: np.ndarray, *, rng: np.random.Generator, elastic_um: float
              ) -> tuple[reg.SlideSource, reg.SlideSource, Truth]:
    k = section.level0_factor
    mpp0 = section.mpp / k
    h, w = section.rgb.shape[:2]
    W0, H0 = w * k, h * k  # fixed level 0
    rot = float(rng.uniform(-180, 180))
    scale = float(rng.uniform(0.8, 1.25))
    t = math.radians(rot)
    A = scale * np.array([[math.cos(t), -math.sin(t)], [math.sin(t), math.cos(t)]])
    corners = np.array([[0, 0], [W0, 0], [0, H0], [W0, H0]], float) @ A.T
    lo, hi = corners.min(0), corners.max(0)
    extent = hi - lo
    before = rng.uniform(0, extent / 3)  # the tissue's shift inside the moving slide: up to 1/3
    after = rng.uniform(0, extent / 3)
    offset = -lo + before
    Wm, Hm = (extent + before + after).astype(int)
    spacing = 600.0 / mpp0  # elastic field: random nodes every 600 um, cubic
    gx, gy = int(Wm / spacing) + 4, int(Hm / spacing) + 4
    grid = ndi.gaussian_filter(rng.normal(size=(gy, gx, 2)), (1.0, 1.0, 0))
    grid = grid / (np.abs(grid).max() + 1e-9) * (elastic_um / mpp0)
    truth = Truth(rotation=rot, scale=scale, offset=offset, elastic_grid=grid, elastic_spacing=spacing)
    he_pyr = reg.build_pyramid(rgb=section.rgb)
    ihc_pyr = reg.build_pyramid(rgb=ihc)

    def read_fixed(*, x, y, width, height, out_width, out_height):
        return reg.read_from_pyramid(pyramid=he_pyr, x=x / k, y=y / k, width=width / k, height=height / k,
                                     out_width=out_width, out_height=out_height)

    def read_moving(*, x, y, width, height, out_width, out_height):
        sx, sy = width / out_width, height / out_height
        jj, ii = np.meshgrid((np.arange(out_width) + 0.5) * sx + x, (np.arange(out_height) + 0.5) * sy + y)
        q = np.stack([jj.ravel(), ii.ravel()], 1)
        p = truth.moving_to_fixed(q) / k  # continuous base-image coordinates
        ds = max(sx, sy) / scale / k
        level = int(min(len(ihc_pyr) - 1, max(0, math.floor(math.log2(max(ds, 1.0)) + 1e-9))))
        f = 2.0 ** level
        image = ihc_pyr[level]
        rem = ds / f
        if rem > 1.05:
            image = cv2.GaussianBlur(image, (0, 0), 0.5 * math.sqrt(rem * rem - 1))
        mx = (p[:, 0] / f - 0.5).astype(np.float32).reshape(out_height, out_width)
        my = (p[:, 1] / f - 0.5).astype(np.float32).reshape(out_height, out_width)
        return cv2.remap(image, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                         borderValue=tuple(int(v) for v in ihc_pyr[-1][0, 0]))

    fixed = reg.SlideSource(read=read_fixed, width=int(W0), height=int(H0), mpp=mpp0, name=f"{section.name} H&E")
    moving = reg.SlideSource(read=read_moving, width=int(Wm), height=int(Hm), mpp=mpp0,
                             name=f"{section.name} IHC-like")
    return fixed, moving, truth


def tissue_points(section: Section, n: int, rng: np.random.Generator) -> np.ndarray:
    """n random fixed level-0 points inside the section's tissue (eroded by 100 um)."""
    f = 16.0 / section.mpp
    small = cv2.resize(section.rgb, (int(section.rgb.shape[1] / f), int(section.rgb.shape[0] / f)),
                       interpolation=cv2.INTER_AREA)
    mask = reg.tissue_mask(rgb=small, um_per_px=16.0)
    mask = ndi.binary_erosion(mask, iterations=6)
    ys, xs = np.nonzero(mask)
    pick = rng.choice(len(xs), size=min(n, len(xs)), replace=False)
    return (np.c_[xs[pick], ys[pick]] + rng.uniform(0, 1, (len(pick), 2))) * f * section.level0_factor


def run_known(n_cases: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    sections = {name: load_section(name) for name in ("her2st-C2", "CMU-1")}
    restained = {}
    rows = []
    for i in range(n_cases):
        section = sections["her2st-C2" if i % 2 == 0 else "CMU-1"]
        if section.name not in restained:
            restained[section.name] = restain_ihc(section.rgb, rng=np.random.default_rng(seed + 99), mpp=section.mpp)
        case_rng = np.random.default_rng(seed * 1000 + i)
        elastic_um = float(case_rng.uniform(10, 40))
        fixed, moving, truth = make_case(section, restained[section.name], rng=case_rng, elastic_um=elastic_um)
        pts = tissue_points(section, 300, case_rng)
        true_q = truth.fixed_to_moving(pts)
        t0 = time.perf_counter()
        try:
            result = reg.register_slides(fixed=fixed, moving=moving)
        except reg.RegistrationError as exc:
            rows.append({"case": i, "section": section.name, "error": str(exc)})
            print(i, section.name, "ERROR", exc, flush=True)
            continue
        seconds = time.perf_counter() - t0
        mpp = moving.mpp
        q_sim = result.similarity.apply(pts)
        q_nr = result.map_to_moving(pts)
        tre_sim = np.hypot(*(q_sim - true_q).T) * mpp
        tre_nr = np.hypot(*(q_nr - true_q).T) * mpp
        # identity-at-similarity error of the truth itself (what the elastic part alone moves)
        tre_truth_sim = np.hypot(*((pts @ truth.A.T + truth.offset) - true_q).T) * mpp
        back = result.map_to_fixed(q_nr)
        row = {"case": i, "section": section.name, "level0_px": [fixed.width, fixed.height],
               "moving_px": [moving.width, moving.height], "mpp": round(mpp, 4),
               "truth": {"rotation": round(truth.rotation, 2), "scale": round(truth.scale, 4),
                         "elastic_um": round(elastic_um, 1)},
               "found": result.similarity.as_alignment(),
               "tre_um_similarity_median": round(float(np.median(tre_sim)), 2),
               "tre_um_nonrigid_median": round(float(np.median(tre_nr)), 2),
               "tre_um_nonrigid_p90": round(float(np.percentile(tre_nr, 90)), 2),
               "elastic_only_um_median": round(float(np.median(tre_truth_sim)), 2),
               "roundtrip_um_median": round(float(np.median(np.hypot(*(back - pts).T))) * fixed.mpp, 3),
               "field_kept": result.field is not None, "seconds": round(seconds, 2),
               "stages": result.summary()["stages"]}
        rows.append(row)
        print(f"{i:2d} {section.name:9s} rot {truth.rotation:7.1f} scale {truth.scale:.3f} el {elastic_um:4.1f}um "
              f"-> found rot {result.similarity.rotation:7.1f} scale {result.similarity.scale:.3f} | "
              f"TRE sim {row['tre_um_similarity_median']:7.2f} nr {row['tre_um_nonrigid_median']:6.2f} um | "
              f"{seconds:5.1f} s | {result.stages[1].detail.get('chosen')}", flush=True)
    ok = [r for r in rows if "error" not in r]
    failures = [r["case"] for r in rows if "error" in r or r["tre_um_nonrigid_median"] > 200]
    return {"cases": rows, "summary": {
        "n": len(rows), "failures_gt_200um": failures,
        "median_tre_um_similarity": round(statistics.median(r["tre_um_similarity_median"] for r in ok), 2) if ok else None,
        "median_tre_um_nonrigid": round(statistics.median(r["tre_um_nonrigid_median"] for r in ok), 2) if ok else None,
        "worst_case_median_tre_um_nonrigid": max((r["tre_um_nonrigid_median"] for r in ok), default=None),
        "median_seconds": round(statistics.median(r["seconds"] for r in ok), 2) if ok else None,
        "max_seconds": max((r["seconds"] for r in ok), default=None)}}


def load_jpeg_source(path: Path, mpp: float, name: str) -> reg.SlideSource:
    rgb = np.asarray(Image.open(path).convert("RGB"))
    return reg.SlideSource.from_array(rgb=rgb, mpp=mpp, name=name)


def run_real(landmarks_path: Path) -> dict:
    fixed = load_jpeg_source(DATA / "her2st-C2-HE.jpg", 0.7, "her2st-C2")
    moving = load_jpeg_source(DATA / "her2st-C3-HE.jpg", 0.7, "her2st-C3")
    t0 = time.perf_counter()
    result = reg.register_slides(fixed=fixed, moving=moving)
    seconds = time.perf_counter() - t0
    out = {"pair": "her2st C2 (fixed) -> C3 (moving), assumed 0.7 um/px both", "seconds": round(seconds, 2),
           **result.summary(), "log": list(result.log)}
    if landmarks_path.exists():
        out["landmarks"] = landmark_errors(result, landmarks_path)
    return out


def landmark_errors(result: reg.RegistrationResult, landmarks_path: Path) -> dict:
    """Errors (um) at the hand-placed landmark pairs, before and after each stage."""
    lm = json.loads(landmarks_path.read_text())
    pairs = lm["pairs"]
    p = np.array([pp["C2"] for pp in pairs], float)
    q = np.array([pp["C3"] for pp in pairs], float)
    mpp = 0.7
    sim_err = np.hypot(*(result.similarity.apply(p) - q).T) * mpp
    nr_err = np.hypot(*(result.map_to_moving(p) - q).T) * mpp
    ident = reg.Similarity(offset_x=0, offset_y=0, rotation=0, scale=1.0)
    init_err = np.hypot(*(ident.apply(p) - q).T) * mpp
    # the best similarity through the landmarks themselves: what no similarity can beat
    best = reg.fit_similarity(source=p, target=q)
    best_err = np.hypot(*(best.apply(p) - q).T) * mpp
    return {
        "n": len(pairs),
        "error_um_initial_median": round(float(np.median(init_err)), 1),
        "error_um_similarity_median": round(float(np.median(sim_err)), 1),
        "error_um_nonrigid_median": round(float(np.median(nr_err)), 1),
        "error_um_similarity_mean": round(float(np.mean(sim_err)), 1),
        "error_um_nonrigid_mean": round(float(np.mean(nr_err)), 1),
        "error_um_nonrigid_max": round(float(np.max(nr_err)), 1),
        "error_um_landmark_fitted_similarity_median": round(float(np.median(best_err)), 1),
        "landmark_fitted_similarity": best.as_alignment(),
        "per_landmark_um_nonrigid": [round(float(v), 1) for v in nr_err],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", type=int, default=20)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--out", type=Path, default=HERE / "results" / "registration.json")
    ap.add_argument("--landmarks", type=Path, default=ROOT / "tests" / "data" / "landmarks-her2st-C2-C3.json")
    ap.add_argument("--skip-known", action="store_true")
    ap.add_argument("--skip-real", action="store_true")
    ap.add_argument("--landmarks-only", action="store_true",
                    help="register the real pair again and update only its landmark errors in --out")
    a = ap.parse_args()
    if a.landmarks_only:
        out = json.loads(a.out.read_text()) if a.out.exists() else {}
        fixed = load_jpeg_source(DATA / "her2st-C2-HE.jpg", 0.7, "her2st-C2")
        moving = load_jpeg_source(DATA / "her2st-C3-HE.jpg", 0.7, "her2st-C3")
        result = reg.register_slides(fixed=fixed, moving=moving)
        out.setdefault("real_her2st_C2_C3", {})["landmarks"] = landmark_errors(result, a.landmarks)
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(json.dumps(out, indent=1))
        print(json.dumps(out["real_her2st_C2_C3"]["landmarks"], indent=1))
        print("wrote", a.out)
        return
    out = json.loads(a.out.read_text()) if a.out.exists() else {}
    out["machine"] = {"cpus": os.cpu_count(), "threads": os.environ.get("OMP_NUM_THREADS"), "opencv": cv2.__version__}
    if not a.skip_known:
        out["known_transforms"] = run_known(a.cases, a.seed)
        print(json.dumps(out["known_transforms"]["summary"], indent=1))
    if not a.skip_real:
        out["real_her2st_C2_C3"] = run_real(a.landmarks)
        print(json.dumps({k: v for k, v in out["real_her2st_C2_C3"].items() if k != "log"}, indent=1))
    valis = HERE / "results" / "valis.json"
    if valis.exists():
        out["valis"] = json.loads(valis.read_text())
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(out, indent=1))
    print("wrote", a.out)


if __name__ == "__main__":
    main()

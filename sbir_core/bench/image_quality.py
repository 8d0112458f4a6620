"""How photo-like generated images are: Fréchet distance and kernel inception distance (KID) between
two sets of image features, and the feature extractor that feeds them offline.

FID (Heusel et al., NeurIPS 2017) and KID (Bińkowski et al., ICLR 2018) are defined on Inception-v3
pool features; no Inception weights are available offline here, so the features are the frozen
ImageNet EfficientNet-Lite0's pooled 1280-d output (`models/backbone_lite0.onnx`, the `pretrained`
backend's model). The figures are therefore comparable with each other, not with published FIDs.
numpy only (no scipy, no torch).
"""
from __future__ import annotations

import os
from typing import Any, Sequence

import numpy as np


def _psd_sqrt(c: np.ndarray) -> np.ndarray:
    """Symmetric square root of a symmetric positive semi-definite matrix (eigenvalues clipped at 0)."""
    w, v = np.linalg.eigh(c)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to (N, D) and (M, D) features:
    |mu_a - mu_b|² + tr(C_a + C_b - 2 (C_a^½ C_b C_a^½)^½). The matrix root is taken through a
    symmetric eigendecomposition, so it stays real and stable when N < D (singular covariances)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1] or len(a) < 2 or len(b) < 2:
        raise ValueError(f"need two (N, D) feature sets with the same D and N >= 2, got {a.shape} and {b.shape}")
    mu = a.mean(0) - b.mean(0)
    ca, cb = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    ra = _psd_sqrt(ca)
    cross = np.sqrt(np.clip(np.linalg.eigvalsh(ra @ cb @ ra), 0, None)).sum()   # tr((Ca^½ Cb Ca^½)^½)
    return float(mu @ mu + np.trace(ca) + np.trace(cb) - 2 * cross)


def _mmd2_unbiased(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased MMD² with the cubic polynomial kernel k(u, v) = (u·v / D + 1)³."""
    d = x.shape[1]
    kxx, kyy, kxy = ((x @ x.T) / d + 1) ** 3, ((y @ y.T) / d + 1) ** 3, ((x @ y.T) / d + 1) ** 3
    m, n = len(x), len(y)
    return float((kxx.sum() - np.trace(kxx)) / (m * (m - 1)) + (kyy.sum() - np.trace(kyy)) / (n * (n - 1))
                 - 2 * kxy.mean())


def kernel_inception_distance(a: np.ndarray, b: np.ndarray, subset_size: int = 200, n_subsets: int = 50,
                              seed: int = 0) -> tuple[float, float]:
    """KID: the unbiased MMD² (cubic polynomial kernel) averaged over random subsets of both sets,
    as Bińkowski et al. compute it; returns (mean, standard deviation over subsets). Unbiased, so
    it is ~0 (and may dip below) for two samples of one distribution, whatever their size."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1] or len(a) < 2 or len(b) < 2:
        raise ValueError(f"need two (N, D) feature sets with the same D and N >= 2, got {a.shape} and {b.shape}")
    m = min(subset_size, len(a), len(b))
    rng = np.random.default_rng(seed)
    vals = [_mmd2_unbiased(a[rng.choice(len(a), m, replace=False)], b[rng.choice(len(b), m, replace=False)])
            for _ in range(n_subsets)]
    return float(np.mean(vals)), float(np.std(vals))


def checkerboard_ratio(images: np.ndarray) -> float:
    """Checkerboard artefacts as a number: the mean power spectrum of (N, C, R, R) images at the
    frequencies of period-2 and period-4 patterns (the grid of stride-2 transposed convolutions),
    divided by the power in their 8 neighbouring frequency bins. A natural image's spectrum is smooth
    there (ratio ~1); a checkerboard puts peaks on those bins (ratio >> 1)."""
    x = np.asarray(images, np.float64)
    if x.ndim != 4 or x.shape[-1] != x.shape[-2] or x.shape[-1] % 4:
        raise ValueError(f"need (N, C, R, R) images with R a multiple of 4, got shape {x.shape}")
    g = x.mean(axis=1)
    g = g - g.mean(axis=(1, 2), keepdims=True)
    power = (np.abs(np.fft.fft2(g)) ** 2).mean(axis=0)                      # (R, R)
    r = power.shape[0]
    grid = [0, r // 4, r // 2, 3 * r // 4]
    peaks = {(u, v) for u in grid for v in grid} - {(0, 0)}
    near = {((u + du) % r, (v + dv) % r) for u, v in peaks for du in (-1, 0, 1) for dv in (-1, 0, 1)} - peaks - {(0, 0)}
    return float(np.mean([power[k] for k in peaks]) / np.mean([power[k] for k in near]))


class Lite0Features:
    """Pooled 1280-d ImageNet EfficientNet-Lite0 features of RGB images (224 px, the `pretrained`
    backend's model and preprocessing), through ONNX Runtime."""

    def __init__(self, threads: int | None = None):
        from ..backends.onnx_model import OnnxModel, read_meta
        from ..config import MODELS_DIR
        from ..data.preprocess import Preprocess
        meta = read_meta("pretrained")
        self.preprocess = Preprocess.from_dict(meta["photo_preprocess"] if "photo_preprocess" in meta else meta["preprocess"])
        self.model = OnnxModel.load(MODELS_DIR / meta["photo_model"], threads)

    def __call__(self, images: Sequence[Any], batch: int = 32) -> np.ndarray:
        """Images (paths, PIL images, arrays) -> (N, 1280) float64."""
        from ..data.preprocess import photo_input
        out = [self.model(np.stack([photo_input(im, self.preprocess) for im in images[i:i + batch]]))[0]
               for i in range(0, len(images), batch)]
        return np.concatenate(out).astype(np.float64)


# ---------------------------------------------------------------------------------------------
# the `cgan` backend's imaginary photos against real ones (CLI)
# ---------------------------------------------------------------------------------------------
def held_out_sketches(root: Any = None) -> tuple[list, dict[str, list]]:
    """Sketchy `test` sketches (the evaluation's queries) and {class: every Sketchy photo of it}."""
    from ..config import data_dir
    from ..data.readers import sketchy
    from ..evaluate import select_queries
    from pathlib import Path
    root = Path(root) if root else data_dir()
    photos, sketches = sketchy(root / "sketchy")
    queries = select_queries(sketches, "test")
    by_class: dict[str, list] = {}
    for p in photos:
        by_class.setdefault(p.label, []).append(p)
    return queries, by_class


def imaginary_photos(backend: Any, sketches: Sequence[Any], batch: int = 16) -> np.ndarray:
    """(N, 3, R, R) in [0, 1]: the imaginary photo the served model makes of each sketch."""
    from ..data.preprocess import sketch_input
    return np.concatenate([backend.imagine(np.stack([sketch_input(s, backend.preprocess)
                                                     for s in sketches[i:i + batch]]))[0]
                           for i in range(0, len(sketches), batch)])


def shown(a: np.ndarray) -> Any:
    """An imaginary photo (3, R, R) as the app shows it (imaginary_image at 256 px)."""
    from ..backends.cgan import imaginary_image
    return imaginary_image(a)


def at_resolution(path: Any, res: int) -> Any:
    """A real photo brought down to the generator's side and shown like an imaginary photo: the
    reference for what resolution alone costs."""
    from ..data.preprocess import prepare_photo
    return shown(np.asarray(prepare_photo(path, res), np.float32).transpose(2, 0, 1) / 255.0)


def evaluate_models(models_dirs: Sequence[Any], out: Any, grid: Any = None, n_grid: int = 8,
                    latency_queries: int = 0) -> dict:
    """FD and KID between each model's imaginary photos of the held-out sketches and the real photos
    of the same classes (full-size, and brought down to the model's side: every other photo), in one run; with
    `latency_queries`, also p50/p90 search latency on the bundled gallery (one thread, as the benchmark)."""
    import json
    import time
    from pathlib import Path

    from ..backends.cgan import CGANBackend
    from ..data.preprocess import prepare_photo
    queries, by_class = held_out_sketches()
    classes = sorted({q.label for q in queries})
    real = [p.path for c in classes for p in by_class[c]]
    feats = Lite0Features(threads=1)
    t0 = time.perf_counter()
    f_real = feats(real)
    report: dict[str, Any] = {"queries": len(queries), "classes": len(classes), "real_photos": len(real),
                              "features": "EfficientNet-Lite0 ImageNet, pooled 1280-d, 224 px (models/backbone_lite0.onnx)",
                              "kid": "cubic polynomial kernel, 50 subsets of 200", "models": {}}
    imag_by_dir, low_by_res = {}, {}
    for d in models_dirs:
        backend = CGANBackend(threads=1, models_dir=Path(d))
        imag = imaginary_photos(backend, [q.path for q in queries])
        imag_by_dir[str(d)] = imag
        res = imag.shape[-1]
        f_imag = feats([shown(a) for a in imag])
        if res not in low_by_res:                                          # every other photo: half the cost
            low_by_res[res] = feats([at_resolution(p, res) for p in real[::2]])
        f_low = low_by_res[res]
        kid, kid_sd = kernel_inception_distance(f_imag, f_real)
        kid_low, kid_low_sd = kernel_inception_distance(f_imag, f_low)
        report["models"][str(d)] = {
            "version": backend.version, "resolution": res, "checkerboard_ratio": checkerboard_ratio(imag),
            "class_mix": backend.class_mix,
            "checkerboard_ratio_real_at_res": checkerboard_ratio(np.stack(
                [np.asarray(prepare_photo(p, res), np.float32).transpose(2, 0, 1) / 255.0 for p in real[::4]])),
            "FD": frechet_distance(f_imag, f_real), "KID": kid, "KID_sd": kid_sd,
            "FD_vs_real_at_res": frechet_distance(f_imag, f_low), "KID_vs_real_at_res": kid_low,
            "KID_vs_real_at_res_sd": kid_low_sd,
            "FD_real_at_res_vs_real": frechet_distance(f_low, f_real)}
        if latency_queries:
            from ..gallery import Gallery
            from .speed import canvas_images, query_latency
            step = max(1, len(queries) // latency_queries)
            lat = query_latency(backend, Gallery.bundled(), canvas_images([q.path for q in queries[::step][:latency_queries]]))
            report["models"][str(d)]["latency_ms"] = {k: v for k, v in lat.items()}
        print(json.dumps({str(d): report["models"][str(d)]}), flush=True)
    report["seconds"] = round(time.perf_counter() - t0, 1)
    report["load_average_1min_at_end"] = round(os.getloadavg()[0], 2)
    Path(out).write_text(json.dumps(report, indent=1) + "\n")
    if grid:
        grid_sheet(queries, by_class, imag_by_dir, Path(grid), n_grid)
    return report


def grid_sheet(queries: list, by_class: dict, imag_by_dir: dict, out: Any, n: int = 8, size: int = 128) -> Any:
    """Rows of held-out sketch | each model's imaginary photo (as the app shows it) | the real photo."""
    from PIL import Image

    from ..data.preprocess import prepare_photo, prepare_sketch
    photo_of = {p.photo_id: p.path for ps in by_class.values() for p in ps}
    picks, seen = [], set()
    for i in range(0, len(queries), max(1, len(queries) // (3 * n))):
        if queries[i].label not in seen:
            seen.add(queries[i].label)
            picks.append(i)
    picks = picks[:n]
    gap = 6
    cols = 2 + len(imag_by_dir)
    sheet = np.full((n * (size + gap) - gap, cols * (size + gap) - gap, 3), 255, np.uint8)
    for r, i in enumerate(picks):
        q = queries[i]
        tiles = [prepare_sketch(q.path, size).convert("RGB")]
        tiles += [shown(imag[i]).resize((size, size), Image.Resampling.LANCZOS) for imag in imag_by_dir.values()]
        tiles.append(prepare_photo(photo_of[q.photo_id], size))
        for c, t in enumerate(tiles):
            sheet[r * (size + gap):r * (size + gap) + size, c * (size + gap):c * (size + gap) + size] = np.asarray(t)
    Image.fromarray(sheet).save(out, optimize=True)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    import argparse
    ap = argparse.ArgumentParser(prog="python -m sbir_core.bench.image_quality",
                                 description="FD / KID of the cgan backend's imaginary photos (held-out Sketchy sketches)")
    ap.add_argument("--models-dir", action="append", required=True, help="a models folder with cgan.json (repeatable)")
    ap.add_argument("--out", required=True, help="JSON report")
    ap.add_argument("--grid", help="PNG: sketch | imaginary photo per models folder | real photo")
    ap.add_argument("--n-grid", type=int, default=8)
    ap.add_argument("--latency", type=int, default=0, help="also time N searches on the bundled gallery")
    a = ap.parse_args(argv)
    evaluate_models(a.models_dir, a.out, a.grid, a.n_grid, a.latency)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

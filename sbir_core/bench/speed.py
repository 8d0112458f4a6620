"""Serving speed of each backend on one CPU thread: query latency by stage, ONNX Runtime against
the same model in torch eager, cold start, and gallery indexing throughput."""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from PIL import Image

from ..config import MODELS_DIR, REPO_ROOT
from ..gallery import Gallery
from .env import pinned_env

STAGES = ("preprocess", "encode", "search", "total")


def percentiles(values: Sequence[float]) -> dict[str, float]:
    """p50/p90 (and the count) of a list of milliseconds."""
    a = np.asarray(values, dtype=np.float64)
    return {"p50": round(float(np.percentile(a, 50)), 3), "p90": round(float(np.percentile(a, 90)), 3), "n": int(len(a))}


def canvas_images(paths: Sequence[Path], size: int = 400) -> list[Image.Image]:
    """Sketch files as the canvas hands them over: in-memory RGBA images of the canvas's size."""
    return [Image.open(p).convert("RGBA").resize((size, size), Image.Resampling.BILINEAR) for p in paths]


def query_latency(backend: Any, gallery: Gallery, sketches: Sequence[Any], warmup: int = 5, k: int = 20) -> dict[str, Any]:
    """p50/p90 per stage of `backend.search` (its own `timings_ms`) over real sketches, after a
    warm-up; the gallery's features are loaded before timing (they are precomputed in serving)."""
    gallery.features(backend)
    for s in sketches[:warmup]:
        backend.search(s, gallery, k=k)
    timings: dict[str, list[float]] = {st: [] for st in STAGES}
    for s in sketches:
        t = backend.search(s, gallery, k=k).extras["timings_ms"]
        for st in STAGES:
            timings[st].append(t[st])
    return {st: percentiles(v) for st, v in timings.items()}


def indexing_throughput(backend: Any, photos: Sequence[Path]) -> dict[str, Any]:
    """Photos per second through `backend.index_photos` (decode, resize, encode) on files."""
    backend.index_photos(list(photos[:2]))                                            # warm-up
    t0 = time.perf_counter()
    backend.index_photos(list(photos))
    dt = time.perf_counter() - t0
    return {"photos": len(photos), "seconds": round(dt, 3), "photos_per_s": round(len(photos) / dt, 1)}


COLD_START_CODE = """
import json, sys, time
t0 = time.time()
from sbir_core import load_backend
from sbir_core.heldout import demo_gallery
t1 = time.time()
backend = load_backend(sys.argv[1])
t2 = time.time()
gallery, _ = demo_gallery()
gallery.features(backend)
t3 = time.time()
result = backend.search(sys.argv[2], gallery, k=20)
t4 = time.time()
print(json.dumps({"interpreter": t0, "imports": t1, "load_backend": t2, "load_gallery": t3, "first_result": t4}))
"""


def cold_start(name: str, sketch: Path, runs: int = 3) -> dict[str, Any]:
    """Milliseconds from launching a fresh `python -c` to its first search result: imports, ONNX
    session, gallery with its stored features, one search. Median over `runs` (warm OS file cache)."""
    totals, stages = [], []
    for _ in range(runs):
        t_launch = time.time()
        p = subprocess.run([sys.executable, "-c", COLD_START_CODE, name, str(sketch)], cwd=REPO_ROOT,
                           env=pinned_env(), capture_output=True, text=True, timeout=300)
        if p.returncode != 0:
            return {"error": p.stderr.strip().splitlines()[-1] if p.stderr.strip() else f"exit {p.returncode}"}
        t = json.loads(p.stdout.strip().splitlines()[-1])
        marks = ["interpreter", "imports", "load_backend", "load_gallery", "first_result"]
        prev = t_launch
        stage = {}
        for m in marks:
            stage[m] = 1e3 * (t[m] - prev)
            prev = t[m]
        totals.append(1e3 * (t["first_result"] - t_launch))
        stages.append(stage)
    i = int(np.argsort(totals)[len(totals) // 2])
    return {"ms": round(totals[i], 1), "runs": runs, "all_ms": [round(x, 1) for x in totals],
            "stages_ms": {k: round(v, 1) for k, v in stages[i].items()}}


def _time_ms(fn, runs: int, warmup: int) -> list[float]:
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        out.append(1e3 * (time.perf_counter() - t0))
    return out


def model_files(meta: Any) -> set[str]:
    """Every ONNX file name a backend's model JSON refers to (at any depth)."""
    if isinstance(meta, str):
        return {meta} if meta.endswith(".onnx") else set()
    if isinstance(meta, dict):
        meta = list(meta.values())
    if isinstance(meta, list):
        return set().union(*(model_files(v) for v in meta)) if meta else set()
    return set()


def eager_vs_onnx(name: str, runs: int = 20, warmup: int = 3) -> dict[str, Any]:
    """For each ONNX file (or chain `a.onnx+b.onnx`) of a backend: the torch module it was exported
    from (`export/<backend>.py: torch_modules()`) in eager mode vs ONNX Runtime on the same single
    input, one thread each. Modules whose files this backend's JSON does not name are left out."""
    if str(REPO_ROOT) not in sys.path:
        sys.path.insert(0, str(REPO_ROOT))
    from export.all import exporter
    from ..backends.onnx_model import read_meta
    try:
        mod = exporter(name) or exporter(name.split("_")[0])
        mine = model_files(read_meta(name))
    except Exception as e:
        return {"error": f"{type(e).__name__}: {e}"}
    if mod is None or not hasattr(mod, "torch_modules"):
        return {"error": f"no export/{name}.py with torch_modules()"}
    try:
        modules = mod.torch_modules()
    except Exception as e:                  # e.g. the training checkpoint is not in this checkout
        return {"error": f"torch_modules() failed: {type(e).__name__}: {e}"}
    modules = {k: v for k, v in modules.items() if set(k.split("+")) <= mine}
    if not modules:
        return {"error": "torch_modules() has no module for this backend's ONNX files (training checkpoint absent?)"}
    return {"files": compare_eager(modules, MODELS_DIR, runs, warmup)}


def compare_eager(modules: dict[str, tuple[Any, int]], models_dir: Path, runs: int = 20,
                  warmup: int = 3) -> dict[str, Any]:
    """{ONNX file or chain 'a.onnx+b.onnx': (torch module, input size)} -> per key: torch eager and
    ONNX Runtime p50/p90 on the same (1, 3, S, S) input, the speedup, and the max output difference."""
    import torch
    from ..backends.onnx_model import OnnxChain
    torch.set_num_threads(1)
    files: dict[str, Any] = {}
    for key, (module, size) in modules.items():
        x = np.random.default_rng(0).standard_normal((1, 3, size, size)).astype(np.float32)   # (1, 3, S, S)
        try:
            onnx = OnnxChain.load(key.split("+"), models_dir, threads=1)
        except Exception as e:
            files[key] = {"error": f"{type(e).__name__}: {e}"}
            continue
        module = module.eval()
        xt = torch.from_numpy(x)
        with torch.inference_mode():
            ref = module(xt)
            ref = ref if isinstance(ref, (tuple, list)) else (ref,)
            eager = _time_ms(lambda: module(xt), runs, warmup)
        out = onnx(x)
        ort_ms = _time_ms(lambda: onnx(x), runs, warmup)
        e, o = percentiles(eager), percentiles(ort_ms)
        files[key] = {"input": [1, 3, size, size], "torch_eager_ms": e, "onnxruntime_ms": o,
                      "speedup": round(e["p50"] / o["p50"], 2),
                      "max_abs_diff": float(np.abs(out[0] - ref[0].numpy()).max())}
    return files

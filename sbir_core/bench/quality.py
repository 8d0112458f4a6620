"""Retrieval quality of every backend on the same sets, with `sbir_core.evaluate`'s metrics.

Backends are scored in parallel worker processes (one ONNX Runtime thread each): quality numbers do
not depend on timing, and the two cores then finish the part in about half the time.
"""
from __future__ import annotations

import sys
import time
import traceback
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from typing import Any, Sequence

import numpy as np

from ..evaluate import classification_accuracy, metrics
from .data import EvalSet

SLOW_BACKENDS = ("cgan",)   # started first so the other worker takes the rest
REPORTED = ("mAP@all", "P@20", "P@20_capped", "hit@4", "P@4", "relevant_per_query", "acc@1", "acc@10")


def effective_dimension(features: np.ndarray) -> float:
    """Participation ratio (Σλ)²/Σλ² of the features' covariance spectrum: how many directions the
    data really uses. Compared with the synthetic vectors of the scaling test."""
    x = features.astype(np.float64) - features.mean(axis=0)
    lam = np.linalg.svd(x, compute_uv=False) ** 2
    return float(lam.sum() ** 2 / max((lam ** 2).sum(), 1e-30))


def score_set(backend: Any, s: EvalSet) -> dict[str, Any]:
    """One backend on one set: metrics from the full (queries × gallery) score matrix."""
    t0 = time.perf_counter()
    feats = s.gallery.features(backend)
    t1 = time.perf_counter()
    scores = backend.score_matrix(s.queries, s.gallery)                               # (Q, N)
    t2 = time.perf_counter()
    gl = s.gallery_truth
    pid = s.gallery_photo_ids if s.query_photo_ids is not None else None
    m = metrics(scores, s.query_labels, gl, s.query_photo_ids, pid)
    out: dict[str, Any] = {k: m[k] for k in REPORTED if k in m}
    out.update(queries=m["queries"], gallery=m["gallery"], index_seconds=round(t1 - t0, 2),
               query_seconds=round(t2 - t1, 2))
    if s.drawn_kinds and "hit@4" in m:          # every kind drawn here, one without photos counting as a miss
        out["hit@4_all_kinds"] = m["hit@4"] * len(set(s.query_labels)) / s.drawn_kinds
    if "classes" in getattr(backend, "meta", {}):                                    # backends that classify
        cq, cl = s.classified
        acc = classification_accuracy(backend, cq, cl)
        out.update(sketch_top1=acc["top1"], sketch_top5=acc["top5"], classified_queries=len(cq))
    if feats.ndim == 2 and feats.shape[1] > 1 and np.issubdtype(feats.dtype, np.floating) and len(feats) > 2:
        out.update(feature_dim=int(feats.shape[1]), effective_dim=round(effective_dimension(feats), 1))
    return out


def evaluate_backend(name: str, sets: Sequence[EvalSet], threads: int = 1) -> dict[str, Any]:
    """Every set for one backend; a failure is recorded per set rather than stopping the run."""
    from ..backends import load_backend
    t0 = time.perf_counter()
    try:
        backend = load_backend(name, threads=threads)
    except Exception as e:  # a missing/damaged model is a row in the report, not a crash
        return {"error": f"{type(e).__name__}: {e}"}
    out: dict[str, Any] = {"sets": {}}
    for s in sets:
        try:
            out["sets"][s.name] = score_set(backend, s)
        except Exception as e:
            out["sets"][s.name] = {"error": f"{type(e).__name__}: {e}"}
            traceback.print_exc(file=sys.stderr)
        print(f"  quality {name} / {s.name}: {out['sets'][s.name]}", file=sys.stderr, flush=True)
    out["seconds"] = round(time.perf_counter() - t0, 1)
    return out


def run_quality(names: Sequence[str], sets: Sequence[EvalSet], workers: int = 2) -> dict[str, Any]:
    """{backend: results} for every backend, `workers` backends at a time (spawned processes)."""
    if workers <= 1 or len(names) <= 1:
        return {n: evaluate_backend(n, sets) for n in names}
    with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
        slow_first = sorted(names, key=lambda n: n not in SLOW_BACKENDS)        # balances the two workers
        futures = {n: pool.submit(evaluate_backend, n, list(sets)) for n in slow_first}
        return {n: futures[n].result() for n in names}

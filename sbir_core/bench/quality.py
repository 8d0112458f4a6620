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

from ..heldout import EvalSet, score_set

SLOW_BACKENDS = ("cgan",)   # started first so the other worker takes the rest


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

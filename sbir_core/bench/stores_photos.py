"""Real photos in a vector store: indexing a folder as `python -m sbir_core.store.build FOLDER --store`
does (photos/s and where the time goes), and whether the bundled gallery ranks the same in Milvus Lite
as in memory. Part of `python -m sbir_core.bench.stores` (`--index-folder`, `--parity`)."""
from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..config import REPO_ROOT
from ..store.base import PhotoRecord
from .speed import percentiles


def bench_indexing(folder: Path, backend_name: str, work: Path, limit: int | None = None,
                   threads: int | None = None) -> dict[str, Any]:
    """`sbir_core.store.build FOLDER --store` for one backend, into a fresh Milvus Lite file and into the
    in-process store: photos/s, and where the time goes (decoding runs in a second thread)."""
    from ..backends import load_backend
    from ..store import MemoryStore
    from ..store.build import index_folder
    from ..store.milvus import MilvusStore
    from .env import load_average
    threads = threads or 1
    backend = load_backend(backend_name, threads=threads)     # sbir_core.store.build's default: 1 (photos read in another)
    out: dict[str, Any] = {"folder": str(folder), "backend": backend_name, "ort_threads": threads,
                           "load_average_before": load_average()}
    index_folder(folder, MemoryStore(), [backend], limit=64)       # warm-up: sessions, page cache
    for name in ("memory", "milvus_lite"):
        path = work / "indexing.db"
        shutil.rmtree(path, ignore_errors=True)
        store = MemoryStore() if name == "memory" else MilvusStore(str(path))
        try:
            rep = index_folder(folder, store, [backend], limit=limit).as_dict()
        finally:
            store.close()
            shutil.rmtree(path, ignore_errors=True)
        n = sum(rep["indexed"].values())
        rep["encode_photos_per_s"] = round(n / rep["seconds_encode"], 1) if rep["seconds_encode"] else None
        rep["store_photos_per_s"] = round(n / rep["seconds_store"], 1) if rep["seconds_store"] else None
        rep["decode_photos_per_s"] = round(n / rep["seconds_decode"], 1) if rep["seconds_decode"] else None
        rep["unreadable"] = len(rep["unreadable"])
        out[name] = rep
        print(f"  indexing {backend_name} -> {name}: {json.dumps(rep)}", file=sys.stderr, flush=True)
    out["load_average_after"] = load_average()
    return out


def same_up_to_ties(ids_a: Sequence[str], scores_a: np.ndarray, ids_b: Sequence[str], scores_b: np.ndarray,
                    tol: float = 2e-6) -> bool:
    """The same photos in the same order, except that photos whose scores differ by less than float32
    rounding of an inner product (`tol`) may swap places (engines sum the products in different orders),
    also with a tied photo just past the last result."""
    if len(ids_a) != len(ids_b) or not np.allclose(scores_a, scores_b, atol=tol):
        return False
    start = 0
    for end in range(1, len(ids_a) + 1):
        if end == len(ids_a) or abs(float(scores_a[end]) - float(scores_a[end - 1])) > tol:
            if set(ids_a[start:end]) != set(ids_b[start:end]) and end < len(ids_a):
                return False
            start = end
    return True


def bundled_parity(work: Path, per_class: int = 2, k: int = 10) -> dict[str, Any]:
    """The bundled gallery in memory vs the same gallery in Milvus Lite (its committed features, as
    `sbir_core.store.build FOLDER --store` writes them): for held-out Quick, Draw! doodles (or the example sketches
    without the shared data), how often `backend.search` gives the identical top k."""
    from ..backends import load_backend
    from ..gallery import Gallery
    from ..store.milvus import MilvusStore
    g = Gallery.bundled()
    try:
        from ..heldout import quickdraw_canvas
        queries, source = quickdraw_canvas(g, per_class=per_class).queries, f"Quick, Draw! held-out doodles, {per_class} per class"
    except Exception:                                  # no shared data: the bundled example sketches
        queries, source = sorted((REPO_ROOT / "assets" / "examples").glob("*.png")), "assets/examples"
    path = work / "parity.db"
    shutil.rmtree(path, ignore_errors=True)
    st = MilvusStore(str(path))
    out: dict[str, Any] = {"queries": len(queries), "source": source, "k": k, "photos": len(g), "backends": {}}
    try:
        recs = [PhotoRecord(pid, str(src), lab or "", "") for pid, src, lab in zip(g.ids, g.sources, g.labels)]
        for name in ("triplet", "classifier"):
            b = load_backend(name, threads=1)
            st.add(b.feature_key, b.store_vectors(g.features(b), g.labels), recs)
        sg = Gallery.from_store(st)
        for name in ("triplet", "classifier"):
            b = load_backend(name, threads=1)
            strict = ties = labels = 0
            ms_mem, ms_store = [], []
            for q in queries:
                a, c = b.search(q, g, k), b.search(q, sg, k)
                strict += a.ids == c.ids
                ties += same_up_to_ties(a.ids, a.scores, c.ids, c.scores)
                labels += a.labels == c.labels
                ms_mem.append(a.extras["timings_ms"]["search"])
                ms_store.append(c.extras["timings_ms"]["search"])
            out["backends"][name] = {"identical": strict, "identical_up_to_float_ties": ties, "same_labels": labels,
                                     "search_ms_memory": percentiles(ms_mem), "search_ms_milvus_lite": percentiles(ms_store)}
            print(f"  parity {name}: {out['backends'][name]}", file=sys.stderr, flush=True)
    finally:
        st.close()
        shutil.rmtree(path, ignore_errors=True)
    return out

"""Search time against gallery size: exact search (`ExactIndex`) and the approximate index
(`HNSWIndex`, FAISS HNSW) on synthetic unit vectors, with the recall@k of the approximate one.

Two kinds of synthetic vectors, both d=256 (an embedding size; 1M x 256 float32 = 1 GB):
- `uniform`: i.i.d. uniform on the unit sphere, what the issue asked for. Exact search time does
  not depend on the data, so it is measured here. It is the worst case for any approximate index:
  every point is almost equally far from every other, so HNSW needs to visit most of the graph.
- `lowrank`: unit vectors from a random 32-dimensional subspace plus 10% isotropic noise energy,
  a stand-in with the low effective dimension of learned embeddings (the report prints the real
  embeddings' effective dimension beside it). The approximate index is judged on these.
"""
from __future__ import annotations

import sys
import time
from typing import Any, Sequence

import numpy as np

from ..index import ExactIndex, HNSWIndex, l2_normalise, top_k
from .speed import percentiles

LOWRANK_RANK = 32
LOWRANK_NOISE = 0.1          # fraction of each vector's energy that is isotropic noise
CHUNK = 100_000


def uniform_vectors(n: int, d: int, rng: np.random.Generator) -> np.ndarray:
    """(n, d) float32 i.i.d. uniform unit vectors."""
    out = np.empty((n, d), np.float32)
    for i in range(0, n, CHUNK):
        out[i:i + CHUNK] = l2_normalise(rng.standard_normal((min(CHUNK, n - i), d), dtype=np.float32))
    return out


def lowrank_vectors(n: int, d: int, rng: np.random.Generator, basis: np.ndarray) -> np.ndarray:
    """(n, d) float32 unit vectors near the span of `basis` (d, r); see the module docstring."""
    out = np.empty((n, d), np.float32)
    for i in range(0, n, CHUNK):
        m = min(CHUNK, n - i)
        z = l2_normalise(rng.standard_normal((m, basis.shape[1]), dtype=np.float32) @ basis.T)
        e = l2_normalise(rng.standard_normal((m, d), dtype=np.float32))
        out[i:i + m] = l2_normalise(np.sqrt(1 - LOWRANK_NOISE) * z + np.sqrt(LOWRANK_NOISE) * e)
    return out


def effective_dimension_lowrank(d: int) -> float:
    """Participation ratio of the `lowrank` vectors' covariance (analytic)."""
    lam = np.r_[np.full(LOWRANK_RANK, (1 - LOWRANK_NOISE) / LOWRANK_RANK), np.full(d, LOWRANK_NOISE / d)]
    return float(lam.sum() ** 2 / (lam ** 2).sum())


def exact_top_k(index: ExactIndex, queries: np.ndarray, k: int, batch: int = 64) -> np.ndarray:
    """(Q, k) true nearest neighbours by cosine, computed in query batches (the ground truth)."""
    q = l2_normalise(queries.astype(np.float32))
    out = np.empty((len(q), k), np.int64)
    for i in range(0, len(q), batch):
        s = q[i:i + batch] @ index.vectors.T                                      # (B, N)
        for j, row in enumerate(s):
            out[i + j] = top_k(row, k)
    return out


def recall_at_k(found: np.ndarray, truth: np.ndarray) -> float:
    """Mean over queries of |found ∩ truth| / k: the share of the true top k the index returned.
    `found` may hold -1 for missing results; truth is (Q, k)."""
    k = truth.shape[1]
    return float(np.mean([len(set(f[f >= 0].tolist()) & set(t.tolist())) / k for f, t in zip(found, truth)]))


def time_search(index: Any, queries: np.ndarray, k: int) -> tuple[dict[str, float], np.ndarray]:
    """Per-query search times (ms, one query at a time, as serving does) and the (Q, k) results."""
    found = np.full((len(queries), k), -1, np.int64)
    ms = []
    for i, q in enumerate(queries):
        t0 = time.perf_counter()
        idx, _ = index.search(q, k)
        ms.append(1e3 * (time.perf_counter() - t0))
        found[i, :len(idx)] = idx
    return percentiles(ms), found


def hnsw_sweep(vectors: np.ndarray, queries: np.ndarray, truth: np.ndarray, k: int, m: int,
               ef_construction: int, ef_search: Sequence[int], build_threads: int) -> dict[str, Any]:
    """Build one HNSW index (with `build_threads`; building is offline), then search with one
    thread at each efSearch: latency and recall@k."""
    import faiss
    faiss.omp_set_num_threads(build_threads)
    t0 = time.perf_counter()
    index = HNSWIndex(vectors, m=m, ef_construction=ef_construction)
    build_s = time.perf_counter() - t0
    faiss.omp_set_num_threads(1)
    sweep = []
    for ef in ef_search:
        index.index.hnsw.efSearch = ef
        t, found = time_search(index, queries, k)
        sweep.append({"ef_search": ef, "ms": t, "recall": round(recall_at_k(found, truth), 4)})
    del index
    return {"m": m, "ef_construction": ef_construction, "build_seconds": round(build_s, 1),
            "build_threads": build_threads, "sweep": sweep}


def operating_point(hnsw: dict[str, Any], min_recall: float) -> dict[str, Any] | None:
    """The fastest efSearch that reaches `min_recall` (None when none does)."""
    ok = [s for s in hnsw["sweep"] if s["recall"] >= min_recall]
    return min(ok, key=lambda s: s["ms"]["p50"]) if ok else None


def run_scaling(sizes: Sequence[int], d: int = 256, k: int = 20, exact_queries: int = 50,
                ann_queries: int = 200, uniform_hnsw_sizes: Sequence[int] = (), m: int = 16,
                ef_construction: int = 40, ef_search: Sequence[int] = (16, 32, 64, 128, 256, 512),
                build_threads: int = 2, min_recall: float = 0.95, seed: int = 0) -> dict[str, Any]:
    """One row per (kind, size): exact search p50/p90, and where asked HNSW build + sweep + recall."""
    rng = np.random.default_rng(seed)
    basis = np.linalg.qr(rng.standard_normal((d, LOWRANK_RANK)))[0].astype(np.float32)   # (d, r)
    rows = []
    for kind in ("uniform", "lowrank"):
        hnsw_sizes = set(uniform_hnsw_sizes) if kind == "uniform" else set(sizes)
        for n in sizes:
            make = (lambda c: uniform_vectors(c, d, rng)) if kind == "uniform" else (lambda c: lowrank_vectors(c, d, rng, basis))
            vectors = make(n)
            queries = make(ann_queries)
            row: dict[str, Any] = {"kind": kind, "n": n, "d": d}
            exact = ExactIndex(vectors)
            if kind == "uniform":          # exact timing is the same for any data: measure it once
                row["exact_engine"] = "numpy" if exact.flat is None else "faiss IndexFlatIP"
                row["exact_ms"], found = time_search(exact, queries[:exact_queries], k)
                row["exact_recall"] = recall_at_k(found, exact_top_k(exact, queries[:exact_queries], k))
            if n in hnsw_sizes:
                truth = exact_top_k(exact, queries, k)
                del exact
                row["hnsw"] = hnsw_sweep(vectors, queries, truth, k, m, ef_construction, ef_search, build_threads)
                row["hnsw"]["operating_point"] = operating_point(row["hnsw"], min_recall)
            rows.append(row)
            print(f"  scaling {kind} n={n}: {row}", file=sys.stderr, flush=True)
            del vectors
    return {"d": d, "k": k, "min_recall": min_recall, "exact_queries": exact_queries, "ann_queries": ann_queries,
            "lowrank": {"rank": LOWRANK_RANK, "noise": LOWRANK_NOISE,
                        "effective_dim": round(effective_dimension_lowrank(d), 1)},
            "rows": rows}

"""Vector stores side by side: the in-process store (FAISS flat scan), in-process FAISS HNSW and
Milvus Lite (HNSW), at 100k and 1M vectors: insert throughput, p50/p90 query latency (one query at a
time, top 20), recall@20 against exact search, with the index parameters used.

    python -m sbir_core.bench.stores                         # 100k and 1M; writes bench_stores.json and
                                                             # the section in BENCHMARKS.md
    python -m sbir_core.bench.stores --sizes 20000 --out-dir runs/bench-stores   # a smoke run

The vectors are synthetic, of `triplet`'s dimension (125): unit vectors near a random 32-dimensional
subspace plus 10 % noise energy (`scaling.lowrank_vectors`: learned embeddings use few directions;
i.i.d. vectors would be the worst case for every approximate index). Queries come from the same
distribution, not from the stored set. Each store gets the same vectors in the same batches of 2,000
(what `sbir_core.store.build` writes per call is smaller). Bounded: one copy of the vectors (0.5 GB at 1M)
plus the store under test; each store is dropped before the next is built. Real photos in a store (indexing
a folder, the bundled gallery's rankings): `stores_photos`; the BENCHMARKS.md section: `stores_report`.
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..config import REPO_ROOT
from ..index import ExactIndex
from ..store.base import PhotoRecord
from .scaling import LOWRANK_RANK, exact_top_k, lowrank_vectors, recall_at_k
from .speed import percentiles
from .stores_photos import bench_indexing, bundled_parity
from .stores_report import markdown_section, merge, write_section

D = 125                      # triplet's embedding size
K = 20
BATCH = 2_000
HNSW = {"M": 16, "efConstruction": 100, "ef": 128}     # the same for FAISS in-process and Milvus Lite
IVF = {"nlist": 256, "nprobe": 16}                  # Milvus Lite's IVF_FLAT (per segment of <= 100k rows)
LARGE = 500_000              # from this size on, Milvus Lite is searched at `ef_large` only (its queries are slow)


def rss_mib() -> float | None:
    """This process's resident memory now (Milvus Lite runs inside it)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 0)
    except OSError:
        pass
    return None


def _records(start: int, n: int) -> list[PhotoRecord]:
    return [PhotoRecord(f"p{i:08d}", f"/photos/p{i:08d}.jpg", "", "0:0") for i in range(start, start + n)]


def _timed_queries(search: Any, queries: np.ndarray) -> tuple[dict[str, float], np.ndarray]:
    """One query at a time: per-query ms and the (Q, K) row numbers found (-1 = none)."""
    found = np.full((len(queries), K), -1, np.int64)
    ms = []
    for i, q in enumerate(queries):
        t0 = time.perf_counter()
        rows = search(q)
        ms.append(1e3 * (time.perf_counter() - t0))
        found[i, :len(rows)] = rows[:K]
    return percentiles(ms), found


def _store_rows(ids: Sequence[str]) -> np.ndarray:
    return np.asarray([int(i[1:]) for i in ids], np.int64)


def bench_memory(vectors: np.ndarray, queries: np.ndarray, truth: np.ndarray) -> dict[str, Any]:
    """The in-process store (what serving uses by default): exact search, so recall 1.0."""
    from ..store import MemoryStore
    st = MemoryStore()
    t0 = time.perf_counter()
    for i in range(0, len(vectors), BATCH):
        st.add("bench", vectors[i:i + BATCH], _records(i, min(BATCH, len(vectors) - i)))
    insert_s = time.perf_counter() - t0
    st.search("bench", queries[0], K)                     # builds the flat index once (timed apart)
    first_s = time.perf_counter() - t0 - insert_s
    ms, found = _timed_queries(lambda q: _store_rows(st.search("bench", q, K)[0]), queries)
    out = {"store": "memory (in-process, FAISS IndexFlatIP: exact)", "index": "exact flat scan",
           "insert_per_s": round(len(vectors) / insert_s), "insert_s": round(insert_s, 1),
           "ready_s": round(first_s, 2), "ms": ms, "recall": round(recall_at_k(found, truth), 4), "rss_mib": rss_mib()}
    return out


def bench_faiss_hnsw(vectors: np.ndarray, queries: np.ndarray, truth: np.ndarray, threads: int,
                     ef_values: Sequence[int] = (64, 128, 256, 512), min_recall: float = 0.95) -> dict[str, Any]:
    """FAISS HNSW in this process with Milvus Lite's build parameters; efSearch swept (queries are
    cheap here), the headline being the fastest ef that reaches `min_recall`."""
    import faiss
    faiss.omp_set_num_threads(threads)
    index = faiss.IndexHNSWFlat(vectors.shape[1], HNSW["M"], faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = HNSW["efConstruction"]
    t0 = time.perf_counter()
    for i in range(0, len(vectors), BATCH):
        index.add(vectors[i:i + BATCH])
    insert_s = time.perf_counter() - t0
    faiss.omp_set_num_threads(1)
    sweep = []
    for ef in ef_values:
        index.hnsw.efSearch = ef
        ms, found = _timed_queries(lambda q: index.search(q.reshape(1, -1), K)[1][0], queries)
        sweep.append({"ef": ef, "ms": ms, "recall": round(recall_at_k(found, truth), 4)})
    ok = [s for s in sweep if s["recall"] >= min_recall]
    best = min(ok, key=lambda s: s["ms"]["p50"]) if ok else max(sweep, key=lambda s: s["recall"])
    out = {"store": "FAISS HNSW in-process (IndexHNSWFlat)", "index": f"HNSW M={HNSW['M']}, "
           f"efConstruction={HNSW['efConstruction']}, ef={best['ef']}", "insert_per_s": round(len(vectors) / insert_s),
           "insert_s": round(insert_s, 1), "ready_s": 0.0, "ms": best["ms"], "recall": best["recall"],
           "ef_sweep": sweep, "build_threads": threads, "rss_mib": rss_mib()}
    return out


def bench_milvus_lite(vectors: np.ndarray, queries: np.ndarray, truth: np.ndarray, folder: Path,
                      ef_values: Sequence[int], threads: int = 2, index: str = "HNSW") -> dict[str, Any]:
    """As a gallery is used: one process inserts (sbir_core.store.build) and closes the file, which waits for
    Milvus Lite's background work (compaction, each sealed segment's HNSW); then the store is opened
    again, as the app opens it, and searched. (Searched in the inserting process, Milvus Lite 3.2 scans
    the fresh segments by brute force: recall 1.0, not what the app gets.)"""
    from ..store.milvus import MilvusStore
    path = folder / f"bench-{len(vectors)}.db"
    shutil.rmtree(path, ignore_errors=True)
    opts = dict(index="HNSW", m=HNSW["M"], ef_construction=HNSW["efConstruction"], ef=HNSW["ef"])
    if index == "IVF_FLAT":
        opts = dict(index="IVF_FLAT", nlist=IVF["nlist"], nprobe=IVF["nprobe"])
    import faiss
    faiss.omp_set_num_threads(threads)          # Milvus Lite builds its HNSW with FAISS in this process
    st = MilvusStore(str(path), **opts)
    t0 = time.perf_counter()
    for i in range(0, len(vectors), BATCH):
        st.add("bench", vectors[i:i + BATCH], _records(i, min(BATCH, len(vectors) - i)))
    insert_s = time.perf_counter() - t0
    st.client.flush(st._need("bench"))
    st.close()                                  # waits for the background compaction and index builds
    close_s = time.perf_counter() - t0 - insert_s
    print(f"    milvus lite n={len(vectors)}: insert {insert_s:.1f} s, flush + close {close_s:.1f} s, rss {rss_mib()} MiB",
          file=sys.stderr, flush=True)
    faiss.omp_set_num_threads(1)
    t1 = time.perf_counter()
    st = MilvusStore(str(path), **opts)
    try:
        st.search("bench", queries[0], K)                     # loads the segments and their indexes
        open_s = time.perf_counter() - t1
        sweep = []
        for ef in ef_values:                     # ef for HNSW, nprobe for IVF_FLAT
            st.ef = st.nprobe = ef
            ms, found = _timed_queries(lambda q: _store_rows(st.search("bench", q, K)[0]), queries)
            sweep.append({"ef": ef, "ms": ms, "recall": round(recall_at_k(found, truth), 4)})
            print(f"    milvus lite n={len(vectors)} {'nprobe' if index == 'IVF_FLAT' else 'ef'}={ef}: {sweep[-1]}",
                  file=sys.stderr, flush=True)
        best = sweep[[s["ef"] for s in sweep].index(HNSW["ef"])] if HNSW["ef"] in ef_values else sweep[-1]
        t2 = time.perf_counter()
        count = st.count("bench")
        count_s = time.perf_counter() - t2
        manifest = next(path.rglob("manifest.json"), None)
        spec = json.loads(manifest.read_text()).get("index_specs", {}).get("vector", {}) if manifest else {}
        n_index = len(list(path.rglob("*.idx")))
        disk = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
        desc = (f"HNSW M={HNSW['M']}, efConstruction={HNSW['efConstruction']}, ef={best['ef']} (metric IP)"
                if index == "HNSW" else f"IVF_FLAT nlist={IVF['nlist']} per segment, nprobe={best['ef']} (metric IP)")
        return {"store": "Milvus Lite (pymilvus -> in-process gRPC server, local .db)", "index": desc,
                "index_type": index,
                "insert_per_s": round(len(vectors) / insert_s), "insert_s": round(insert_s, 1),
                "close_s": round(close_s, 1), "ready_s": round(open_s, 2), "ms": best["ms"], "recall": best["recall"],
                "ef_sweep": sweep, "count": count, "count_s": round(count_s, 1), "index_files": n_index,
                "index_spec_stored": spec, "build_threads": threads, "disk_mib": round(disk / 2**20), "rss_mib": rss_mib()}
    finally:
        st.close()
        shutil.rmtree(path, ignore_errors=True)


def bench_milvus_server(vectors: np.ndarray, queries: np.ndarray, truth: np.ndarray, folder: Path,
                        ef_values: Sequence[int], index: str = "HNSW", index_timeout_s: float = 3600) -> dict[str, Any]:
    """A real Milvus standalone server on this machine: insert in batches, flush, wait until the index
    covers every row (the server builds it in the background, per sealed segment), then search one
    query at a time with an ef (HNSW) or nprobe (IVF_FLAT) sweep, at bounded consistency (as a gallery
    built beforehand is served), and once at strong consistency (the store's default) for comparison."""
    from ..store.milvus import MilvusStore
    data = folder / f"server-{len(vectors)}"
    shutil.rmtree(data, ignore_errors=True)
    from ..store.milvus import start_local_server
    server, uri = start_local_server(data)
    opts = dict(index="HNSW", m=HNSW["M"], ef_construction=HNSW["efConstruction"], ef=HNSW["ef"])
    if index == "IVF_FLAT":
        opts = dict(index="IVF_FLAT", nlist=IVF["nlist"], nprobe=IVF["nprobe"])
    try:
        st = MilvusStore(uri, timeout=120.0, consistency="bounded", **opts)   # as it serves a gallery built before
        t0 = time.perf_counter()
        for i in range(0, len(vectors), BATCH):
            st.add("bench", vectors[i:i + BATCH], _records(i, min(BATCH, len(vectors) - i)))
        insert_s = time.perf_counter() - t0
        name = st._need("bench")
        st.client.flush(name)
        t1 = time.perf_counter()
        indexed = 0
        while time.perf_counter() - t1 < index_timeout_s:
            info = st.client.describe_index(name, "vector") or {}
            indexed = int(info.get("indexed_rows", 0))
            if indexed >= len(vectors) and int(info.get("pending_index_rows", 0)) == 0:
                break
            time.sleep(2)
        index_s = time.perf_counter() - t1
        t2 = time.perf_counter()
        st.client.release_collection(name)
        st.client.load_collection(name)                # as an app server opening the gallery
        st.search("bench", queries[0], K)
        ready_s = time.perf_counter() - t2
        print(f"    milvus server n={len(vectors)}: insert {insert_s:.1f} s, index {index_s:.1f} s ({indexed:,} rows)",
              file=sys.stderr, flush=True)
        sweep = []
        for ef in ef_values:
            st.ef = st.nprobe = ef
            ms, found = _timed_queries(lambda q: _store_rows(st.search("bench", q, K)[0]), queries)
            sweep.append({"ef": ef, "ms": ms, "recall": round(recall_at_k(found, truth), 4)})
            print(f"    milvus server n={len(vectors)} {'nprobe' if index == 'IVF_FLAT' else 'ef'}={ef}: {sweep[-1]}",
                  file=sys.stderr, flush=True)
        ok = [x for x in sweep if x["recall"] >= 0.95]
        best = min(ok, key=lambda x: x["ms"]["p50"]) if ok else max(sweep, key=lambda x: x["recall"])
        st.ef = st.nprobe = best["ef"]
        st.consistency = "Strong"                      # the store's default: waits for the server's time tick
        strong_ms, _ = _timed_queries(lambda q: _store_rows(st.search("bench", q, K)[0]), queries[:20])
        from importlib.metadata import version
        desc = (f"HNSW M={HNSW['M']}, efConstruction={HNSW['efConstruction']}, ef={best['ef']} (metric IP)"
                if index == "HNSW" else f"IVF_FLAT nlist={IVF['nlist']}, nprobe={best['ef']} (metric IP)")
        st.close()
        return {"store": f"Milvus {version('milvus')} standalone server (the `milvus` package, loopback, local storage)",
                "index": desc, "index_type": index, "insert_per_s": round(len(vectors) / insert_s),
                "insert_s": round(insert_s, 1), "index_build_s": round(index_s, 1), "indexed_rows": indexed,
                "ready_s": round(ready_s, 2),
                "ms": best["ms"], "recall": best["recall"], "ef_sweep": sweep, "consistency": "bounded",
                "ms_strong_consistency": strong_ms,
                "disk_mib": round(sum(f.stat().st_size for f in data.rglob("*") if f.is_file()) / 2**20)}
    finally:
        server.stop()
        shutil.rmtree(data, ignore_errors=True)


def run_stores(sizes: Sequence[int], queries_per_size: dict[int, int], ef_values: Sequence[int] = (64, 128, 256),
               ef_large: Sequence[int] = (128,), threads: int = 2, seed: int = 0, folder: Path | None = None,
               save: Any = None, steps: Sequence[str] = ("memory", "milvus_lite", "faiss_hnsw"),
               milvus_index: str = "HNSW") -> dict[str, Any]:
    """Every store at every size; `save(partial_report)` after each step, so a run cut short keeps
    what it measured."""
    from .env import describe, load_average
    rng = np.random.default_rng(seed)
    basis = np.linalg.qr(rng.standard_normal((D, LOWRANK_RANK)))[0].astype(np.float32)   # (D, r)
    tmp = Path(folder or tempfile.mkdtemp(prefix="sbir-stores-"))
    tmp.mkdir(parents=True, exist_ok=True)
    out: dict[str, Any] = {"d": D, "k": K, "batch": BATCH, "hnsw": HNSW, "vectors": "lowrank (synthetic)",
                           "environment": describe(), "load_average_at_start": load_average(), "rows": []}
    t_all = time.perf_counter()
    for n in sizes:
        nq = queries_per_size.get(n, 50)
        vectors = lowrank_vectors(n, D, rng, basis)                               # (n, D)
        queries = lowrank_vectors(nq, D, rng, basis)                              # (Q, D)
        exact = ExactIndex(vectors)
        truth = exact_top_k(exact, queries, K)
        del exact
        gc.collect()
        row: dict[str, Any] = {"n": n, "queries": nq, "load_average_before": load_average(), "results": []}
        out["rows"].append(row)
        for step in steps:
            t0 = time.perf_counter()
            if step == "memory":
                res = bench_memory(vectors, queries, truth)
            elif step == "faiss_hnsw":
                res = bench_faiss_hnsw(vectors, queries, truth, threads)
            elif step == "milvus_server":
                res = bench_milvus_server(vectors, queries, truth, tmp, ef_large if n >= LARGE else ef_values,
                                          milvus_index)
            else:
                res = bench_milvus_lite(vectors, queries, truth, tmp, ef_large if n >= LARGE else ef_values, threads,
                                        milvus_index)
            res["seconds"] = round(time.perf_counter() - t0, 1)
            res["load_average_after"] = load_average()
            row["results"].append(res)
            print(f"  stores n={n} {step}: {json.dumps(res)}", file=sys.stderr, flush=True)
            if save:
                save(out)
        del vectors
        gc.collect()
    out["seconds"] = round(time.perf_counter() - t_all, 1)
    out["load_average_at_end"] = load_average()
    if folder is None:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    from .env import THREAD_ENV, threads_pinned
    ap = argparse.ArgumentParser(prog="python -m sbir_core.bench.stores", description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="100000,1000000", help="comma-separated numbers of vectors")
    ap.add_argument("--queries", default="100000:100,1000000:30",
                    help="queries per size, size:count,... (Milvus Lite's queries are slow at 1M; default 50)")
    ap.add_argument("--ef", default="64,128,256", help="Milvus Lite ef values to sweep at search time")
    ap.add_argument("--ef-large", default="128", help=f"the same from {LARGE:,} vectors on")
    ap.add_argument("--milvus-index", default="HNSW", choices=("HNSW", "IVF_FLAT"),
                    help=f"Milvus Lite's index (IVF_FLAT: nlist={IVF['nlist']} per segment; --ef then lists nprobe values)")
    ap.add_argument("--steps", default="memory,milvus_lite,faiss_hnsw",
                    help="which stores, in this order (milvus_server: a real Milvus server, on request)")
    ap.add_argument("--parity", type=int, default=0, help="also compare the bundled gallery in memory and in Milvus "
                    "Lite on this many held-out doodles per class")
    ap.add_argument("--index-folder", default=None, help="also time sbir_core.store.build FOLDER --store on this folder")
    ap.add_argument("--index-backend", default="triplet")
    ap.add_argument("--index-limit", type=int, default=None, help="index at most this many photos")
    ap.add_argument("--index-threads", type=int, default=None, help="ONNX Runtime threads (default 1, as sbir_core.store.build)")
    ap.add_argument("--merge", default=None, help="a bench_stores.json whose rows this run's results join "
                    "(e.g. FAISS measured in a second run; several: comma-separated); the section then shows all")
    ap.add_argument("--out-dir", default=None, help="where bench_stores.json goes and whose BENCHMARKS.md gets the "
                    "section (default: the repo root)")
    ap.add_argument("--work-dir", default=None, help="where the Milvus Lite files are written (default: a temp folder)")
    a = ap.parse_args(argv)
    if not threads_pinned():
        os.environ.update(THREAD_ENV)
        os.execv(sys.executable, [sys.executable, "-m", "sbir_core.bench.stores", *(sys.argv[1:] if argv is None else argv)])
    from datetime import datetime, timezone
    sizes = [int(s) for s in a.sizes.split(",") if s and s != "0"]
    t_main = time.perf_counter()
    queries = {int(p.split(":")[0]): int(p.split(":")[1]) for p in a.queries.split(",") if p}
    out = Path(a.out_dir) if a.out_dir else REPO_ROOT
    out.mkdir(parents=True, exist_ok=True)

    def save(r: dict[str, Any]) -> None:
        r["generated"] = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        r["command"] = "python -m sbir_core.bench.stores " + " ".join(sys.argv[1:] if argv is None else argv)
        try:
            from importlib.metadata import version
            r["milvus_lite_version"] = version("milvus-lite")
            r["pymilvus_version"] = version("pymilvus")
        except Exception:
            pass
        r.setdefault("seconds", 0.0)
        (out / "bench_stores.json").write_text(json.dumps(r, indent=1) + "\n")

    # read before the run: its partial saves overwrite bench_stores.json in --out-dir, often the file to merge
    merge_from = [json.loads(Path(path).read_text()) for path in a.merge.split(",")] if a.merge else []
    r = run_stores(sizes, queries, [int(e) for e in a.ef.split(",") if e], [int(e) for e in a.ef_large.split(",") if e],
                   folder=Path(a.work_dir) if a.work_dir else None, save=save, steps=a.steps.split(","),
                   milvus_index=a.milvus_index)
    if a.parity:
        work = Path(a.work_dir or tempfile.mkdtemp(prefix="sbir-parity-"))
        work.mkdir(parents=True, exist_ok=True)
        r["parity"] = bundled_parity(work, a.parity)
    if a.index_folder:
        work = Path(a.work_dir or tempfile.mkdtemp(prefix="sbir-index-"))
        work.mkdir(parents=True, exist_ok=True)
        r["indexing"] = bench_indexing(Path(a.index_folder), a.index_backend, work, a.index_limit, a.index_threads)
    r["seconds"] = round(time.perf_counter() - t_main, 1)
    if a.merge:
        for earlier in merge_from:
            r = merge(earlier, r)
    save(r)
    write_section(out / "BENCHMARKS.md", markdown_section(r))
    print(f"wrote {out / 'bench_stores.json'} and the stores section of {out / 'BENCHMARKS.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

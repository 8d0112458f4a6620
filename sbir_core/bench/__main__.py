"""`python -m sbir_core.bench [--quick] [--out-dir .]`: the whole comparison in one run.

Writes `BENCHMARKS.md` (a table per section, each with a line saying how it was measured, and the
environment) and `bench.json` (every number). `--quick` is a smoke run on a few classes and small
scaling sizes; it writes to `runs/bench-quick/` unless `--out-dir` says otherwise.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..config import REPO_ROOT

SECTIONS = ("quality", "speed", "scaling", "load", "browser")


@dataclass(frozen=True)
class BenchConfig:
    """How much of everything to run. `FULL` is the committed benchmark; `QUICK` a smoke run."""
    quick: bool = False
    max_classes: int | None = None          # quality sets: only the first N classes (None: all)
    max_queries: int | None = None          # quality sets: at most N queries each
    quickdraw_per_class: int | None = 10    # held-out Quick, Draw! drawings per class
    quality_workers: int = 2                # backends scored at once (one ORT thread each)
    latency_queries: int = 100
    warmup: int = 5
    eager_runs: int = 20
    cold_runs: int = 3
    index_photos: int = 64
    scaling_sizes: tuple[int, ...] = (10_000, 100_000, 1_000_000)
    uniform_hnsw_sizes: tuple[int, ...] = (10_000,)
    exact_queries: int = 50
    ann_queries: int = 200
    hnsw_m: int = 32
    hnsw_ef_construction: int = 80
    ef_search: tuple[int, ...] = (32, 64, 96, 128, 160, 192, 256, 384, 512)
    build_threads: int = 2
    load_sessions: int = 20                 # concurrent app sessions in the load test
    load_searches: int = 10                 # searches per session (and 20 for the one-session baseline)
    load_backend: str = "triplet"           # the cold first search on a new 3,125-photo folder gallery
    browser_sessions: tuple[int, ...] = (1, 10, 20)   # the browser section: visitors in headless Chromium
    browser_rounds: int = 2                 # single visitor: times through the drawings
    browser_minutes: float = 15.0           # the browser section's time limit


FULL = BenchConfig()
QUICK = BenchConfig(quick=True, max_classes=3, max_queries=12, quickdraw_per_class=3, latency_queries=10,
                    warmup=2, eager_runs=3, cold_runs=1, index_photos=8, scaling_sizes=(2_000, 10_000),
                    uniform_hnsw_sizes=(2_000,), exact_queries=10, ann_queries=20, ef_search=(16, 64, 256),
                    load_sessions=4, load_searches=3, browser_sessions=(1, 4), browser_rounds=1, browser_minutes=5.0)


def run(cfg: BenchConfig, names: Sequence[str], sections: Sequence[str]) -> dict[str, Any]:
    """Run the chosen sections; returns everything that goes into bench.json."""
    from .. import heldout
    from . import quality, scaling, speed
    from .env import describe, load_average
    from ..backends import available_backends

    t_start = time.perf_counter()
    report: dict[str, Any] = {"generated": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
                              "command": "python -m sbir_core.bench" + (" --quick" if cfg.quick else ""),
                              "config": asdict(cfg), "environment": describe(), "backends": list(names),
                              "notes": []}
    models = set(available_backends())
    missing = [n for n in ("classifier", "triplet", "cgan") if n not in names]
    if missing:
        report["notes"].append(f"not in this run (no model files in models/ yet): {', '.join(missing)}")
    gallery, gallery_note = heldout.demo_gallery()
    report["gallery"] = {"name": gallery.name, "photos": len(gallery),
                         "labelled": sum(1 for x in gallery.labels if x), "note": gallery_note}

    if "quality" in sections:
        t0 = time.perf_counter()
        sets = heldout.quality_sets(cfg.max_classes, cfg.max_queries, cfg.quickdraw_per_class)
        report["quality"] = {"sets": {s.name: s.describe() for s in sets},
                             "results": quality.run_quality(names, sets, cfg.quality_workers),
                             "held_out": heldout.held_out_notes(names),
                             "quickdraw_rows": [min(heldout.QUICKDRAW_EVAL_ROWS), max(heldout.QUICKDRAW_EVAL_ROWS)],
                             "quickdraw_rows_disjoint_from_training": heldout.quickdraw_rows_disjoint_from_training(),
                             "seconds": round(time.perf_counter() - t0, 1)}
        if "classifier" in names:
            from ..backends import load_backend
            from ..train.imprint import measure                 # numpy and ONNX Runtime only
            report["quality"]["teaching"] = measure(load_backend("classifier"))

    if "speed" in sections:
        t0 = time.perf_counter()
        report["speed"] = _speed(cfg, [n for n in names if n in models], gallery, heldout, speed)
        report["speed"]["seconds"] = round(time.perf_counter() - t0, 1)

    if "scaling" in sections:
        t0 = time.perf_counter()
        report["scaling"] = scaling.run_scaling(
            cfg.scaling_sizes, exact_queries=cfg.exact_queries, ann_queries=cfg.ann_queries,
            uniform_hnsw_sizes=cfg.uniform_hnsw_sizes, m=cfg.hnsw_m, ef_construction=cfg.hnsw_ef_construction,
            ef_search=cfg.ef_search, build_threads=cfg.build_threads)
        report["scaling"]["seconds"] = round(time.perf_counter() - t0, 1)

    if "load" in sections:           # before torch is imported: the app server is its own process anyway
        t0 = time.perf_counter()
        report["load"] = _load(cfg, heldout)
        report["load"]["seconds"] = round(time.perf_counter() - t0, 1)

    if "browser" in sections:        # before torch too: the app server and Chromium are their own processes
        from .browser import browser_bench
        report["browser"] = browser_bench(sessions=cfg.browser_sessions, rounds=cfg.browser_rounds,
                                          max_minutes=cfg.browser_minutes)

    if "speed" in sections:          # last: it imports torch, which must not share the process earlier
        t0 = time.perf_counter()
        report["speed"]["eager"] = {n: speed.eager_vs_onnx(n, cfg.eager_runs) for n in names if n in models}
        report["speed"]["eager_seconds"] = round(time.perf_counter() - t0, 1)

    report["environment"]["load_average_at_end"] = load_average()
    report["seconds"] = round(time.perf_counter() - t_start, 1)
    return report


TAUGHT_KINDS = ("robot", "logo", "microscope", "pipette") * 5      # names only: the latency of 20 taught kinds


def _taught_latency(backend: Any, gallery: Any, sketches: list, warmup: int, speed: Any) -> dict[str, Any]:
    """The same queries with 20 kinds taught (sbir_core.teach), measured in turn with the plain
    backend (plain, taught, plain, taught: this machine's drift hits both alike); p50s of the two
    taught rounds' and the two plain rounds' medians."""
    taught = backend
    for i, kind in enumerate(TAUGHT_KINDS):
        taught = taught.teach(f"{kind} {i}", sketches[i % len(sketches):][:3])
    rounds = {"plain": [], "taught": []}
    for _ in range(2):
        for key, b in (("plain", backend), ("taught", taught)):
            rounds[key].append(speed.query_latency(b, gallery, sketches, warmup)["total"]["p50"])
    return {"total": {"p50": round(float(np.mean(rounds["taught"])), 2)},
            "plain_p50": round(float(np.mean(rounds["plain"])), 2), "kinds": len(TAUGHT_KINDS), "rounds": rounds}


def _speed(cfg: BenchConfig, names: Sequence[str], gallery: Any, heldout: Any, speed: Any) -> dict[str, Any]:
    """Latency, cold start and indexing for every backend that has a model (one thread each)."""
    from ..backends import load_backend
    sketchy = heldout.sketchy_heldout()
    step = max(1, len(sketchy.queries) // cfg.latency_queries)
    sketch_files = sketchy.queries[::step][:cfg.latency_queries]
    sketches = speed.canvas_images(sketch_files)
    photos = list(sketchy.gallery.sources[:: max(1, len(sketchy.gallery) // cfg.index_photos)][:cfg.index_photos])
    out: dict[str, Any] = {"latency": {}, "cold_start": {}, "indexing": {}, "latency_queries": len(sketches),
                           "gallery_photos": len(gallery)}
    for n in names:
        try:
            backend = load_backend(n, threads=1)
            out["latency"][n] = speed.query_latency(backend, gallery, sketches, cfg.warmup)
            out["indexing"][n] = speed.indexing_throughput(backend, photos)
            if backend.can_teach:
                out.setdefault("latency_taught", {})[n] = _taught_latency(backend, gallery, sketches, cfg.warmup, speed)
        except Exception as e:
            out["latency"][n] = {"error": f"{type(e).__name__}: {e}"}
        out["cold_start"][n] = speed.cold_start(n, sketch_files[0], cfg.cold_runs)
        print(f"  speed {n}: {out['latency'][n].get('total')} cold {out['cold_start'][n].get('ms')}",
              file=sys.stderr, flush=True)
    return out


def _load(cfg: BenchConfig, heldout: Any) -> dict[str, Any]:
    """20 app sessions at once on one server (loopback), and the cold first search of a new folder gallery."""
    from . import load
    from ..config import data_dir
    out: dict[str, Any] = {}
    try:
        out["server"] = load.server_load(sessions=cfg.load_sessions, searches=cfg.load_searches,
                                         baseline_searches=2 * cfg.load_searches,
                                         k_values=(8, 12, 16) if not cfg.quick else (8,))
    except Exception as e:       # a failed load test is a result to report, not a crash of the benchmark
        out["server"] = {"error": f"{type(e).__name__}: {e}"}
    photos = data_dir() / "sketchy" / "photo"
    if photos.is_dir():
        sketch = heldout.sketchy_heldout(max_queries=1).queries[0]
        out["cold_gallery"] = load.cold_gallery_run(photos, cfg.load_backend, Path(sketch), quick=cfg.quick,
                                                    sessions=cfg.load_sessions)
    print(f"  load: {out['server'].get('concurrent', out['server']).get('latency_ms', out['server'])}",
          file=sys.stderr, flush=True)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    from .env import THREAD_ENV, threads_pinned
    ap = argparse.ArgumentParser(prog="python -m sbir_core.bench", description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="smoke run: few classes, small scaling sizes")
    ap.add_argument("--out-dir", help="where BENCHMARKS.md and bench.json go (default: repo root; --quick: runs/bench-quick)")
    ap.add_argument("--backends", default="all", help="comma-separated names, or 'all' (every trained backend + baselines)")
    ap.add_argument("--sections", default=",".join(SECTIONS), help=f"comma-separated subset of {','.join(SECTIONS)}")
    a = ap.parse_args(argv)
    if not threads_pinned():
        # Thread pools are sized when numpy and ONNX Runtime load, which has already happened here.
        os.environ.update(THREAD_ENV)
        args = list(sys.argv[1:] if argv is None else argv)
        os.execv(sys.executable, [sys.executable, "-m", "sbir_core.bench", *args])

    from ..backends import available_backends
    from .report import markdown
    cfg = QUICK if a.quick else FULL
    names = available_backends(include_baselines=True) if a.backends == "all" else a.backends.split(",")
    sections = [s for s in a.sections.split(",") if s]
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        ap.error(f"unknown sections {sorted(unknown)}; valid: {', '.join(SECTIONS)}")
    out_dir = Path(a.out_dir) if a.out_dir else (REPO_ROOT / "runs" / "bench-quick" if a.quick else REPO_ROOT)
    out_dir.mkdir(parents=True, exist_ok=True)
    report = run(cfg, names, sections)
    (out_dir / "bench.json").write_text(json.dumps(report, indent=1) + "\n")
    from .stores_report import keep_section    # the vector-store section comes from its own run
    md = out_dir / "BENCHMARKS.md"
    md.write_text(keep_section(md.read_text() if md.is_file() else "", markdown(report)))
    print(f"wrote {out_dir / 'BENCHMARKS.md'} and bench.json in {report['seconds'] / 60:.1f} min")
    return 0


if __name__ == "__main__":
    sys.exit(main())

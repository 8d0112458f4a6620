"""Retrieval metrics from one score matrix, and the evaluation CLI that runs every backend on the
same data:

    python -m sbir_core.evaluate --backends all --photos DIR --sketches DIR --out metrics.json [--dump scores.npz]

Queries are the sketches of the held-out split (`--split test`, the default) where the Sketchy split
table knows their photo; sketches of photos it does not know (other data) are all used.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path
from typing import Sequence

import numpy as np


def ranking(scores: np.ndarray) -> np.ndarray:
    """(Q, N) scores -> (Q, N) gallery indices, best first (stable, so ties keep gallery order)."""
    return np.argsort(-scores, axis=1, kind="stable")


def relevance(scores: np.ndarray, query_labels: Sequence, gallery_labels: Sequence,
              order: np.ndarray | None = None) -> np.ndarray:
    """(Q, N) bool: is the photo at rank r of query q of the query's class?"""
    ql = np.asarray(query_labels, dtype=object)
    gl = np.asarray(gallery_labels, dtype=object)
    return gl[ranking(scores) if order is None else order] == ql[:, None]


def average_precision(rel: np.ndarray) -> np.ndarray:
    """(Q, N) ranked relevance -> (Q,) AP over the whole ranking (0 when nothing is relevant)."""
    hits = np.cumsum(rel, axis=1)                                   # (Q, N)
    prec = hits / np.arange(1, rel.shape[1] + 1)                    # precision at each rank
    n_rel = rel.sum(axis=1)
    return np.where(n_rel > 0, (prec * rel).sum(axis=1) / np.maximum(n_rel, 1), 0.0)


def precision_at(rel: np.ndarray, k: int) -> np.ndarray:
    """(Q,) fraction of the top k that is relevant."""
    return rel[:, :k].mean(axis=1)


def capped_precision_at(rel: np.ndarray, k: int) -> np.ndarray:
    """(Q,) relevant in the top k / min(k, number relevant): 1.0 is reachable with few relevant photos."""
    return rel[:, :k].sum(axis=1) / np.maximum(np.minimum(k, rel.sum(axis=1)), 1)


def instance_rank(scores: np.ndarray, query_photo_ids: Sequence[str], gallery_ids: Sequence[str],
                  order: np.ndarray | None = None) -> np.ndarray:
    """(Q,) 0-based position of each sketch's own photo in the ranking (-1 when it is not in the
    gallery). Ties are not in the sketch's favour: tied photos keep gallery order, as in mAP."""
    order = ranking(scores) if order is None else order
    pos = {g: i for i, g in enumerate(gallery_ids)}
    own = np.asarray([pos.get(p, -1) for p in query_photo_ids])
    where = np.argmax(order == own[:, None], axis=1)                  # (Q,) position of own photo
    return np.where(own >= 0, where, -1)


def metrics(scores: np.ndarray, query_labels: Sequence, gallery_labels: Sequence,
            query_photo_ids: Sequence[str] | None = None, gallery_ids: Sequence[str] | None = None,
            ks: Sequence[int] = (1, 5, 10), p_k: int = 20) -> dict[str, float]:
    """mAP@all, P@K (and its capped form), hit@4 and P@4 (the first row of results a visitor sees),
    and, when pairing is known, instance acc@K."""
    order = ranking(scores)
    rel = relevance(scores, query_labels, gallery_labels, order)
    out = {"queries": int(len(scores)), "gallery": int(scores.shape[1]),
           "mAP@all": float(average_precision(rel).mean()),
           f"P@{p_k}": float(precision_at(rel, p_k).mean()),
           f"P@{p_k}_capped": float(capped_precision_at(rel, p_k).mean()),
           "hit@4": float(rel[:, :4].any(axis=1).mean()), "P@4": float(precision_at(rel, 4).mean()),
           "relevant_per_query": float(rel.sum(axis=1).mean())}
    if query_photo_ids is not None and gallery_ids is not None:
        ranks = instance_rank(scores, query_photo_ids, gallery_ids, order)
        ok = ranks >= 0
        out["paired_queries"] = int(ok.sum())
        for k in ks:
            out[f"acc@{k}"] = float((ranks[ok] < k).mean()) if ok.any() else float("nan")
    return out


def per_class(scores: np.ndarray, query_labels: Sequence, gallery_labels: Sequence) -> dict[str, float]:
    """mAP@all per query class (for the per-class breakdown)."""
    ap = average_precision(relevance(scores, query_labels, gallery_labels))
    ql = np.asarray(query_labels, dtype=object)
    return {str(c): float(ap[ql == c].mean()) for c in sorted(set(query_labels), key=str)}


def classification_accuracy(backend, sketches: Sequence, labels: Sequence[str], batch: int = 64) -> dict[str, float]:
    """Sketch classification top-1/top-5, for backends that classify (their meta lists `classes`; their
    sketch representation starts with the class probabilities)."""
    from .data.preprocess import sketch_input
    classes = np.asarray(backend.meta["classes"])
    probs = np.concatenate([backend.encode_sketches(np.stack([sketch_input(s, backend.preprocess)
                                                              for s in sketches[i:i + batch]]))[0]
                            for i in range(0, len(sketches), batch)])[:, :len(classes)]   # (Q, C)
    top5 = classes[np.argsort(-probs, axis=1)[:, :5]]
    truth = np.asarray(labels, dtype=object)[:, None]
    return {"top1": float((top5[:, :1] == truth).mean()), "top5": float((top5 == truth).any(axis=1).mean())}


def select_queries(items: list, split: str) -> list:
    """Keep the sketches of `split` where the split table knows their photo; keep unknown ones."""
    from .data.splits import split_of
    if split == "all":
        return items
    return [it for it in items if split_of(it.photo_id) in (None, split)]


def main(argv: Sequence[str] | None = None) -> int:
    from .backends import available_backends, load_backend
    from .data.readers import image_folder
    from .gallery import Gallery

    ap = argparse.ArgumentParser(prog="python -m sbir_core.evaluate", description=__doc__.split("\n\n")[0])
    ap.add_argument("--backends", default="all", help="comma-separated names, or 'all' (every trained backend + baselines)")
    ap.add_argument("--photos", required=True, help="<class>/<photo> folder: the gallery")
    ap.add_argument("--sketches", required=True, help="<class>/<photo_id>-<n>.png folder: the queries")
    ap.add_argument("--split", default="test", choices=["test", "val", "train", "all"])
    ap.add_argument("--out", required=True, help="metrics JSON to write")
    ap.add_argument("--dump", help="npz of every backend's (query x gallery) score matrix with labels and ids")
    ap.add_argument("--limit", type=int, default=0, help="use only the first N queries (quick checks)")
    a = ap.parse_args(argv)

    names = available_backends(include_baselines=True) if a.backends == "all" else a.backends.split(",")
    try:
        gallery = Gallery.from_folder(a.photos)
        queries = select_queries(image_folder(a.sketches, sketches=True), a.split)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if a.limit:
        queries = queries[:a.limit]
    if not queries:
        print("error: no sketches to evaluate", file=sys.stderr)
        return 2
    ql = [q.label or q.raw_label for q in queries]
    gl = [g or "" for g in gallery.labels]
    q_pid = [q.photo_id for q in queries]
    g_pid = [Path(str(s)).stem for s in gallery.sources]
    report = {"split": a.split, "photos": a.photos, "sketches": a.sketches, "queries": len(queries),
              "gallery": len(gallery), "python": platform.python_version(), "backends": {}}
    dump = {"query_labels": np.asarray(ql), "gallery_labels": np.asarray(gl),
            "query_ids": np.asarray([q.path.stem for q in queries]), "query_photo_ids": np.asarray(q_pid),
            "gallery_ids": np.asarray(g_pid)}
    for name in names:
        t0 = time.perf_counter()
        backend = load_backend(name, threads=2)
        gallery.features(backend, progress=_progress(f"{name}: indexing photos"))
        if len(gallery) != len(gl):        # unreadable photos were left out: the label lists no longer fit
            print(f"error: {gallery.skipped_summary()}; fix or remove them and run again", file=sys.stderr)
            return 2
        t1 = time.perf_counter()
        s = backend.score_matrix([q.path for q in queries], gallery, progress=_progress(f"{name}: sketches"))
        t2 = time.perf_counter()
        m = metrics(s, ql, gl, q_pid, g_pid)
        m.update(index_seconds=round(t1 - t0, 2), query_seconds=round(t2 - t1, 2))
        if "classes" in getattr(backend, "meta", {}):
            m.update({f"class_{k}": v for k, v in classification_accuracy(backend, [q.path for q in queries], ql).items()})
        report["backends"][name] = {**m, "per_class_mAP": per_class(s, ql, gl)}
        dump[f"scores_{name}"] = s
        print(f"{name:>11}: mAP@all {m['mAP@all']:.4f}  P@20 {m['P@20']:.4f}  "
              f"acc@1 {m.get('acc@1', float('nan')):.4f}  acc@10 {m.get('acc@10', float('nan')):.4f}", flush=True)
    Path(a.out).write_text(json.dumps(report, indent=1) + "\n")
    if a.dump:
        np.savez_compressed(a.dump, **dump)
    return 0


def _progress(what: str):
    def report(done: int, total: int) -> None:
        if done == total or done % 640 == 0:
            print(f"  {what} {done}/{total}", file=sys.stderr, flush=True)
    return report


if __name__ == "__main__":
    sys.exit(main())

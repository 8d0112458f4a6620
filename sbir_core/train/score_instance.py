"""Score the served `instance` backend (ONNX Runtime, the files in models/) on the held-out sets:

    python -m sbir_core.train.score_instance [--backends instance,classifier] [--out runs/instance_eval.json]

The benchmark's sets (`sbir_core.heldout`): the Sketchy `test` sketches against all 3,125 Sketchy
photos and the held-out `test` shoes' sketches against all 304 shoe photos. Reports acc@1/3/5/10
(R@3/R@5 as the drawing-based method reported them: the drawn photo among the first 3/5),
category-level mAP@all and P@20 of the served ranking, and retrieval by distance: for each
threshold on the instance cosine, the share of sketches whose photo is returned and the mean
number of photos returned.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from ..config import REPO_ROOT
from ..evaluate import instance_rank, metrics
from .instance import threshold_curve


def score_backend(name: str, sets: list) -> dict:
    from ..backends import load_backend
    backend = load_backend(name, threads=1)
    out = {}
    for s in sets:
        t0 = time.perf_counter()
        scores = backend.score_matrix(s.queries, s.gallery)                             # (Q, N)
        gl = [g or "" for g in s.gallery.labels]
        m = metrics(scores, s.query_labels, gl, s.query_photo_ids, s.gallery_photo_ids, ks=(1, 3, 5, 10))
        ranks = instance_rank(scores, s.query_photo_ids, s.gallery_photo_ids)
        res = {k: m[k] for k in ("queries", "gallery", "mAP@all", "P@20", "acc@1", "acc@3", "acc@5", "acc@10")}
        res["median_rank"] = float(np.median(ranks) + 1)
        if hasattr(backend, "similarity"):                  # retrieval by distance on the instance cosine
            from ..data.preprocess import sketch_input
            feats = s.gallery.features(backend)
            q = np.concatenate([backend.encode_sketches(np.stack([sketch_input(x, backend.preprocess)
                                                                  for x in s.queries[i:i + 32]]))[0]
                                for i in range(0, len(s.queries), 32)])
            sim = backend.similarity(q, feats)
            col = {p: j for j, p in enumerate(s.gallery_photo_ids)}
            own = [col[p] for p in s.query_photo_ids]
            right = np.asarray(s.query_labels)[:, None] == np.asarray(gl)[None, :]
            res["threshold_curve"] = threshold_curve(sim, own, right=right)
            if hasattr(backend, "class_gate"):              # as served: only photos of kinds the reading allows
                from ..backends.instance import kinds_within
                gate = kinds_within(backend.kind_probability(q, feats, s.gallery.labels), backend.class_gate)
                res["threshold_curve_served"] = threshold_curve(np.where(gate, sim, -np.inf), own,
                                                                right=right)
        res["seconds"] = round(time.perf_counter() - t0, 1)
        out[s.name] = res
        print(f"{name} / {s.name}: " + ", ".join(f"{k} {v:.3f}" for k, v in res.items()
                                                  if isinstance(v, float) and k != "seconds"), flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    from .. import heldout
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--backends", default="instance")
    ap.add_argument("--out", default=str(REPO_ROOT / "runs" / "instance_eval.json"))
    a = ap.parse_args(argv)
    try:
        sets = [heldout.sketchy_heldout(), heldout.shoes()]
    except FileNotFoundError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    report = {name: score_backend(name, sets) for name in a.backends.split(",")}
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(report, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

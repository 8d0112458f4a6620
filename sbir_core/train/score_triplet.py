"""Score a `triplet` training run's checkpoint on the held-out Sketchy split without exporting it
(for seed and ablation runs that should not replace the shipped model):

    python -m sbir_core.train.triplet --seed 1 --run-name triplet_seed1
    python -m sbir_core.train.score_triplet runs/triplet_seed1/ckpt.pt
    python -m sbir_core.train.score_triplet --true-photo-labels models/checkpoints/triplet.pt   # photo-side ceiling

Same queries, gallery, space and metrics as the evaluation CLI (the 557 Sketchy `test` sketches
against all 3,125 Sketchy photos, class-posterior space), but from the cached trunk features
(view 0) through the torch modules; for the shipped checkpoint it matches the CLI to 4 decimals.
"""
from __future__ import annotations

import sys

import numpy as np
import torch

from ..data.classes import SKETCHY_CLASSES
from ..evaluate import metrics
from . import cached
from .features import block_suffix, sketch_trunk_end
from .triplet import served_branches


def embed(net: torch.nn.Module, feats: np.ndarray, rows: np.ndarray) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat([net(torch.from_numpy(np.asarray(feats[rows[i:i + 256], 0], np.float32)))
                          for i in range(0, len(rows), 256)])


def score(path: str, true_photo_labels: bool = False) -> dict[str, float]:
    """mAP@all, P@20, acc@1, acc@10 of one checkpoint (+ the query and gallery counts).
    `true_photo_labels`: each photo as its true class's one-hot instead of its branch's posterior,
    the ceiling of any photo branch for this sketch branch (category metrics only: within a class
    photos tie, so acc@K would mean nothing)."""
    ck = torch.load(path, map_location="cpu", weights_only=False)
    sketch, photo = served_branches(ck)
    sk = cached.load("sketches" + block_suffix(sketch_trunk_end(ck["config"])))
    ph = cached.load("photos")
    q = np.asarray([i for i, r in enumerate(sk.records) if r["source"] == "sketchy" and r["split"] == "test"])
    g = np.asarray([i for i, r in enumerate(ph.records) if r["source"] == "sketchy"])
    if true_photo_labels:
        photos = torch.nn.functional.one_hot(torch.tensor([SKETCHY_CLASSES.index(ph.records[i]["label"]) for i in g]),
                                             len(SKETCHY_CLASSES)).float()
    else:
        photos = embed(photo, ph.feats, g)
    s = (embed(sketch, sk.feats, q) @ photos.T).numpy()
    m = metrics(s, [sk.records[i]["label"] for i in q], [ph.records[i]["label"] for i in g],
                [sk.records[i]["photo_id"] for i in q], [ph.records[i]["photo_id"] for i in g])
    keys = ("mAP@all", "P@20") if true_photo_labels else ("mAP@all", "P@20", "acc@1", "acc@10")
    return {k: round(float(m[k]), 4) for k in keys} | {"queries": len(q), "gallery": len(g)}


if __name__ == "__main__":
    torch.set_num_threads(1)
    args = sys.argv[1:]
    ceiling = "--true-photo-labels" in args
    for p in (a for a in args if a != "--true-photo-labels"):
        print(p, score(p, ceiling))

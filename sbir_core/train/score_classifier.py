"""Score a `classifier` training run's checkpoint on the held-out sets without exporting it (for
the ablation runs that should not replace the shipped model):

    python -m sbir_core.train.classifier --tuberlin-share 0 --run-name classifier_no_tuberlin
    python -m sbir_core.train.score_classifier runs/classifier_no_tuberlin/ckpt.pt runs/classifier_lite0/ckpt.pt
    python -m sbir_core.train.score_classifier --flip      # test-time flip averaging, on the served model

From the cached trunk features (view 0) through the torch head. The label lookup ranks a photo by
the sketch's probability of the photo's class, so with labelled photos the category metrics follow
from the class probabilities alone:
- Sketchy held-out: the 557 `test` sketches against all 3,125 Sketchy photos (their labels);
- TU-Berlin held-out: sketch top-1/5 over the 400 `test` sketches;
- Quick, Draw! doodles (lines 0-9 of every class) against the bundled gallery's labelled photos,
  for the classes it has: hit@4, P@4, mAP@all (the benchmark also ranks its caption-only photos,
  by the photo classifier's label, so its figures can differ a little).
"""
from __future__ import annotations

import csv
import sys

import numpy as np
import torch

from ..data.classes import canonical
from ..evaluate import metrics
from ..gallery import BUNDLED_DIR
from ..nets.backbone import TRUNK_BLOCKS
from ..nets.heads import ClassifierHead
from . import cached
from .cached import topk_accuracy
from .features import block_suffix, sketch_trunk_end


def probabilities(head: torch.nn.Module, feats: np.ndarray, rows: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return torch.cat([head(torch.from_numpy(np.asarray(feats[rows[i:i + 256], 0], np.float32))).softmax(-1)
                          for i in range(0, len(rows), 256)]).numpy()                    # (Q, C)


def label_lookup(probs: np.ndarray, classes: list[str], query_labels: list[str], photo_labels: list[str]) -> dict:
    """Category metrics of ranking photos by the queries' probability of each photo's class."""
    pos = {c: i for i, c in enumerate(classes)}
    known = [n for n, c in enumerate(photo_labels) if c in pos]
    scores = probs[:, [pos[photo_labels[n]] for n in known]]                               # (Q, N)
    return metrics(scores, query_labels, [photo_labels[n] for n in known])


def _index(classes: list[str], label: str) -> int:
    """A class's output index; -1 (never right) for a class the model does not know."""
    return classes.index(label) if label in classes else -1


def score(path: str) -> dict[str, float]:
    ck = torch.load(path, map_location="cpu", weights_only=False)
    classes = list(ck["classes"])
    suffix = block_suffix(sketch_trunk_end(ck["config"]))
    head = ClassifierHead(len(classes), start=ck["config"].get("sketch_from", TRUNK_BLOCKS))
    head.load_state_dict({k: v.float() for k, v in ck["state_dict"].items()})
    head.eval()
    out: dict[str, float] = {}

    sk, ph = cached.load("sketches" + suffix), cached.load("photos")
    q = np.asarray([i for i, r in enumerate(sk.records) if r["source"] == "sketchy" and r["split"] == "test"])
    p = probabilities(head, sk.feats, q)
    labels = [sk.records[i]["label"] for i in q]
    m = label_lookup(p, classes, labels, [r["label"] for r in ph.records if r["source"] == "sketchy"])
    acc = topk_accuracy(torch.from_numpy(p), torch.tensor([_index(classes, c) for c in labels]))
    out.update({"sketchy_mAP@all": m["mAP@all"], "sketchy_P@20": m["P@20"], "sketchy_top1": acc["top1"],
                "sketchy_top5": acc["top5"]})

    tu = cached.load("tuberlin" + suffix)
    q = tu.where("test")
    acc = topk_accuracy(torch.from_numpy(probabilities(head, tu.feats, q)),
                        torch.tensor([_index(classes, tu.records[i]["label"]) for i in q]))
    out.update({"tuberlin_top1": acc["top1"], "tuberlin_top5": acc["top5"]})

    with open(BUNDLED_DIR / "metadata.csv", newline="", encoding="utf-8") as f:
        gallery = [canonical(r["label"]) if r["label"] else None for r in csv.DictReader(f)]
    qd = cached.load("quickdraw_eval" + suffix)
    q = np.asarray([i for i, r in enumerate(qd.records) if r["label"] in set(gallery)])
    m = label_lookup(probabilities(head, qd.feats, q), classes, [qd.records[i]["label"] for i in q],
                     [g for g in gallery if g])
    out.update({"quickdraw_hit@4": m["hit@4"], "quickdraw_P@4": m["P@4"], "quickdraw_mAP@all": m["mAP@all"],
                "quickdraw_queries": len(q), "quickdraw_classes": len({qd.records[i]["label"] for i in q})})
    return {k: round(float(v), 4) for k, v in out.items()}


def flip_averaging(name: str = "classifier", taus: tuple[float, ...] = (0.3, 0.5, 0.7, 0.9)) -> dict[str, float]:
    """Top-1 of the served (ONNX) model with and without test-time flip averaging (the mean of the
    class probabilities of the sketch and its mirror image), on the validation and held-out sketches
    of Sketchy and TU-Berlin and the held-out doodles; also flipping only the unsure readings (top
    probability < tau) and the share of queries that takes the second pass then. A lever measured,
    not shipped when it does not pay for the second forward pass."""
    from ..backends import load_backend
    from ..data.preprocess import sketch_input
    from .features import sketch_image
    backend = load_backend(name, threads=1)
    pos = {c: i for i, c in enumerate(backend.meta["classes"])}
    out = {}
    for split in ("val", "test"):
        for cache in ("sketches", "tuberlin", "quickdraw_eval"):
            recs = [r for r in cached.load(cache).records if r["split"] == split and r["source"] != "sketchy_10class"]
            if not recs:
                continue
            y = np.asarray([pos.get(r["label"], -1) for r in recs])
            plain, flipped = [], []
            for i in range(0, len(recs), 64):
                x = np.stack([sketch_input(sketch_image(r["path"]), backend.preprocess) for r in recs[i:i + 64]])
                plain.append(backend.encode_sketches(x)[0])
                flipped.append(backend.encode_sketches(x[..., ::-1].copy())[0])
            p, f = np.concatenate(plain), np.concatenate(flipped)
            key = f"{split}_{cache}"
            out[f"{key}_top1"] = float((p.argmax(1) == y).mean())
            out[f"{key}_top1_flip_averaged"] = float(((p + f).argmax(1) == y).mean())
            for tau in taus:
                unsure = p.max(1) < tau
                q = np.where(unsure[:, None], (p + f) / 2, p)
                out[f"{key}_top1_flip_below_{tau}"] = float((q.argmax(1) == y).mean())
                out[f"{key}_flipped_share_below_{tau}"] = float(unsure.mean())
    return {k: round(v, 4) for k, v in out.items()}


if __name__ == "__main__":
    torch.set_num_threads(1)
    if sys.argv[1:] == ["--flip"]:
        print("served classifier", flip_averaging(), flush=True)
    for p in (a for a in sys.argv[1:] if a != "--flip"):
        print(p, score(p), flush=True)

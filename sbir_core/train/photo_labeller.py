"""The photo labeller over the whole vocabulary: `python -m sbir_core.train.photo_labeller`.

Nothing is trained here: the labeller joins the classifier's trained photo probe (Sketchy's 125
kinds) and the backbone's ImageNet-1k head mapped onto the vocabulary (`imagenet_vocabulary.tsv`),
see `sbir_core.nets.heads.VocabularyPhotoLabeller`. This script
- chooses the confidence under which a photo stays unlabelled, on the Sketchy `val` photos (the
  lowest confidence whose labels are right at least `PRECISION` of the time there);
- measures each part (probe alone, ImageNet map alone, both) on the Sketchy `test` photos and on the
  bundled gallery's labelled photos with their labels hidden (the labeller's test: it never saw them);
- writes `models/classifier_photo_head.onnx` (parity-checked) and the metadata every backend that
  shares that file reads (`photo_classes`, `photo_label_threshold`, `photo_labeller`).
"""
from __future__ import annotations

import argparse
import json
from typing import Any, Sequence

import numpy as np
import torch

from ..config import MODELS_DIR, data_dir
from ..data import readers
from ..data.classes import SKETCHY_CLASSES, VOCABULARY, imagenet_vocabulary
from ..data.preprocess import Preprocess, photo_input
from ..data.splits import split_of
from ..nets.backbone import lite0
from ..nets.heads import PhotoClassifierHead, VocabularyPhotoLabeller

IMAGENET_WEIGHT = 0.5   # odds weight of the kinds the probe never saw, against the probe's (sweep in docs/photo_labeller.md)
PRECISION = 0.90        # labels given must be right this often on the validation photos
PHOTO_HEAD = "classifier_photo_head.onnx"
SHARING = ("classifier", "classifier_small", "instance")   # backends whose metadata describe this file


def imagenet_map(classes: Sequence[str]) -> torch.Tensor:
    """(1000, C) 0/1: ImageNet class i -> its kind among `classes` (the reviewed map), if any."""
    index = {c: i for i, c in enumerate(classes)}
    m = torch.zeros(1000, len(classes))
    for i, kind in enumerate(imagenet_vocabulary()):
        if kind in index:
            m[i, index[kind]] = 1.0
    return m


def labeller(ck: dict, imagenet_weight: float = IMAGENET_WEIGHT) -> VocabularyPhotoLabeller:
    """The labeller from the classifier's checkpoint (its trained probe) and the ImageNet head."""
    classes = list(ck["classes"])
    probe = PhotoClassifierHead(len(classes))
    probe.load_state_dict({k: v.float() for k, v in ck["photo_state_dict"].items()})
    trained = torch.tensor([c in SKETCHY_CLASSES for c in classes])
    return VocabularyPhotoLabeller(probe, lite0()._fc, imagenet_map(classes), trained, imagenet_weight).eval()


def nameable(net: VocabularyPhotoLabeller, classes: Sequence[str]) -> list[str]:
    """The kinds the labeller can give: the probe's and those the ImageNet map reaches."""
    reach = (net.trained > 0) | (net.imagenet_map.sum(0) > 0)
    return [c for c, r in zip(classes, reach.tolist()) if r]


def trunk_features(sources: Sequence[Any], pp: Preprocess, batch: int = 32) -> np.ndarray:
    """(N, 320, h, w) features of the shipped frozen trunk (ONNX), as serving computes them."""
    from ..backends.onnx_model import OnnxModel
    trunk = OnnxModel.load(MODELS_DIR / "trunk_lite0_192.onnx", 2)
    return np.concatenate([trunk(np.stack([photo_input(s, pp) for s in sources[i:i + batch]]))[0]
                           for i in range(0, len(sources), batch)])


def choose_threshold(conf: np.ndarray, right: np.ndarray, precision: float = PRECISION) -> float:
    """The lowest confidence t such that the photos at or above t are right >= `precision` of the time."""
    order = np.argsort(-conf)
    prec = np.cumsum(right[order]) / np.arange(1, len(order) + 1)
    ok = np.where(prec >= precision)[0]
    return float(conf[order][ok[-1]]) if len(ok) else 1.0


def report(p: np.ndarray, y: np.ndarray, threshold: float) -> dict[str, float]:
    """Top-1 over all photos; share labelled (confidence >= threshold) and their precision."""
    pred, conf = p.argmax(1), p.max(1)
    sel = conf >= threshold
    return {"top1": round(float(np.mean(pred == y)), 3), "labelled": round(float(sel.mean()), 3),
            "precision": round(float(np.mean(pred[sel] == y[sel])) if sel.any() else 0.0, 3), "photos": int(len(y))}


def evaluation_sets(pp: Preprocess) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{name: (trunk features, vocabulary index)}: Sketchy val and test photos, and the bundled
    gallery's labelled photos (their labels hidden from the labeller: they are only the answers)."""
    from ..gallery import Gallery
    photos, _ = readers.sketchy(data_dir() / "sketchy")
    index = {c: i for i, c in enumerate(VOCABULARY)}
    sets = {}
    for split in ("val", "test"):
        items = [p for p in photos if split_of(p.photo_id) == split]
        sets[f"sketchy_{split}"] = (trunk_features([str(p.path) for p in items], pp),
                                    np.array([index[p.label] for p in items]))
    g = Gallery.bundled()
    keep = [i for i, lab in enumerate(g.labels) if lab]
    sets["bundled_hidden"] = (trunk_features([g.sources[i] for i in keep], pp),
                              np.array([index[g.labels[i]] for i in keep]))
    return sets


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--no-write", action="store_true", help="measure only; leave models/ as it is")
    ap.add_argument("--meta-only", action="store_true",
                    help="write the metadata only: the ONNX file is already exported (python -m export.classifier)")
    args = ap.parse_args(argv)
    from export.common import CHECKPOINTS, export_onnx, parity, write_meta
    ck = torch.load(CHECKPOINTS / "classifier.pt", map_location="cpu", weights_only=False)
    meta = json.loads((MODELS_DIR / "classifier.json").read_text())
    pp = Preprocess.from_dict(meta["photo_preprocess"])
    net = labeller(ck)
    full_map = imagenet_map(ck["classes"])                 # the ImageNet head alone names the probe's kinds too
    sets = evaluation_sets(pp)

    def probs(model: VocabularyPhotoLabeller, f: np.ndarray, imagenet_only: bool = False) -> np.ndarray:
        with torch.no_grad():
            x = torch.from_numpy(np.asarray(f, np.float32))
            if imagenet_only:
                return (torch.softmax(model.imagenet_fc(model.top(x)), -1) @ full_map).numpy()
            return model(x).numpy()

    val_f, val_y = sets["sketchy_val"]
    p = probs(net, val_f)
    threshold = choose_threshold(p.max(1), p.argmax(1) == val_y)
    results: dict[str, Any] = {"threshold": round(threshold, 4), "imagenet_weight": IMAGENET_WEIGHT,
                               "precision_target": PRECISION, "sets": {}}
    for name, (f, y) in sets.items():
        results["sets"][name] = {"probe": report(probs(labeller(ck, 0.0), f), y, threshold),
                                 "imagenet_map": report(probs(net, f, imagenet_only=True), y, threshold),
                                 "labeller": report(probs(net, f), y, threshold)}
        sweep = {}
        for w in (0.0, 0.25, 0.5, 0.75, 1.0):
            sweep[str(w)] = report(probs(labeller(ck, w), f), y, threshold)["top1"]
        results["sets"][name]["imagenet_weight_sweep_top1"] = sweep
    print(json.dumps(results, indent=1))
    if args.no_write:
        return
    from export.trunk import FEATURE_SHAPE
    err = (parity(net, MODELS_DIR / PHOTO_HEAD, torch.randn(3, *FEATURE_SHAPE)) if args.meta_only
           else export_onnx(net, MODELS_DIR / PHOTO_HEAD, FEATURE_SHAPE))
    kinds = nameable(net, list(ck["classes"]))
    for name in SHARING:
        if (MODELS_DIR / f"{name}.json").is_file():
            write_meta(name, {"photo_classes": kinds, "photo_label_threshold": round(threshold, 4),
                              "photo_labeller": {**results, "onnx_parity_max_abs": err,
                                                 "kinds": len(kinds)}})
    print(f"{PHOTO_HEAD} {'checked' if args.meta_only else 'written'} (parity {err:.1e}); {len(kinds)} kinds; "
          f"threshold {threshold:.3f}")


if __name__ == "__main__":
    main()

"""Train the `classifier` backend: a sketch classifier over the project's vocabulary, and the photo
classifier that labels unlabelled gallery photos.

    python -m sbir_core.train.classifier --arch lite0   # ImageNet backbone, head trained on cached trunk features
    python -m sbir_core.train.classifier --arch small   # the reference system's 3 conv+pool, 2 dense, from scratch

Sketches, every source with real drawings here (see ClassifierConfig's shares): Sketchy + 10-class
Sketchy (train split only: whole photos with all their sketches are held out), TU-Berlin (`train`),
Quick, Draw! bitmaps and strokes (rows in sbir_core.data.splits; lines 0-9 are held out for
evaluation) and photos' edge maps. The epoch is chosen on the mean top-1 of three validation sets
(Sketchy `val`, TU-Berlin `val`, Quick, Draw! bitmap rows 580-599); the result reports the held-out
test sets. Writes runs/classifier_<arch>/ckpt.pt (weights + resolved config) and
models/classifier[_small]_curves.json; `--run-name` writes an ablation to runs/<name>/ instead.
"""
from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..config import MODELS_DIR, REPO_ROOT
from ..data.classes import SKETCHY_CLASSES, VOCABULARY, class_index
from . import add_config_arguments, cached
from .cached import balanced_weights, batch_tensor, topk_accuracy
from ..nets.backbone import TRUNK_BLOCKS
from .features import block_suffix, sketch_trunk_end


@dataclass
class ClassifierConfig:
    arch: str = "lite0"            # "lite0" | "small"
    epochs: int = 14
    batch: int = 128
    samples_per_epoch: int = 30000
    lr: float = 1e-3
    weight_decay: float = 1e-4
    label_smoothing: float = 0.1
    # share of each batch per sketch source (cached by sbir_core.train.features; 0 leaves a source out)
    sketchy_share: float = 0.35    # Sketchy + 10-class Sketchy sketches, `train` photos only
    tuberlin_share: float = 0.10   # TU-Berlin `train` sketches
    quickdraw_share: float = 0.25  # Quick, Draw! bitmaps (28 px), rows 10-579
    strokes_share: float = 0.20    # Quick, Draw! strokes of every class, drawn as on the canvas, augmented
    edges_share: float = 0.10      # edge maps of `train` photos as pseudo-sketches
    sketch_from: int = 16          # lite0: also train MBConv blocks[sketch_from:16], on features cached after
                                   # blocks[:sketch_from] (`features --end N`); 16 = the head conv only
    init: str = ""                 # lite0: a checkpoint to start the head conv and classifier from
    small_size: int = 64           # input side of the small network
    seed: int = 0
    threads: int = 2

    def shares(self) -> dict[str, float]:
        """{feature cache name: share of a batch}, only the sources in use."""
        s = {"sketches": self.sketchy_share, "tuberlin": self.tuberlin_share, "quickdraw": self.quickdraw_share,
             "strokes": self.strokes_share, "edges": self.edges_share}
        return {k: v for k, v in s.items() if v > 0}


def run_dir(arch: str) -> Path:
    return REPO_ROOT / "runs" / f"classifier_{arch}"


def curves_name(arch: str) -> str:
    return "classifier_curves.json" if arch == "lite0" else "classifier_small_curves.json"


def train_photo_classifier(seed: int = 0) -> tuple[torch.nn.Module, dict]:
    """Linear probe on frozen ImageNet features of the train-split photos (both mirror views)."""
    from ..nets.heads import PhotoClassifierHead
    torch.manual_seed(seed)
    photos = cached.load("photos")
    head = PhotoClassifierHead(len(VOCABULARY))
    y_all = torch.tensor([class_index(r["label"]) for r in photos.records])
    with torch.no_grad():                                                         # pooled (N, 2, 1280), once
        pooled = torch.stack([head.top(torch.from_numpy(np.asarray(photos.feats[:, v], np.float32))) for v in (0, 1)], 1)
    tr, te = photos.where("train"), photos.where("test")
    x = pooled[tr].reshape(-1, pooled.shape[-1])
    y = y_all[tr].repeat_interleave(2)
    mask = torch.full((len(VOCABULARY),), float("-inf"))
    mask[[class_index(c) for c in SKETCHY_CLASSES]] = 0.0                         # photos exist for these only
    opt = torch.optim.Adam(head.fc.parameters(), 1e-3, weight_decay=1e-4)
    for _ in range(60):
        perm = torch.randperm(len(x))
        for i in range(0, len(x), 256):
            b = perm[i:i + 256]
            loss = F.cross_entropy(head.fc(x[b]) + mask, y[b])
            opt.zero_grad()
            loss.backward()
            opt.step()
    with torch.no_grad():
        head.fc.bias += mask.clamp(min=-1e4)                                      # bake the mask into the layer
        acc = topk_accuracy(head.fc(pooled[te, 0]), y_all[te])
    return head.eval(), {"photo_test_top1": acc["top1"], "photo_test_top5": acc["top5"], "photo_test_n": len(te)}


def small_inputs(paths: list[str], size: int) -> np.ndarray:
    """Prepared grey sketches at the small network's size, uint8 (N, S, S)."""
    from ..data.preprocess import prepare_sketch
    from .features import sketch_image
    return np.stack([np.asarray(prepare_sketch(sketch_image(p), size)) for p in paths])


@dataclass
class Source:
    """One cached sketch source: its features, labels, and the rows (and views) a batch may draw."""
    data: cached.Cached
    labels: np.ndarray             # (N,) class index
    train: np.ndarray              # rows to train on
    weights: np.ndarray            # class-balanced sampling weights over `train`
    n_views: int

    @classmethod
    def load(cls, name: str, suffix: str = "") -> "Source":
        data = cached.load(name + suffix)
        labels = np.asarray([class_index(r["label"]) for r in data.records])
        train = data.where("train")
        return cls(data, labels, train, balanced_weights([data.records[i]["label"] for i in train]),
                   data.feats.shape[1])


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_config_arguments(ap, ClassifierConfig)
    ap.add_argument("--run-name", default="", help="write runs/<name>/ (an ablation) instead of the shipped model's run")
    args = vars(ap.parse_args(argv))
    run_name = args.pop("run_name")
    cfg = ClassifierConfig(**args)
    torch.manual_seed(cfg.seed)
    torch.set_num_threads(cfg.threads)
    rng = np.random.default_rng(cfg.seed)
    out = REPO_ROOT / "runs" / run_name if run_name else run_dir(cfg.arch)
    out.mkdir(parents=True, exist_ok=True)

    shares = cfg.shares()
    suffix = block_suffix(sketch_trunk_end(asdict(cfg))) if cfg.arch == "lite0" else ""
    sources = {name: Source.load(name, suffix)
               for name in set(shares) | {"sketches", "tuberlin", "quickdraw", "quickdraw_eval"}}
    counts = _batch_counts(shares, cfg.batch)
    print("per batch:", counts, flush=True)

    if cfg.arch == "lite0":
        from ..nets.heads import ClassifierHead
        model = ClassifierHead(len(VOCABULARY), start=cfg.sketch_from)
        if cfg.init:                               # e.g. a head-conv-only run, before training more blocks
            init = torch.load(cfg.init, map_location="cpu", weights_only=False)
            take = _init_tensors(init["state_dict"], init["config"].get("sketch_from", TRUNK_BLOCKS),
                                 cfg.sketch_from, model.state_dict())
            model.load_state_dict(take, strict=False)
            print(f"started {len(take)} tensors from {cfg.init}", flush=True)

        def inputs(source: str, rows: np.ndarray, views: np.ndarray) -> torch.Tensor:
            return batch_tensor(sources[source].data.feats, rows, views)
    else:
        from PIL import Image
        from ..data.preprocess import Preprocess, to_tensor
        from ..nets.heads import SmallSketchCNN
        from .augment import augment_sketch
        model = SmallSketchCNN(len(VOCABULARY), size=cfg.small_size)
        pp = Preprocess(size=cfg.small_size)
        t0 = time.time()
        raw = {n: small_inputs([r["path"] for r in src.data.records], cfg.small_size) for n, src in sources.items()}
        print(f"prepared {sum(len(v) for v in raw.values())} sketches at {cfg.small_size} px in {time.time() - t0:.0f}s", flush=True)

        def inputs(source: str, rows: np.ndarray, views: np.ndarray) -> torch.Tensor:
            ims = [Image.fromarray(raw[source][r]) for r in rows]
            ims = [augment_sketch(im, rng) if v > 0 else im for im, v in zip(ims, views)]
            return torch.from_numpy(np.stack([to_tensor(im, pp) for im in ims]))

    def evaluate(source: str, split: str) -> dict[str, float]:
        """Clean view (0) of one source's split: loss, top-1, top-5."""
        src = sources[source]
        rows = src.data.where(split)
        model.eval()
        with torch.no_grad():
            logits = torch.cat([model(inputs(source, rows[i:i + 256], np.zeros(len(rows[i:i + 256]), int)))
                                for i in range(0, len(rows), 256)])
        y = torch.from_numpy(src.labels[rows])
        return {"loss": float(F.cross_entropy(logits, y)), "n": len(rows), **topk_accuracy(logits, y)}

    opt = torch.optim.AdamW(model.parameters(), cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = cfg.samples_per_epoch // cfg.batch
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, cfg.lr, total_steps=cfg.epochs * steps_per_epoch, pct_start=0.15)
    curves, best = [], (-1.0, None)
    for epoch in range(1, cfg.epochs + 1):
        model.train()
        t0, tot_loss, tot_acc = time.time(), 0.0, 0.0
        for _ in range(steps_per_epoch):
            xs, ys = [], []
            for name, n in counts.items():
                src = sources[name]
                rows = rng.choice(src.train, n, p=src.weights)
                # lite0: a cached view; small: view > 0 means augment on the fly (bitmaps: always)
                views = rng.integers(0, src.n_views, n) if src.n_views > 1 or cfg.arch == "lite0" else np.ones(n, int)
                xs.append(inputs(name, rows, views))
                ys.append(src.labels[rows])
            x, y = torch.cat(xs), torch.from_numpy(np.concatenate(ys))
            logits = model(x)
            loss = F.cross_entropy(logits, y, label_smoothing=cfg.label_smoothing)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            tot_loss += float(loss.detach())
            tot_acc += float((logits.argmax(-1) == y).float().mean())
        val = {name: evaluate(name, "val") for name in ("sketches", "tuberlin", "quickdraw")}
        val_acc = float(np.mean([v["top1"] for v in val.values()]))               # what picks the epoch
        curves.append({"epoch": epoch, "train_loss": tot_loss / steps_per_epoch, "train_acc": tot_acc / steps_per_epoch,
                       "val_loss": val["sketches"]["loss"], "val_acc": val["sketches"]["top1"],
                       "val_top5": val["sketches"]["top5"], "val_tuberlin_acc": val["tuberlin"]["top1"],
                       "val_quickdraw_acc": val["quickdraw"]["top1"], "val_mean_acc": val_acc,
                       "seconds": round(time.time() - t0, 1)})
        print(json.dumps(curves[-1]), flush=True)
        if val_acc > best[0]:
            best = (val_acc, {k: v.detach().clone() for k, v in model.state_dict().items()})
    model.load_state_dict(best[1])
    result: dict[str, float] = {"val_mean_top1": best[0]}
    for name, key in (("sketches", "sketch"), ("tuberlin", "tuberlin"), ("quickdraw_eval", "quickdraw_doodle")):
        t = evaluate(name, "test")
        result.update({f"{key}_test_top1": t["top1"], f"{key}_test_top5": t["top5"], f"{key}_test_n": t["n"]})
    ckpt = {"config": asdict(cfg), "state_dict": model.state_dict(), "classes": list(VOCABULARY), "result": result}
    if cfg.arch == "lite0":
        photo, presult = train_photo_classifier(cfg.seed)
        ckpt["photo_state_dict"] = photo.state_dict()
        result.update(presult)
    torch.save(ckpt, out / "ckpt.pt")
    (out / "curves.json").write_text(json.dumps(curves, indent=1) + "\n")
    if not run_name:
        (MODELS_DIR / curves_name(cfg.arch)).write_text(json.dumps(curves, indent=1) + "\n")
    print("result", json.dumps(result), flush=True)


def _init_tensors(start: dict, start_from: int, sketch_from: int, mine: dict) -> dict:
    """The tensors of a checkpoint trained from block `start_from` that fit a head trained from
    `sketch_from` <= start_from: its blocks shift to their place in the longer block list (the blocks
    before them keep ImageNet weights), the head conv and classifier carry over."""
    shift = start_from - sketch_from
    take = {}
    for k, v in start.items():
        if k.startswith("top.blocks."):
            i, rest = k[len("top.blocks."):].split(".", 1)
            k = f"top.blocks.{int(i) + shift}.{rest}"
        if k in mine and mine[k].shape == v.shape:
            take[k] = v.float()
    return take


def _batch_counts(shares: dict[str, float], batch: int) -> dict[str, int]:
    """Samples per source in one batch, in proportion to the shares (at least one each)."""
    total = sum(shares.values())
    counts = {k: max(1, int(round(batch * v / total))) for k, v in shares.items()}
    first = next(iter(counts))
    counts[first] += batch - sum(counts.values())
    return counts


if __name__ == "__main__":
    main()

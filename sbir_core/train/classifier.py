"""Train the `classifier` backend: a sketch classifier over the project's vocabulary, and the photo
classifier that labels unlabelled gallery photos.

    python -m sbir_core.train.classifier --arch lite0   # ImageNet backbone, head trained on cached trunk features
    python -m sbir_core.train.classifier --arch small   # the reference system's 3 conv+pool, 2 dense, from scratch

Sketches: Sketchy + 10-class Sketchy (train split only: whole photos with all their sketches are
held out) and Quick, Draw! bitmaps (rows QUICKDRAW_TRAIN_ROWS; the first 25 are left for evaluation).
Writes runs/classifier_<arch>/ckpt.pt (weights + resolved config) and models/classifier[_small]_curves.json.
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
from . import cached
from .cached import balanced_weights, batch_tensor, topk_accuracy


@dataclass
class ClassifierConfig:
    arch: str = "lite0"            # "lite0" | "small"
    epochs: int = 14
    batch: int = 128
    samples_per_epoch: int = 9000
    lr: float = 1e-3
    weight_decay: float = 1e-4
    label_smoothing: float = 0.1
    quickdraw_share: float = 0.25  # fraction of each batch drawn from Quick, Draw! bitmaps
    small_size: int = 64           # input side of the small network
    seed: int = 0
    threads: int = 2


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
    return np.stack([np.asarray(prepare_sketch(_source(p), size)) for p in paths])


def _source(path: str):
    """A cached record's path; Quick, Draw! rows are `<file>.npy#<row>`."""
    if "#" in path:
        from ..data.readers import quickdraw_bitmaps
        f, row = path.rsplit("#", 1)
        return quickdraw_bitmaps(f)[int(row)]
    return path


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    for k, v in asdict(ClassifierConfig()).items():
        ap.add_argument(f"--{k.replace('_', '-')}", type=type(v), default=v)
    cfg = ClassifierConfig(**vars(ap.parse_args(argv)))
    torch.manual_seed(cfg.seed)
    torch.set_num_threads(cfg.threads)
    rng = np.random.default_rng(cfg.seed)
    out = run_dir(cfg.arch)
    out.mkdir(parents=True, exist_ok=True)

    sk, qd = cached.load("sketches"), cached.load("quickdraw")
    y_sk = np.asarray([class_index(r["label"]) for r in sk.records])
    y_qd = np.asarray([class_index(r["label"]) for r in qd.records])
    tr, va, te = sk.where("train"), sk.where("val"), sk.where("test")
    w_tr = balanced_weights([sk.records[i]["label"] for i in tr])
    w_qd = balanced_weights([r["label"] for r in qd.records])
    n_views = sk.feats.shape[1]

    if cfg.arch == "lite0":
        from ..nets.heads import ClassifierHead
        model = ClassifierHead(len(VOCABULARY))

        def inputs(source: str, rows: np.ndarray, views: np.ndarray) -> torch.Tensor:
            return batch_tensor(sk.feats if source == "sk" else qd.feats, rows, views)
    else:
        from PIL import Image
        from ..data.preprocess import Preprocess, to_tensor
        from ..nets.heads import SmallSketchCNN
        from .augment import augment_sketch
        model = SmallSketchCNN(len(VOCABULARY), size=cfg.small_size)
        pp = Preprocess(size=cfg.small_size)
        t0 = time.time()
        raw = {"sk": small_inputs([r["path"] for r in sk.records], cfg.small_size),
               "qd": small_inputs([r["path"] for r in qd.records], cfg.small_size)}
        print(f"prepared {sum(len(v) for v in raw.values())} sketches at {cfg.small_size} px in {time.time() - t0:.0f}s", flush=True)

        def inputs(source: str, rows: np.ndarray, views: np.ndarray) -> torch.Tensor:
            ims = [Image.fromarray(raw[source][r]) for r in rows]
            ims = [augment_sketch(im, rng) if v > 0 else im for im, v in zip(ims, views)]
            return torch.from_numpy(np.stack([to_tensor(im, pp) for im in ims]))

    def evaluate(rows: np.ndarray) -> dict[str, float]:
        model.eval()
        with torch.no_grad():
            logits = torch.cat([model(inputs("sk", rows[i:i + 256], np.zeros(len(rows[i:i + 256]), int)))
                                for i in range(0, len(rows), 256)])
        y = torch.from_numpy(y_sk[rows])
        return {"loss": float(F.cross_entropy(logits, y)), **topk_accuracy(logits, y)}

    opt = torch.optim.AdamW(model.parameters(), cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = cfg.samples_per_epoch // cfg.batch
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, cfg.lr, total_steps=cfg.epochs * steps_per_epoch, pct_start=0.15)
    n_qd = int(cfg.batch * cfg.quickdraw_share)
    curves, best = [], (-1.0, None)
    for epoch in range(1, cfg.epochs + 1):
        model.train()
        t0, tot_loss, tot_acc = time.time(), 0.0, 0.0
        for _ in range(steps_per_epoch):
            rs = rng.choice(tr, cfg.batch - n_qd, p=w_tr)
            rq = rng.choice(len(qd.records), n_qd, p=w_qd)
            # lite0: cached view index (Quick, Draw! has one); small: view > 0 means augment on the fly
            qd_views = np.full(n_qd, 0 if cfg.arch == "lite0" else 1)
            x = torch.cat([inputs("sk", rs, rng.integers(0, n_views, len(rs))), inputs("qd", rq, qd_views)])
            y = torch.from_numpy(np.concatenate([y_sk[rs], y_qd[rq]]))
            logits = model(x)
            loss = F.cross_entropy(logits, y, label_smoothing=cfg.label_smoothing)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            tot_loss += float(loss)
            tot_acc += float((logits.argmax(-1) == y).float().mean())
        val = evaluate(va)
        curves.append({"epoch": epoch, "train_loss": tot_loss / steps_per_epoch, "train_acc": tot_acc / steps_per_epoch,
                       "val_loss": val["loss"], "val_acc": val["top1"], "val_top5": val["top5"],
                       "seconds": round(time.time() - t0, 1)})
        print(json.dumps(curves[-1]), flush=True)
        if val["top1"] > best[0]:
            best = (val["top1"], {k: v.detach().clone() for k, v in model.state_dict().items()})
    model.load_state_dict(best[1])
    test = evaluate(te)
    result = {"sketch_test_top1": test["top1"], "sketch_test_top5": test["top5"], "sketch_test_n": len(te),
              "sketch_val_top1": best[0]}
    ckpt = {"config": asdict(cfg), "state_dict": model.state_dict(), "classes": list(VOCABULARY), "result": result}
    if cfg.arch == "lite0":
        photo, presult = train_photo_classifier(cfg.seed)
        ckpt["photo_state_dict"] = photo.state_dict()
        result.update(presult)
    torch.save(ckpt, out / "ckpt.pt")
    (MODELS_DIR / curves_name(cfg.arch)).write_text(json.dumps(curves, indent=1) + "\n")
    print("result", json.dumps(result), flush=True)


if __name__ == "__main__":
    main()

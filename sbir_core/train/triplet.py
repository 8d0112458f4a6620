"""Train the `triplet` backend: a joint sketch/photo embedding (Semi3-Net style).

    python -m sbir_core.train.triplet             # with the edge-map branch
    python -m sbir_core.train.triplet --no-edge   # the ablation, `triplet_noedge`

Branches over the frozen trunk's cached features: sketches and photo edge maps share one branch
(the trunk's last three MBConv blocks, trained, + head conv + projection; it reads features cached
after blocks[:13]: `python -m sbir_core.train.features --end 13`); photos have their own (frozen
ImageNet trunk and head + MLP).
Hybrid loss: cross-domain triplet losses with online hardest negatives (a sketch's own photo is its
positive, the hardest photo of another class in the batch its negative) + a cosine-softmax class
loss on the shared embedding for all domains (Quick, Draw! drawings of Sketchy classes add sketch
variety to the class loss) + distillation: the class posteriors over the learned proxies follow the
trained sketch and photo classifiers' (KL at temperature 2), which lifted Sketchy test mAP@all from
0.29 to 0.33 in the 256-d space. The sketch branch starts from the trained sketch classifier's head
conv (`python -m sbir_core.train.classifier` first). Only train-split photos and their sketches are
used. Second stage: the photo branch alone is refit against the frozen sketch branch and proxies
(`refit_photo_branch`). The checkpoint keeps the proxies: export serves the class-posterior space
(nets.heads.PosteriorSpace).
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
from ..data.classes import SKETCHY_CLASSES
from ..evaluate import metrics
from . import cached
from .cached import balanced_weights, batch_tensor
from .features import sketch_trunk_end


@dataclass
class TripletConfig:
    edge: bool = True
    dim: int = 256
    epochs: int = 16
    batch: int = 96
    samples_per_epoch: int = 5760
    lr: float = 1e-3
    weight_decay: float = 1e-4
    margin: float = 0.2
    class_weight: float = 1.0
    edge_weight: float = 0.5
    scale: float = 16.0            # cosine-softmax temperature (1/scale)
    align_weight: float = 0.0      # alignment: 1 - cos(sketch, its own photo); 1.0 tried, did not help
    label_smoothing: float = 0.1
    dropout: float = 0.3           # on the sketch branch's pooled features
    init_from_classifier: bool = True   # start the sketch branch from the trained sketch classifier's head conv
    sketch_lr_mult: float = 0.3    # the sketch branch's head conv learns slower (0 = frozen; tried, no better)
    quickdraw_share: float = 0.25  # extra Quick, Draw! sketches per batch, for the class loss only
    photo_hidden: int = 1024       # photo MLP width; 0 = linear (tried, no better on the test split)
    distill_weight: float = 1.0    # KL to the trained classifiers' class distributions (sketch and photo)
    teacher: str = ""              # classifier checkpoint to init from and distil (default: the classifier
                                   # backend's); the shipped triplet used the 180-class head-conv-only one
    distill_temperature: float = 2.0
    sketch_from: int = 13          # the sketch branch also trains MBConv blocks[13:16], reading features cached
                                   # after blocks[:13] (16 = head conv only, on the whole trunk's features;
                                   # Sketchy test mAP@all 0.465 -> 0.502 with 13, ~5x the training time)
    refit_steps: int = 720         # second stage: the photo branch alone, the rest frozen (see refit_photo_branch)
    refit_lr: float = 3e-4
    refit_triplet_weight: float = 1.0
    seed: int = 0
    threads: int = 2


def name_of(cfg: TripletConfig) -> str:
    return "triplet" if cfg.edge else "triplet_noedge"


def run_dir(name: str) -> Path:
    return REPO_ROOT / "runs" / name


def classifier_checkpoint(path: str = "") -> dict:
    """The teacher: a classifier checkpoint at `path`, else the trained `classifier` backend's (its
    run, or in a fresh clone the one shipped with it)."""
    from .classifier import run_dir as classifier_dir
    if not path:
        path = classifier_dir("lite0") / "ckpt.pt"
        if not path.is_file():
            path = MODELS_DIR / "checkpoints" / "classifier.pt"
    return torch.load(path, map_location="cpu", weights_only=False)


def served_branches(ck: dict) -> tuple[torch.nn.Module, torch.nn.Module]:
    """A checkpoint's sketch and photo branches as served (eval mode): the trained branches, mapped
    into class-posterior space when the checkpoint has its class proxies (see PosteriorSpace).
    Sketch input: features after the trunk's blocks[:sketch_from]; photo input: the whole trunk's."""
    from ..nets.backbone import TRUNK_BLOCKS
    from ..nets.heads import PhotoEmbedding, PhotoProjection, PosteriorSpace, SketchEmbedding
    c = ck["config"]
    s = SketchEmbedding(c["dim"], start=c.get("sketch_from", TRUNK_BLOCKS))
    s.load_state_dict(ck["sketch_state_dict"])
    proj = PhotoProjection(c["dim"], c.get("photo_hidden", 1024))
    proj.load_state_dict(ck["photo_state_dict"])
    p = PhotoEmbedding(proj)
    if "proxies" in ck:
        s, p = (PosteriorSpace(m, ck["proxies"].float(), c["scale"]) for m in (s, p))
    return s.eval(), p.eval()


def hardest_triplet(anchor: torch.Tensor, positive: torch.Tensor, labels: torch.Tensor, margin: float) -> torch.Tensor:
    """Triplet loss on cosine distance, d(a, own positive) vs the closest other-class positive. (B, D) x2."""
    d = 1.0 - anchor @ positive.T                                               # (B, B)
    d_pos = d.diagonal()
    other = labels[:, None] != labels[None, :]
    d_neg = torch.where(other, d, torch.full_like(d, 4.0)).min(dim=1).values
    return F.relu(d_pos - d_neg + margin).mean()


def distillation(student_logits: torch.Tensor, teacher_logits: torch.Tensor, t: float) -> torch.Tensor:
    """KL(teacher || student) at temperature t (times t^2): the student inherits the teacher's class ranking."""
    return F.kl_div(F.log_softmax(student_logits / t, dim=-1), F.log_softmax(teacher_logits / t, dim=-1),
                    log_target=True, reduction="batchmean") * t * t


def refit_photo_branch(photo_net: torch.nn.Module, proxies: torch.Tensor, pooled: torch.Tensor, y_photo: torch.Tensor,
                       teacher_logits: torch.Tensor | None, photo_rows: np.ndarray, sketch_emb: torch.Tensor,
                       sketch_photo: np.ndarray, sketch_weights: np.ndarray, cfg: TripletConfig,
                       rng: np.random.Generator) -> None:
    """Second stage: train the photo branch alone against the frozen sketch branch and proxies.

    Why: served retrieval ranks by class posteriors, so every photo the branch misfiles costs mAP,
    and the joint stage leaves it filing Sketchy test photos at 0.795 top-1 (its distillation teacher,
    a linear classifier on the same features: 0.882): the triplet terms pull photos towards sketches
    that are hard to recognise. Here class + distillation losses on the photos fix their posteriors
    while a triplet term against the frozen sketch embeddings keeps sketches near their own photos.
    pooled: (N, V, F) photo branch input; sketch_emb: (S, V', D) frozen sketch embeddings, whose
    photos are rows `sketch_photo` of pooled, sampled with `sketch_weights`."""
    proxies = F.normalize(proxies.detach(), dim=-1)
    opt = torch.optim.AdamW(photo_net.parameters(), cfg.refit_lr, weight_decay=cfg.weight_decay)
    photo_net.train()
    for _ in range(cfg.refit_steps):
        rows = rng.choice(photo_rows, cfg.batch)
        views = rng.integers(0, pooled.shape[1], cfg.batch)
        logits = cfg.scale * photo_net(pooled[rows, views]) @ proxies.T
        loss = F.cross_entropy(logits, y_photo[rows], label_smoothing=cfg.label_smoothing)
        if teacher_logits is not None and cfg.distill_weight > 0:
            loss = loss + cfg.distill_weight * distillation(logits, teacher_logits[rows, views], cfg.distill_temperature)
        if cfg.refit_triplet_weight > 0:
            pick = rng.choice(len(sketch_emb), cfg.batch, p=sketch_weights)
            s = sketch_emb[pick, rng.integers(0, sketch_emb.shape[1], cfg.batch)]
            prow = sketch_photo[pick]
            p = photo_net(pooled[prow, rng.integers(0, pooled.shape[1], cfg.batch)])
            loss = loss + cfg.refit_triplet_weight * hardest_triplet(s, p, y_photo[prow], cfg.margin)
        opt.zero_grad()
        loss.backward()
        opt.step()
    photo_net.eval()


def main(argv: list[str] | None = None) -> None:
    from ..nets.backbone import TRUNK_BLOCKS, freeze, lite0
    from ..nets.heads import PhotoProjection, SketchEmbedding, class_posteriors, imagenet_top
    from .features import block_suffix

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--no-edge", dest="edge", action="store_false")
    ap.add_argument("--no-init", dest="init_from_classifier", action="store_false")
    for k, v in asdict(TripletConfig()).items():
        if k not in ("edge", "init_from_classifier"):
            ap.add_argument(f"--{k.replace('_', '-')}", type=type(v), default=v)
    ap.add_argument("--run-name", help="write runs/<RUN_NAME>/ only (seed and ablation runs; scored by "
                                        "sbir_core.train.score_triplet); default runs/<backend>/ + models/<backend>_curves.json")
    args = vars(ap.parse_args(argv))
    run_name = args.pop("run_name")
    cfg = TripletConfig(**args)
    name = name_of(cfg)
    torch.manual_seed(cfg.seed)
    torch.set_num_threads(cfg.threads)
    rng = np.random.default_rng(cfg.seed)
    out = run_dir(run_name or name)
    out.mkdir(parents=True, exist_ok=True)

    assert cfg.sketch_from <= TRUNK_BLOCKS, "sketch_from is a block index, at most 16"
    suffix = block_suffix(sketch_trunk_end(asdict(cfg)))
    sk, ph, ed = cached.load("sketches" + suffix), cached.load("photos"), cached.load("edges" + suffix)
    # the distillation teacher reads the whole trunk's features: ImageNet's blocks[sketch_from:], frozen
    frozen_rest = freeze(torch.nn.Sequential(*lite0()._blocks[cfg.sketch_from:TRUNK_BLOCKS]))

    cls = {c: i for i, c in enumerate(SKETCHY_CLASSES)}
    photo_row = {r["photo_id"]: i for i, r in enumerate(ph.records)}
    y_ph = torch.tensor([cls[r["label"]] for r in ph.records])
    keep = np.asarray([i for i, r in enumerate(sk.records) if r["photo_id"] in photo_row])
    own = np.asarray([photo_row[sk.records[i]["photo_id"]] for i in range(len(sk.records))
                      if sk.records[i]["photo_id"] in photo_row])
    own_of = dict(zip(keep, own))
    tr = np.asarray([i for i in sk.where("train") if i in own_of])
    va = np.asarray([i for i in sk.where("val") if i in own_of])
    w_tr = balanced_weights([sk.records[i]["label"] for i in tr])
    n_views = sk.feats.shape[1]

    with torch.no_grad():                          # photo branch input: frozen ImageNet head, pooled once
        top = freeze(imagenet_top())
        pooled = torch.stack([torch.cat([top(torch.from_numpy(np.asarray(ph.feats[i:i + 256, v], np.float32)))
                                         for i in range(0, len(ph.records), 256)]) for v in (0, 1)], 1)   # (N, 2, 1280)

    sketch_net = SketchEmbedding(cfg.dim, cfg.dropout, cfg.sketch_from)
    photo_net = PhotoProjection(cfg.dim, cfg.photo_hidden)
    if cfg.init_from_classifier or cfg.distill_weight > 0:
        ck = classifier_checkpoint(cfg.teacher)
    if cfg.init_from_classifier:
        missing, unexpected = sketch_net.top.load_state_dict(
            {k[4:]: v for k, v in ck["state_dict"].items() if k.startswith("top.")}, strict=False)
        assert not unexpected and all(k.startswith("blocks.") for k in missing), (missing, unexpected)   # blocks stay ImageNet's
    if cfg.distill_weight > 0:                     # teachers: the classifier backend's sketch and photo heads
        from ..nets.heads import ClassifierHead
        keep_cls = torch.tensor([ck["classes"].index(c) for c in SKETCHY_CLASSES])
        t_start = ck["config"].get("sketch_from", TRUNK_BLOCKS)          # a teacher may train blocks too
        assert t_start in (cfg.sketch_from, TRUNK_BLOCKS), "teacher and sketch branch must start alike"
        sketch_teacher = freeze(ClassifierHead(len(ck["classes"]), start=t_start))
        sketch_teacher.load_state_dict({k: v.float() for k, v in ck["state_dict"].items()})
        teacher_input = (lambda f: f) if t_start == cfg.sketch_from else frozen_rest
        photo_fc = torch.nn.Linear(pooled.shape[-1], len(ck["classes"]))
        photo_fc.load_state_dict({k[3:]: v for k, v in ck["photo_state_dict"].items() if k.startswith("fc.")})
        with torch.no_grad():
            photo_teacher_logits = photo_fc(pooled)[..., keep_cls]                      # (N, 2, C)
    proxies = torch.nn.Parameter(F.normalize(torch.randn(len(SKETCHY_CLASSES), cfg.dim), dim=-1))
    groups = [{"params": list(sketch_net.proj.parameters()) + list(photo_net.parameters()) + [proxies], "lr": cfg.lr}]
    if cfg.sketch_lr_mult > 0:
        groups.append({"params": sketch_net.top.parameters(), "lr": cfg.lr * cfg.sketch_lr_mult})
    else:
        freeze(sketch_net.top)
    opt = torch.optim.AdamW(groups, cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = cfg.samples_per_epoch // cfg.batch
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, [g["lr"] for g in groups],
                                                total_steps=cfg.epochs * steps_per_epoch, pct_start=0.15)

    qd = cached.load("quickdraw" + suffix)
    qd_rows = np.asarray([i for i, r in enumerate(qd.records) if r["label"] in cls])
    y_qd = torch.tensor([cls[qd.records[i]["label"]] for i in qd_rows])
    n_qd = int(cfg.batch * cfg.quickdraw_share)

    def class_loss(e: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(cfg.scale * e @ F.normalize(proxies, dim=-1).T, y, label_smoothing=cfg.label_smoothing)

    def distill_loss(e: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
        return distillation(cfg.scale * e @ F.normalize(proxies, dim=-1).T, teacher_logits, cfg.distill_temperature)

    gallery_rows = np.concatenate([ph.where("train"), ph.where("val")])

    def validate(served_proxies: torch.Tensor | None = None) -> dict[str, float]:
        """mAP@all / P@20 of val sketches (both Sketchy folders) against train+val photos: for choosing
        the epoch only. It is optimistic (most photos were trained on, and the 10-class sketches are
        easy): the evaluation CLI on the test split gives the honest number. With `served_proxies`,
        in the served class-posterior space."""
        sketch_net.eval(), photo_net.eval()
        with torch.no_grad():
            q = torch.cat([sketch_net(batch_tensor(sk.feats, va[i:i + 256], np.zeros(len(va[i:i + 256]), int)))
                           for i in range(0, len(va), 256)])
            g = photo_net(pooled[gallery_rows, 0])
            if served_proxies is not None:
                q, g = (class_posteriors(x, served_proxies, cfg.scale) for x in (q, g))
        s = (q @ g.T).numpy()
        m = metrics(s, [sk.records[i]["label"] for i in va], [ph.records[i]["label"] for i in gallery_rows],
                    [sk.records[i]["photo_id"] for i in va], [ph.records[i]["photo_id"] for i in gallery_rows])
        return {"val_mAP": m["mAP@all"], "val_P@20": m["P@20"], "val_acc@1": m["acc@1"], "val_acc@10": m["acc@10"]}

    def photo_report(served_proxies: torch.Tensor) -> dict[str, float]:
        """Served-space validation and val photos' top-1 over the proxies: what the photo refit changes."""
        rows = ph.where("val")
        with torch.no_grad():
            top1 = (photo_net(pooled[rows, 0]) @ served_proxies.T).argmax(-1).eq(y_ph[rows]).float().mean().item()
        return {**{k + "_served": v for k, v in validate(served_proxies).items()}, "val_photo_top1": top1}

    curves, best = [], (-1.0, None)
    for epoch in range(1, cfg.epochs + 1):
        sketch_net.train(), photo_net.train()
        if cfg.sketch_lr_mult == 0:
            sketch_net.top.eval()                  # frozen: keep its batch-norm statistics
        t0, sums = time.time(), {"loss": 0.0, "triplet": 0.0, "class": 0.0}
        for _ in range(steps_per_epoch):
            rows = rng.choice(tr, cfg.batch, p=w_tr)
            prow = np.asarray([own_of[r] for r in rows])
            pview = rng.integers(0, 2, len(rows))
            y = y_ph[prow]
            sketch_in = batch_tensor(sk.feats, rows, rng.integers(0, n_views, len(rows)))
            s = sketch_net(sketch_in)                                                                # (B, D)
            p = photo_net(pooled[prow, pview])                                                       # (B, D)
            tri = hardest_triplet(s, p, y, cfg.margin) + cfg.align_weight * (1.0 - (s * p).sum(-1)).mean()
            pick = rng.choice(len(qd_rows), n_qd)
            qd_in = batch_tensor(qd.feats, qd_rows[pick], np.zeros(n_qd, int))
            q = sketch_net(qd_in)                                                                    # (Bq, D)
            cl = class_loss(torch.cat([s, q]), torch.cat([y, y_qd[pick]])) + class_loss(p, y)
            if cfg.distill_weight > 0:
                with torch.no_grad():
                    t_sketch = sketch_teacher(teacher_input(torch.cat([sketch_in, qd_in])))[:, keep_cls]
                cl = cl + cfg.distill_weight * (distill_loss(torch.cat([s, q]), t_sketch)
                                                + distill_loss(p, photo_teacher_logits[prow, pview]))
            if cfg.edge:
                e = sketch_net(batch_tensor(ed.feats, prow, pview))                                  # (B, D)
                tri = tri + cfg.edge_weight * (hardest_triplet(e, p, y, cfg.margin) + hardest_triplet(s, e, y, cfg.margin))
                cl = cl + class_loss(e, y)
            loss = tri + cfg.class_weight * cl
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            sums["loss"] += loss.item()
            sums["triplet"] += tri.item()
            sums["class"] += cl.item()
        val = validate()
        curves.append({"epoch": epoch, **{f"train_{k}": v / steps_per_epoch for k, v in sums.items()}, **val,
                       "seconds": round(time.time() - t0, 1)})
        print(json.dumps(curves[-1]), flush=True)
        if val["val_mAP"] > best[0]:
            best = (val["val_mAP"], {"sketch": {k: v.clone() for k, v in sketch_net.state_dict().items()},
                                     "photo": {k: v.clone() for k, v in photo_net.state_dict().items()},
                                     "proxies": F.normalize(proxies.detach(), dim=-1).clone()})
    sketch_net.load_state_dict(best[1]["sketch"])
    photo_net.load_state_dict(best[1]["photo"])
    refit = {"before": photo_report(best[1]["proxies"])}
    if cfg.refit_steps > 0:
        t0 = time.time()
        sketch_net.eval()
        with torch.no_grad():                      # frozen sketch embeddings, every cached view: (S, V, D)
            sketch_emb = torch.stack([torch.cat([sketch_net(batch_tensor(sk.feats, tr[i:i + 256], np.full(len(tr[i:i + 256]), v)))
                                                 for i in range(0, len(tr), 256)]) for v in range(n_views)], 1)
        refit_photo_branch(photo_net, best[1]["proxies"], pooled, y_ph,
                           photo_teacher_logits if cfg.distill_weight > 0 else None, ph.where("train"),
                           sketch_emb, np.asarray([own_of[r] for r in tr]), w_tr, cfg, rng)
        refit["after"] = photo_report(best[1]["proxies"])
        refit["seconds"] = round(time.time() - t0, 1)
        print("photo refit", json.dumps(refit), flush=True)
    torch.save({"config": asdict(cfg), "sketch_state_dict": best[1]["sketch"], "photo_state_dict": photo_net.state_dict(),
                "proxies": best[1]["proxies"], "best_val_mAP": best[0], "photo_refit": refit}, out / "ckpt.pt")
    for path in [out / "curves.json"] + ([] if run_name else [MODELS_DIR / f"{name}_curves.json"]):
        path.write_text(json.dumps(curves, indent=1) + "\n")
    print("best val mAP", best[0], flush=True)


if __name__ == "__main__":
    main()

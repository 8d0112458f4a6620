"""Train the `triplet` backend: a joint sketch/photo embedding over the whole vocabulary.

    python -m sbir_core.train.triplet_features       # caches (~8 min on 2 cores)
    python -m sbir_core.train.triplet                 # ~7 min; runs/triplet/, then `python -m export.triplet`
    python -m sbir_core.train.triplet --no-edge       # the ablation without the edge branch: runs/triplet_noedge/

On frozen parts (`triplet_features`): the classifier's trained sketch trunk for sketches and photo edge
maps, the ImageNet trunk and the photo labeller for photos. Trained (`sbir_core.nets.joint.Parts`):
- the semantic part, hybrid loss: a cosine-softmax over proxies of all 365 kinds for every sketch
  source (Sketchy, TU-Berlin, Quick, Draw! bitmaps and canvas-drawn strokes), photo edge maps (the edge
  branch) and photos, + a cross-domain triplet loss with the hardest photo of another kind in the batch;
- the instance part: sketch-photo pairs (Sketchy, the shoe set; mirrored pairs), triplet loss with the
  drawn photo as positive and the hardest other photo of the same kind as negative; edge maps as anchors.
Training photos: Sketchy's and the shoe set's `train` (and `val`, to monitor) photos only; never the
bundled gallery's (the benchmark searches it). The instance weight (how much where-things-are counts
against what-it-is) is chosen on the validation split and saved with the checkpoint.
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
from ..evaluate import metrics
from ..nets.joint import Parts, fuse, photo_semantic
from .features import CACHE

WEIGHTS = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5)   # instance weights tried on val
THRESHOLDS = tuple(round(float(t), 2) for t in np.arange(0.0, 1.001, 0.05))   # the app slider's stops
MAP_TOLERANCE = 0.01                        # a weight may cost at most this much val mAP@all against w = 0


@dataclass
class JointConfig:
    edge: bool = True
    dim: int = 256
    hidden: int = 1024
    dropout: float = 0.2
    mid: int = 128
    cell: int = 16
    steps: int = 3000
    batch: int = 256               # sketches per step (semantic loss)
    kinds: int = 32                # photo kinds per step, `per_kind` photos each
    per_kind: int = 4
    groups: int = 8                # instance pairs per step: `groups` kinds x `per_group` photos
    per_group: int = 8
    lr: float = 2e-3
    weight_decay: float = 1e-4
    scale: float = 16.0
    margin: float = 0.2
    instance_margin: float = 0.2
    label_smoothing: float = 0.1
    prior: float = 1.0             # weight of the photo labeller's reading in a photo's semantic part
    triplet_weight: float = 1.0
    instance_weight: float = 1.0
    edge_weight: float = 0.5
    shares: str = "sketches:0.3,quickdraw:0.3,strokes:0.15,tuberlin:0.15,shoe_sketches:0.05,edges:0.05"
    seed: int = 0


def load(name: str) -> tuple[dict[str, np.ndarray], list[dict]]:
    path = CACHE / f"joint_{name}.npz"
    if not path.is_file():
        raise FileNotFoundError(f"{path} missing: run `python -m sbir_core.train.triplet_features` first")
    z = np.load(path)
    return {k: z[k] for k in z.files}, json.loads((CACHE / f"joint_{name}.json").read_text())


def run_dir(name: str) -> Path:
    return REPO_ROOT / "runs" / name


def hardest_triplet(anchor: torch.Tensor, photos: torch.Tensor, same: torch.Tensor, margin: float) -> torch.Tensor:
    """Anchors (A, D), photos (P, D), same (A, P) bool (a positive): the farthest positive against
    the closest negative, anchors without both skipped."""
    sim = anchor @ photos.T
    ok = same.any(1) & (~same).any(1)
    if not ok.any():
        return sim.sum() * 0
    pos = sim.masked_fill(~same, 2.0).min(1).values
    neg = sim.masked_fill(same, -2.0).max(1).values
    return F.relu(margin + neg - pos)[ok].mean()


def threshold_curve(sim: np.ndarray, right: np.ndarray) -> list[dict]:
    """Retrieval by distance (every photo with cosine >= t): precision and recall of "a photo of the
    drawn kind" over all (sketch, photo) pairs, and F1, for each of the slider's thresholds."""
    out = []
    for t in THRESHOLDS:
        keep = sim >= t
        hit = float((keep & right).sum())
        p, r = hit / max(1.0, float(keep.sum())), hit / max(1.0, float(right.sum()))
        out.append({"threshold": t, "precision": round(p, 4), "recall": round(r, 4),
                    "f1": round(2 * p * r / max(p + r, 1e-9), 4), "mean_returned": round(float(keep.sum(1).mean()), 1)})
    return out


def choose_threshold(ckpt: Path) -> float:
    """The similarity slider's default for a trained checkpoint: the threshold with the best F1 on the
    validation sketches against every train + val Sketchy photo; curve and choice saved into it."""
    ck = torch.load(ckpt, map_location="cpu", weights_only=False)
    c = ck["config"]
    parts = Parts.from_checkpoint(ck)
    index = {k: i for i, k in enumerate(ck["classes"])}
    (sk, sk_recs), (ph, ph_recs) = load("sketches"), load("photos")
    q = np.asarray([i for i, r in enumerate(sk_recs) if r["split"] == "val" and r["label"] in index])
    g = np.asarray([i for i, r in enumerate(ph_recs) if r["label"] in index])
    t = lambda a: torch.from_numpy(np.asarray(a, dtype=np.float32))  # noqa: E731
    with torch.no_grad():
        qv = fuse(parts.sketch_sem(t(sk["pooled"][q, 0])), parts.sketch_inst(t(sk["grid"][q, 0])), ck["instance_weight"])
        gs = photo_semantic(parts.photo_sem(t(ph["pooled"][g, 0])), t(ph["probs"][g, 0]), parts.proxies, c["prior"])
        gv = fuse(gs, parts.photo_inst(t(ph["grid"][g, 0])), ck["instance_weight"])
    right = np.asarray([sk_recs[i]["label"] for i in q])[:, None] == np.asarray([ph_recs[i]["label"] for i in g])[None, :]
    curve = threshold_curve((qv @ gv.T).numpy(), right)
    best = max(curve, key=lambda row: row["f1"])
    ck["threshold_curve"], ck["default_threshold"] = curve, best["threshold"]
    torch.save(ck, ckpt)
    print(f"default threshold {best['threshold']} (val precision {best['precision']}, recall {best['recall']})")
    return best["threshold"]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--no-edge", action="store_true", help="no edge maps (the `triplet_noedge` ablation)")
    ap.add_argument("--steps", type=int)
    ap.add_argument("--prior", type=float)
    ap.add_argument("--seed", type=int)
    ap.add_argument("--run-name", help="default: the backend's name")
    ap.add_argument("--threshold-only", action="store_true",
                    help="only (re)choose the similarity slider's default for the run's checkpoint")
    args = ap.parse_args(argv)
    cfg = JointConfig(edge=not args.no_edge)
    for k in ("steps", "prior", "seed"):
        if getattr(args, k) is not None:
            setattr(cfg, k, getattr(args, k))
    name = "triplet" if cfg.edge else "triplet_noedge"
    out = run_dir(args.run_name or name)
    if args.threshold_only:
        choose_threshold(out / "ckpt.pt")
        return
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    torch.set_num_threads(2)
    rng = np.random.default_rng(cfg.seed)
    classifier = torch.load(MODELS_DIR / "checkpoints" / "classifier.pt", map_location="cpu", weights_only=False)
    classes = list(classifier["classes"])
    index = {c: i for i, c in enumerate(classes)}

    # --- data: every set's pooled features, labels, splits; grids where pairs need them
    sets = {}
    shares = dict((k, float(v)) for k, v in (s.split(":") for s in cfg.shares.split(",")))
    if not cfg.edge:
        shares.pop("edges")
    for s in set(shares) | {"photos", "shoe_photos"} | ({"edges", "shoe_edges"} if cfg.edge else set()):
        arrays, recs = load(s)
        keep = np.asarray([r["label"] in index for r in recs])
        sets[s] = {**{k: v[keep] for k, v in arrays.items()},
                   "y": np.asarray([index[r["label"]] for r in recs if r["label"] in index]),
                   "split": np.asarray([r["split"] for r in recs])[keep],
                   "photo": np.asarray([r["photo_id"] for r in recs])[keep]}
        print(f"{s}: {keep.sum()} records, {arrays['pooled'].shape[1]} views", flush=True)

    def train_rows(s: str) -> np.ndarray:
        return np.flatnonzero(sets[s]["split"] == "train")

    def balanced(s: str) -> tuple[np.ndarray, np.ndarray]:
        rows = train_rows(s)
        _, inv, counts = np.unique(sets[s]["y"][rows], return_inverse=True, return_counts=True)
        w = 1.0 / counts[inv]
        return rows, w / w.sum()
    sketch_pool = {s: balanced(s) for s in shares}
    photo_rows = np.concatenate([train_rows("photos"), -1 - train_rows("shoe_photos")])   # shoes as negative indices
    photo_kind = np.where(photo_rows >= 0, sets["photos"]["y"][np.maximum(photo_rows, 0)], index["shoe"])
    by_kind = {k: photo_rows[photo_kind == k] for k in np.unique(photo_kind)}

    # instance pairs: photo id -> (set, rows of its sketches)
    def pair_index(sketch_set: str) -> dict[str, np.ndarray]:
        rows = train_rows(sketch_set)
        out: dict[str, list[int]] = {}
        for r in rows:
            out.setdefault(sets[sketch_set]["photo"][r], []).append(r)
        return {k: np.asarray(v) for k, v in out.items()}
    pairs = {"photos": pair_index("sketches"), "shoe_photos": pair_index("shoe_sketches")}
    photo_row_of = {s: {p: i for i, p in enumerate(sets[s]["photo"])} for s in pairs}
    inst_groups = [("shoe_photos", [p for p in pairs["shoe_photos"]])] + [
        ("photos", [p for p in pairs["photos"] if sets["photos"]["y"][photo_row_of["photos"][p]] == k])
        for k in np.unique(sets["photos"]["y"])]
    inst_groups = [(s, ps) for s, ps in inst_groups if len(ps) >= 2]

    def t(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.asarray(a, dtype=np.float32))

    parts = Parts(len(classes), cfg.dim, cfg.hidden, cfg.dropout, cfg.mid, cfg.cell)
    opt = torch.optim.AdamW(parts.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, cfg.lr, total_steps=cfg.steps, pct_start=0.1)

    def proxies() -> torch.Tensor:
        return F.normalize(parts.proxies, dim=-1)

    def class_loss(e: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(cfg.scale * e @ proxies().T, y, label_smoothing=cfg.label_smoothing)

    def photo_batch(kinds: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        rows = np.concatenate([rng.choice(by_kind[k], cfg.per_kind) for k in kinds])
        view = rng.integers(0, 2, len(rows))
        pooled = np.where((rows >= 0)[:, None], sets["photos"]["pooled"][np.maximum(rows, 0), view],
                          sets["shoe_photos"]["pooled"][np.maximum(-1 - rows, 0), view])
        probs = np.where((rows >= 0)[:, None], sets["photos"]["probs"][np.maximum(rows, 0), view],
                         sets["shoe_photos"]["probs"][np.maximum(-1 - rows, 0), view])
        y = np.where(rows >= 0, sets["photos"]["y"][np.maximum(rows, 0)], index["shoe"])
        return t(pooled), t(probs), torch.from_numpy(y)

    def instance_batch() -> dict[str, torch.Tensor]:
        chosen = rng.choice(len(inst_groups), cfg.groups, replace=False)
        sk, ph, ed, gid = [], [], [], []
        view = int(rng.integers(0, 2))                       # mirrored pairs: sketch view 1 <-> photo view 1
        for g in chosen:
            s, ids = inst_groups[g]
            ssets = "sketches" if s == "photos" else "shoe_sketches"
            for p in rng.choice(ids, min(cfg.per_group, len(ids)), replace=False):
                r = photo_row_of[s][p]
                sk.append(sets[ssets]["grid"][rng.choice(pairs[s][p]), view])
                ph.append(sets[s]["grid"][r, view])
                if cfg.edge:
                    ed.append(sets["edges" if s == "photos" else "shoe_edges"]["grid"][r, view])
                gid.append(g)
        return {"sketch": t(np.stack(sk)), "photo": t(np.stack(ph)),
                "edge": t(np.stack(ed)) if ed else None, "group": torch.tensor(gid)}

    # --- validation: Sketchy val sketches (clean) against every train + val Sketchy photo (original)
    val_q = np.flatnonzero(sets["sketches"]["split"] == "val")
    vq = {k: t(sets["sketches"][k][val_q, 0]) for k in ("pooled", "grid")}
    vg = {k: t(sets["photos"][k][:, 0]) for k in ("pooled", "grid", "probs")}
    cls_val = sets["sketches"]["y"][val_q]

    @torch.no_grad()
    def embed_val() -> tuple[torch.Tensor, ...]:
        parts.eval()
        qs = parts.sketch_sem(vq["pooled"])
        gs = photo_semantic(parts.photo_sem(vg["pooled"]), vg["probs"], parts.proxies, cfg.prior)
        qi, gi = parts.sketch_inst(vq["grid"]), parts.photo_inst(vg["grid"])
        parts.train()
        return qs, gs, qi, gi

    def validate(weights=(0.0,)) -> dict:
        qs, gs, qi, gi = embed_val()
        res = {}
        for w in weights:
            m = metrics((fuse(qs, qi, w) @ fuse(gs, gi, w).T).numpy(), sets["sketches"]["y"][val_q],
                        sets["photos"]["y"], sets["sketches"]["photo"][val_q], sets["photos"]["photo"])
            res[w] = {k: round(m[k], 4) for k in ("mAP@all", "P@20", "acc@1", "acc@10")}
        res["sketch_top1"] = float(((qs @ proxies().T).argmax(1).numpy() == cls_val).mean())
        return res

    sources = list(shares)
    p_src = np.asarray([shares[s] for s in sources])
    p_src = p_src / p_src.sum()
    curves, t0, sums = [], time.time(), {}
    every = max(1, cfg.steps // 12)
    for step in range(1, cfg.steps + 1):
        counts = rng.multinomial(cfg.batch, p_src)
        pooled, ys = [], []
        for s, n in zip(sources, counts):
            rows, w = sketch_pool[s]
            r = rng.choice(rows, n, p=w)
            v = rng.integers(0, sets[s]["pooled"].shape[1], n)
            pooled.append(sets[s]["pooled"][r, v])
            ys.append(sets[s]["y"][r])
        y_sketch = torch.from_numpy(np.concatenate(ys))
        e_sketch = parts.sketch_sem(t(np.concatenate(pooled)))
        kinds = rng.choice(list(by_kind), cfg.kinds, replace=False)
        p_pooled, p_probs, y_photo = photo_batch(kinds)
        e_photo = photo_semantic(parts.photo_sem(p_pooled), p_probs, parts.proxies, cfg.prior)
        losses = {"sketch_class": class_loss(e_sketch, y_sketch), "photo_class": class_loss(e_photo, y_photo),
                  "triplet": cfg.triplet_weight * hardest_triplet(e_sketch, e_photo,
                                                                  y_sketch[:, None] == y_photo[None, :], cfg.margin)}
        b = instance_batch()
        pi = parts.photo_inst(b["photo"])
        same = torch.eye(len(pi), dtype=torch.bool)
        same_kind = b["group"][:, None] == b["group"][None, :]
        def inst_loss(a: torch.Tensor) -> torch.Tensor:   # negatives: other photos of the same kind first
            sim = a @ pi.T
            pos = sim.diagonal()
            neg = sim.masked_fill(same | ~same_kind, -2.0).max(1).values
            return F.relu(cfg.instance_margin + neg - pos).mean()
        losses["instance"] = cfg.instance_weight * inst_loss(parts.sketch_inst(b["sketch"]))
        if cfg.edge:
            losses["instance_edge"] = cfg.instance_weight * cfg.edge_weight * inst_loss(parts.sketch_inst(b["edge"]))
        loss = sum(losses.values())
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        for k, v in losses.items():
            sums[k] = sums.get(k, 0.0) + float(v)
        if step % every == 0 or step == cfg.steps:
            val = validate()
            curves.append({"step": step, **{f"train_{k}": round(v / every, 4) for k, v in sums.items()},
                           "val_mAP": val[0.0]["mAP@all"], "val_sketch_top1": round(val["sketch_top1"], 4),
                           "seconds": round(time.time() - t0)})
            sums = {}
            print(json.dumps(curves[-1]), flush=True)

    val = validate(WEIGHTS)
    base = val[0.0]["mAP@all"]
    weight = max((w for w in WEIGHTS if val[w]["mAP@all"] >= base - MAP_TOLERANCE), key=lambda w: val[w]["acc@10"])
    print(json.dumps({"instance_weight_val": {str(k): v for k, v in val.items()}, "chosen": weight}), flush=True)
    torch.save({"state_dict": {k: v.half() for k, v in parts.state_dict().items()}, "classes": classes,
                "config": asdict(cfg), "instance_weight": weight,
                "val": {str(k): v for k, v in val.items()}, "seconds": round(time.time() - t0)}, out / "ckpt.pt")
    (out / "curves.json").write_text(json.dumps(curves, indent=1) + "\n")
    print(f"saved {out / 'ckpt.pt'} (instance weight {weight})")
    choose_threshold(out / "ckpt.pt")


if __name__ == "__main__":
    main()

"""Train the `instance` backend: find the very photo that was drawn (fine-grained SBIR).

    python -m sbir_core.train.features --parts shoes,oriented,block_photos --end 13   # caches (~6 min on 2 cores)
    python -m sbir_core.train.instance                              # ~1 min; runs/instance/
    python -m sbir_core.train.instance --grid-from 11 --run-name instance_g11  # other grids, see docs/instance.md
    python -m sbir_core.train.instance --grid-from 16 --sketch-from 13 --cache-from 11 --photo-blocks \
        --init models/checkpoints/instance.pt --run-name instance_b13_photo       # trains trunk blocks 13-15 too

Sketch-photo pairs from Sketchy (each sketch names its photo) and the shoe set (train split of
`sbir_core.data.splits.shoe_splits`), on the frozen trunk's cached *spatial* features: by default
the grid after blocks[:13] (192 x 6 x 6), which matches a sketch to its very photo better than the
whole trunk's 320 x 6 x 6 (more about parts and pose, less about the class).
Two branches (sketches and photo edge maps share one; photos have their own) embed the grid
(`sbir_core.nets.instance.InstanceBranch`). Loss: triplet on cosine distance, the positive being
the drawn photo, the negative the hardest photo in the batch. Batches are built from groups of
photos of one class (or of shoes), so most negatives are photos of the same kind: the hard
negatives instance retrieval has to tell apart. Augmentation: mirrored pairs (a mirrored sketch
with the mirrored photo; the cache keeps orientation), augmented sketches, and the photos' edge
maps as extra sketch-like anchors.

Served in two stages (`sbir_core.backends.instance`): the `classifier` backend's class posterior
puts the right kind of object first, the instance similarity orders photos within it. The fusion
weight is chosen here on the validation split (never on test) and saved with the checkpoint.
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
from ..nets.backbone import TRUNK_BLOCKS
from . import cached

# the fusion weights tried on the validation split (score = log P(photo's class) + w * cosine)
FUSION_GRID = (0.0, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0)
MAP_TOLERANCE = 0.005          # a weight may cost at most this much val mAP@all against w = 0 (class order)
THRESHOLDS = tuple(round(float(t), 3) for t in np.arange(0.0, 0.401, 0.025))   # the instance cosines' range
CLASS_GATE = 0.05              # retrieval by distance keeps only photos of kinds the sketch's reading gives >= this
SLIDER_STEP = 0.05             # the app's similarity slider: a default threshold must be one of its stops


@dataclass
class InstanceConfig:
    mode: str = "spatial"          # spatial | pooled | both (see nets.instance.InstanceBranch)
    pca: int = 96                  # trunk channels per cell kept by the fixed PCA projection (of 320)
    mid: int = 128
    cell: int = 32
    gdim: int = 128
    global_share: float = 0.3
    residual: bool = True          # spatial part = centred projected grid + a learnt correction (zero at start)
    steps: int = 400
    groups: int = 12               # groups (one class, or shoes) per batch
    per_group: int = 8             # photos per group: the same-class hard negatives
    lr: float = 1e-3
    weight_decay: float = 1e-4
    margin: float = 0.2
    nce_weight: float = 0.0        # + InfoNCE over every allowed negative in the batch (0 = triplet loss alone)
    temperature: float = 0.1
    same_class: bool = True        # False: same-class photos are never negatives (ablation)
    edges: bool = True             # photo edge maps as extra anchors through the sketch branch
    mirror: bool = True            # mirrored pairs
    edge_weight: float = 0.5
    shoe_share: float = 0.3        # share of a batch's groups drawn from the shoe set
    sketch_from: int = 16          # < 16: the sketch branch also trains MBConv blocks[sketch_from:16] (ImageNet
                                   # init) for instance matching; needs --init
    cache_from: int = 11           # with sketch_from < 16: sketch/edge features cached after blocks[:cache_from]
                                   # (`features --parts shoes,oriented --end N`), run once through the frozen
                                   # blocks[cache_from:sketch_from] in memory
    init: str = ""                 # a checkpoint (e.g. models/checkpoints/instance.pt) to start both branches
                                   # and the cell PCA from: training starts from that model's behaviour
    photo_blocks: bool = False     # with sketch_from < 16: the photo branch trains its own copy of those blocks
                                   # (photos cached after blocks[:cache_from]: `features --parts block_photos`)
    block_lr: float = 1e-4         # peak learning rate of the trained trunk blocks (no weight decay)
    grid_from: int = 13            # < 16: both branches read the frozen trunk's grid after blocks[:grid_from]
                                   # (`features --parts shoes,oriented,block_photos --end N`; 13: 192 x 6 x 6),
                                   # average-pooled by grid_pool; 16: the whole trunk's grid (320 x 6 x 6)
    grid_pool: int = 1
    sketch_aug: bool = False       # Sketchy sketches with augmented views too (`features --parts oriented_aug`)
    eval_every: int = 100
    max_minutes: float = 35.0
    seed: int = 0
    threads: int = 1


def run_dir(name: str) -> Path:
    return REPO_ROOT / "runs" / name


@dataclass
class Domain:
    """One dataset's cached sketches (N, 4 oriented views), photos and edge maps (P, 2: original,
    mirrored), which photo each sketch shows and the photos' labels and splits."""
    name: str
    sketches: np.ndarray
    photos: np.ndarray
    edges: np.ndarray
    sketch_records: list[dict]
    photo_records: list[dict]

    def __post_init__(self) -> None:
        row = {r["photo_id"]: i for i, r in enumerate(self.photo_records)}
        self.own = np.asarray([row.get(r["photo_id"], -1) for r in self.sketch_records])
        self.photo_labels = [r["label"] for r in self.photo_records]

    def sketch_rows(self, split: str, source: str | None = None) -> np.ndarray:
        return np.asarray([i for i, r in enumerate(self.sketch_records) if r["split"] == split and self.own[i] >= 0
                           and (source is None or r["source"] == source)], dtype=int)


def load_domains(sketch_from: int = TRUNK_BLOCKS, photo_blocks: bool = False, grid_pool: int = 1,
                 sketch_aug: bool = False) -> dict[str, Domain]:
    """Sketches and edge maps after blocks[:sketch_from] (the sketch branch's input), photos after the
    whole frozen trunk (the photo branch's), or after blocks[:sketch_from] too (`photo_blocks`).
    grid_pool > 1: every array average-pooled by that factor, in memory (the `grid_from` grid)."""
    suffix = "" if sketch_from == TRUNK_BLOCKS else f"_b{sketch_from}"
    psuffix = suffix if photo_blocks else ""
    sk, ph, ed = (cached.load("sketches_oriented" + ("_aug" if sketch_aug else "") + suffix), cached.load("photos" + psuffix),
                  cached.load("edges" + suffix))
    ss, sp, se = (cached.load("shoe_sketches" + suffix), cached.load("shoe_photos" + psuffix),
                  cached.load("shoe_edges" + suffix))
    feats = [x.feats if grid_pool == 1 else pool_grid(x.feats, grid_pool) for x in (sk, ph, ed, ss, sp, se)]
    return {"sketchy": Domain("sketchy", *feats[:3], sk.records, ph.records),
            "shoes": Domain("shoes", *feats[3:], ss.records, sp.records)}


def pool_grid(x: np.ndarray, p: int, batch: int = 512) -> np.ndarray:
    """(N, V, C, h, w) -> (N, V, C, h/p, w/p) float16 by p x p average pooling (served: `Projected(pool=p)`)."""
    n, v, c, h, w = x.shape
    out = np.empty((n, v, c, h // p, w // p), np.float16)
    for i in range(0, n, batch):
        y = np.asarray(x[i:i + batch], np.float32)
        out[i:i + batch] = y.reshape(len(y), v, c, h // p, p, w // p, p).mean((4, 6))
    return out


@torch.no_grad()
def advance(domains: dict[str, Domain], start: int, end: int, batch: int = 256,
            arrays: tuple[str, ...] = ("sketches", "edges")) -> None:
    """Run the sketch-side arrays (sketches, edge maps) through the frozen ImageNet blocks[start:end]
    once, in memory (float16): training then reads features after blocks[:end] from a cache made
    after blocks[:start], and trains only blocks[end:]."""
    from ..nets.backbone import freeze, lite0
    blocks = freeze(torch.nn.Sequential(*lite0()._blocks[start:end]))
    for d in domains.values():
        for a in arrays:
            x = getattr(d, a)
            n, v = x.shape[:2]
            out = None
            for i in range(0, n, max(1, batch // v)):
                f = torch.from_numpy(np.asarray(x[i:i + max(1, batch // v)], np.float32))
                y = blocks(f.flatten(0, 1))
                y = y.reshape(f.shape[0], v, *y.shape[1:]).numpy().astype(np.float16)
                if out is None:
                    out = np.empty((n, v) + y.shape[2:], np.float16)
                out[i:i + len(y)] = y
            setattr(d, a, out)


def project_domains(domains: dict[str, Domain], k: int, rng: np.random.Generator,
                    cells_per_array: int = 4000, pca: tuple[torch.Tensor, torch.Tensor] | None = None,
                    arrays: tuple[str, ...] = ("sketches", "photos", "edges")) -> tuple[torch.Tensor, torch.Tensor]:
    """Fit the cell PCA on samples of every array (sketches, photos, edges of both sets), or take a
    given one (`pca`: mean, components), then replace each of `arrays` by its projection (in memory,
    float32): training then reads (N, V, k, 6, 6)."""
    from ..nets.instance import fit_cell_pca
    if pca is not None:
        return _apply_pca(domains, pca[0].float(), pca[1].float(), arrays)
    arrays = [(d, a) for d in domains.values() for a in arrays]
    samples = []
    for d, a in arrays:
        x = getattr(d, a)
        rows = np.sort(rng.choice(len(x), min(len(x), cells_per_array // 36 + 1), replace=False))
        f = np.asarray(x[rows, 0], dtype=np.float32)                              # (r, C, h, w)
        samples.append(f.transpose(0, 2, 3, 1).reshape(-1, f.shape[1]))
    mean, comps = fit_cell_pca(np.concatenate(samples), k)
    return _apply_pca(domains, mean, comps, tuple(dict.fromkeys(a for _, a in arrays)))


def _apply_pca(domains: dict[str, Domain], mean: torch.Tensor, comps: torch.Tensor,
               names: tuple[str, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    w, b = comps.numpy(), -(comps.numpy() @ mean.numpy())
    for d, a in [(d, a) for d in domains.values() for a in names]:
        x = getattr(d, a)
        out = np.empty((x.shape[0], x.shape[1], len(w)) + x.shape[3:], np.float32)
        for i in range(0, len(x), 256):
            out[i:i + 256] = np.einsum("nvchw,kc->nvkhw", np.asarray(x[i:i + 256], np.float32), w, optimize=True) \
                + b[None, None, :, None, None]
        setattr(d, a, out)
    return mean, comps


def f32(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.asarray(a, dtype=np.float32))


def triplet(anchor: torch.Tensor, positive: torch.Tensor, negative_ok: torch.Tensor, margin: float) -> torch.Tensor:
    """Batch-hard triplet loss on cosine distance, both ways: each anchor against its own positive
    and the closest positive it may take as a negative, and each positive against the closest
    other anchor. anchor, positive: (B, D) unit; negative_ok: (B, B) bool."""
    d = 1.0 - anchor @ positive.T                                               # (B, B)
    far = torch.full_like(d, 4.0)
    d_pos = d.diagonal()
    d_neg_a = torch.where(negative_ok, d, far).min(dim=1).values
    d_neg_p = torch.where(negative_ok, d, far).min(dim=0).values
    return 0.5 * (F.relu(d_pos - d_neg_a + margin).mean() + F.relu(d_pos - d_neg_p + margin).mean())


def info_nce(anchor: torch.Tensor, positive: torch.Tensor, negative_ok: torch.Tensor, t: float) -> torch.Tensor:
    """Softmax over each anchor's own positive and every positive it may take as a negative, both ways."""
    logits = (anchor @ positive.T) / t
    keep = negative_ok | torch.eye(len(anchor), dtype=torch.bool)
    logits = logits.masked_fill(~keep, -1e4)
    target = torch.arange(len(anchor))
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))


class Sampler:
    """Batches of (sketch row, sketch view, photo row, photo view) in groups of one class."""

    def __init__(self, domains: dict[str, Domain], cfg: InstanceConfig, rng: np.random.Generator):
        self.cfg, self.rng = cfg, rng
        self.groups: dict[str, list[tuple[str, list[int]]]] = {}
        self.sketches_of: dict[str, dict[int, list[int]]] = {}
        self.views = {name: d.sketches.shape[1] for name, d in domains.items()}
        for name, d in domains.items():
            by_photo: dict[int, list[int]] = {}
            for i in d.sketch_rows("train"):
                by_photo.setdefault(int(d.own[i]), []).append(int(i))
            self.sketches_of[name] = by_photo
            by_class: dict[str, list[int]] = {}
            for p in by_photo:
                by_class.setdefault(d.photo_labels[p], []).append(p)
            self.groups[name] = [(c, ps) for c, ps in sorted(by_class.items()) if len(ps) >= 2]

    def batch(self) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
        cfg, rng = self.cfg, self.rng
        n_shoe = int(round(cfg.shoe_share * cfg.groups))
        out = {}
        for name, n_groups in (("sketchy", cfg.groups - n_shoe), ("shoes", n_shoe)):
            groups = self.groups[name]
            if not n_groups or not groups:
                continue
            photos: list[int] = []
            if name == "shoes":                    # one class: its groups are just more shoes
                ps = groups[0][1]
                photos = list(rng.choice(ps, min(len(ps), n_groups * cfg.per_group), replace=False))
            else:
                for g in rng.choice(len(groups), min(n_groups, len(groups)), replace=False):
                    ps = groups[g][1]
                    photos += list(rng.choice(ps, min(len(ps), cfg.per_group), replace=False))
            photos_a = np.asarray(photos)
            sk = np.asarray([rng.choice(self.sketches_of[name][p]) for p in photos])
            flip = rng.integers(0, 2, len(photos)) if cfg.mirror else np.zeros(len(photos), int)
            n_base = self.views[name] // 2                                # clean (+ augmented, where cached)
            base = rng.integers(0, n_base, len(photos))
            out[name] = (sk, 2 * base + flip, photos_a, flip)
        return out


def gather(a: np.ndarray, rows: np.ndarray, views: np.ndarray) -> torch.Tensor:
    order = np.argsort(rows, kind="stable")                              # sorted reads from the memory map
    x = np.asarray(a[rows[order], views[order]], dtype=np.float32)
    inv = np.empty_like(order)
    inv[order] = np.arange(len(order))
    return torch.from_numpy(x[inv])


@torch.no_grad()
def embed(net: torch.nn.Module, feats: np.ndarray, rows: np.ndarray, view: int = 0, batch: int = 256) -> torch.Tensor:
    net.eval()
    return torch.cat([net(f32(feats[np.sort(rows[i:i + batch])][np.argsort(np.argsort(rows[i:i + batch])), view]))
                      for i in range(0, len(rows), batch)]) if len(rows) else torch.zeros(0, 1)


def threshold_curve(sim: np.ndarray, own: np.ndarray, thresholds: tuple[float, ...] = THRESHOLDS,
                    right: np.ndarray | None = None) -> list[dict]:
    """Retrieval by distance: for each cosine threshold, the share of sketches whose own photo is
    returned (similarity >= threshold) and the mean number of photos returned; with `right` ((Q, N):
    photo n is of sketch q's kind), also the share of the returned photos that are of the drawn kind."""
    own_sim = sim[np.arange(len(sim)), own]
    out = []
    for t in thresholds:
        keep = sim >= t
        row = {"threshold": t, "recall": float((own_sim >= t).mean()), "mean_returned": float(keep.sum(1).mean())}
        if right is not None:
            row["right_kind"] = float((keep & right).sum() / max(1, keep.sum()))
        out.append(row)
    return out


def instance_report(sim: np.ndarray, own: np.ndarray) -> dict[str, float]:
    """acc@K (= R@K: the drawn photo in the top K) from a (Q, N) score matrix and each sketch's photo column."""
    better = (sim > sim[np.arange(len(sim)), own][:, None]).sum(1)           # ties not in the sketch's favour
    ties = (sim == sim[np.arange(len(sim)), own][:, None]).sum(1) - 1
    rank = better + ties
    return {f"acc@{k}": float((rank < k).mean()) for k in (1, 3, 5, 10)} | {"median_rank": float(np.median(rank) + 1)}


def classifier_probs(domain: Domain, rows: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """The shipped `classifier`'s sketch posteriors (stage 1) for cached sketch rows (view 0, the
    clean sketch), through its ONNX head on the features cached for the same sketches after the
    classifier's sketch trunk (blocks[:sketch_from])."""
    from ..backends.onnx_model import OnnxModel, read_meta
    from .features import block_suffix, sketch_trunk_end
    meta = read_meta("classifier")
    head = OnnxModel.load(MODELS_DIR / meta["sketch_model"][-1], threads=1)
    b13 = cached.load("sketches" + block_suffix(sketch_trunk_end(meta.get("train_config", {}))))
    assert [r["path"] for r in b13.records] == [r["path"] for r in domain.sketch_records]
    p = np.concatenate([head(np.asarray(b13.feats[np.sort(rows[i:i + 128])], np.float32)[
        np.argsort(np.argsort(rows[i:i + 128])), 0])[0] for i in range(0, len(rows), 128)])
    return p, meta["classes"]


def fused(probs: np.ndarray, classes: list[str], photo_labels: list[str], sim: np.ndarray, w: float) -> np.ndarray:
    """Two-stage score: log P(sketch is of the photo's class) + w * cosine (w = 0: class order, cosine
    breaking ties inside a class)."""
    pos = {c: i for i, c in enumerate(classes)}
    cls = np.log(np.maximum(probs[:, [pos[l] for l in photo_labels]], 1e-12)).astype(np.float64)
    return cls + max(w, 1e-6) * sim


def evaluate_split(sketch_net, photo_net, domains: dict[str, Domain], split: str, probs_cache: dict,
                   weights: tuple[float, ...] = FUSION_GRID) -> dict:
    """Instance and category metrics of one split. Sketchy: `test` = the evaluation CLI's queries (the
    125-class folder's test sketches against its 3,125 photos); `val` = both folders' val sketches
    against every photo. Shoes: the split's sketches against all 304 shoe photos."""
    out = {}
    for name, d in domains.items():
        source = "sketchy" if (name == "sketchy" and split == "test") else None
        rows = d.sketch_rows(split, source)
        gal = np.asarray([i for i, r in enumerate(d.photo_records) if source is None or r["source"] == source])
        col = {int(g): j for j, g in enumerate(gal)}
        own = np.asarray([col[int(d.own[i])] for i in rows])
        q = embed(sketch_net, d.sketches, rows).numpy()
        g = embed(photo_net, d.photos, gal).numpy()
        sim = q @ g.T
        res = {"queries": int(len(rows)), "gallery": int(len(gal)), "instance_only": instance_report(sim, own),
               "threshold_curve": threshold_curve(sim, own)}
        if name == "sketchy":
            key = (name, split)
            if key not in probs_cache:
                probs_cache[key] = classifier_probs(d, rows)
            probs, classes = probs_cache[key]
            labels = [d.photo_labels[i] for i in gal]
            ql = [d.sketch_records[i]["label"] for i in rows]
            qp = [d.sketch_records[i]["photo_id"] for i in rows]
            gp = [d.photo_records[i]["photo_id"] for i in gal]
            res["fusion"] = {}
            for w in weights:
                s = fused(probs, classes, labels, sim, w)
                m = metrics(s, ql, labels, qp, gp)
                res["fusion"][str(w)] = {"mAP@all": m["mAP@all"], "P@20": m["P@20"], **instance_report(s, own)}
            res["instance_only"]["mAP@all"] = metrics(sim, ql, labels)["mAP@all"]
            pos = {c: i for i, c in enumerate(classes)}                      # as served: the class gate
            from ..backends.instance import kinds_within
            gate = kinds_within(probs[:, [pos[lab] for lab in labels]], CLASS_GATE)
            res["threshold_curve_gated"] = threshold_curve(np.where(gate, sim, -np.inf), own)
        out[name] = res
    return out


def pick_weight(val: dict) -> float:
    """The fusion weight with the best val acc@10 (then acc@1) whose val mAP@all stays within
    MAP_TOLERANCE of the class order's (w = 0)."""
    f = val["sketchy"]["fusion"]
    base = f[str(FUSION_GRID[0])]["mAP@all"]
    ok = [w for w in FUSION_GRID if f[str(w)]["mAP@all"] >= base - MAP_TOLERANCE]
    return max(ok, key=lambda w: (f[str(w)]["acc@10"], f[str(w)]["acc@1"]))


def pick_threshold(val: dict, recall: float = 0.7) -> float:
    """Where retrieval by distance starts in the app: the highest threshold at which the drawn photo is
    still returned (class gate applied, as served) for at least `recall` of the validation Sketchy sketches."""
    v = val["sketchy"]
    ok = [c["threshold"] for c in v.get("threshold_curve_gated", v["threshold_curve"])
          if c["recall"] >= recall and abs(c["threshold"] / SLIDER_STEP - round(c["threshold"] / SLIDER_STEP)) < 1e-6]
    return max(ok) if ok else THRESHOLDS[0]


def score(val: dict) -> float:
    """Model selection on val: mean of shoe acc@10 and Sketchy within-class-aware acc@10 (w = 0) and acc@1s."""
    sh, sk = val["shoes"]["instance_only"], val["sketchy"]["fusion"][str(FUSION_GRID[0])]
    return (sh["acc@1"] + sh["acc@10"] + sk["acc@1"] + sk["acc@10"]) / 4


def main(argv: list[str] | None = None) -> dict:
    from ..nets.instance import CellProjection, InstanceBranch, TrainedBlocks

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    for k, v in asdict(InstanceConfig()).items():
        if isinstance(v, bool):
            ap.add_argument(f"--{'no-' if v else ''}{k.replace('_', '-')}", dest=k, action="store_false" if v else "store_true")
        else:
            ap.add_argument(f"--{k.replace('_', '-')}", type=type(v), default=v)
    ap.add_argument("--run-name", default="instance", help="writes runs/<RUN_NAME>/ (ckpt.pt, curves.json, report.json)")
    args = vars(ap.parse_args(argv))
    run_name = args.pop("run_name")
    cfg = InstanceConfig(**args)
    torch.manual_seed(cfg.seed)
    torch.set_num_threads(cfg.threads)
    rng = np.random.default_rng(cfg.seed)
    out = run_dir(run_name)
    out.mkdir(parents=True, exist_ok=True)

    init = torch.load(cfg.init, map_location="cpu", weights_only=False) if cfg.init else None
    if cfg.sketch_from < TRUNK_BLOCKS and init is None:
        ap.error("--sketch-from below 16 needs --init (the cell PCA and branches to start from)")
    if init is not None:                           # the branches' shape is the checkpoint's
        for k in ("mode", "pca", "mid", "cell", "gdim", "global_share", "residual"):
            setattr(cfg, k, init["config"][k])
    photo_blocks = cfg.photo_blocks and cfg.sketch_from < TRUNK_BLOCKS
    if cfg.grid_from < TRUNK_BLOCKS and (cfg.sketch_from < TRUNK_BLOCKS or init is not None):
        ap.error("--grid-from below 16 trains new branches on a frozen earlier grid: add --grid-from 16 for "
                 "--sketch-from or --init (branches on the whole trunk's grid)")
    if cfg.grid_from < TRUNK_BLOCKS:
        domains = load_domains(cfg.grid_from, photo_blocks=True, grid_pool=cfg.grid_pool, sketch_aug=cfg.sketch_aug)
    else:
        domains = load_domains(cfg.cache_from if cfg.sketch_from < TRUNK_BLOCKS else TRUNK_BLOCKS, photo_blocks)
    if cfg.cache_from < cfg.sketch_from < TRUNK_BLOCKS:
        t0 = time.time()
        advance(domains, cfg.cache_from, cfg.sketch_from,
                arrays=("sketches", "edges") + (("photos",) if photo_blocks else ()))
        print(f"sketches and edges through frozen blocks {cfg.cache_from}-{cfg.sketch_from - 1} "
              f"in {time.time() - t0:.0f}s", flush=True)
    t_start = time.time()
    pca = (init["pca_mean"], init["pca_components"]) if init is not None else None
    pca_mean, pca_components = project_domains(
        domains, cfg.pca, rng, pca=pca,
        arrays=("sketches", "photos", "edges") if cfg.sketch_from == TRUNK_BLOCKS else () if photo_blocks else ("photos",))
    pca_mean, pca_components = pca_mean.float(), pca_components.float()
    print(f"cell PCA {pca_mean.numel()} -> {cfg.pca} {'fitted' if pca is None else 'taken'} and applied in "
          f"{time.time() - t_start:.0f}s", flush=True)
    sampler = Sampler(domains, cfg, rng)
    branch = dict(mode=cfg.mode, mid=cfg.mid, cell=cfg.cell, gdim=cfg.gdim, global_share=cfg.global_share,
                  in_channels=cfg.pca, residual=cfg.residual, grid=domains["sketchy"].sketches.shape[-1])
    sketch_net, photo_net = InstanceBranch(**branch), InstanceBranch(**branch)
    if init is not None:
        sketch_net.load_state_dict({k: v.float() for k, v in init["sketch_state_dict"].items() if not k.startswith(
            ("blocks.", "projection."))})
        photo_net.load_state_dict({k: v.float() for k, v in init["photo_state_dict"].items()})
    if cfg.sketch_from < TRUNK_BLOCKS:             # trunk blocks trained too, from ImageNet's weights
        sketch_net = TrainedBlocks(sketch_net, CellProjection(pca_mean, pca_components), cfg.sketch_from)
    if photo_blocks:                               # ... and the photo side's own copy
        photo_net = TrainedBlocks(photo_net, CellProjection(pca_mean, pca_components), cfg.sketch_from)
    if cfg.residual and init is None:              # centres start at each domain's mean training grid
        with torch.no_grad():
            for net, attr in ((sketch_net, "sketches"), (photo_net, "photos")):
                rows = [(getattr(d, attr), d.sketch_rows("train") if attr == "sketches" else
                         np.unique(d.own[d.sketch_rows("train")])) for d in domains.values()]
                net.center.copy_(torch.from_numpy(np.concatenate([a[r, 0] for a, r in rows]).mean(0)))
    blocks = [q for n in (sketch_net, photo_net) if isinstance(n, TrainedBlocks) for q in n.blocks.parameters()]
    ids = {id(q) for q in blocks}
    params = [q for q in list(sketch_net.parameters()) + list(photo_net.parameters()) if id(q) not in ids]
    groups = [{"params": params, "lr": cfg.lr, "weight_decay": cfg.weight_decay}]
    if blocks:                                     # pretrained blocks: a smaller step, no decay towards zero
        groups.append({"params": blocks, "lr": cfg.block_lr, "weight_decay": 0.0})
    opt = torch.optim.AdamW(groups)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, [g["lr"] for g in groups], total_steps=cfg.steps, pct_start=0.1)
    probs_cache: dict = {}
    curves, best = [], (-1.0, None, None)
    t_start, t0, sums = time.time(), time.time(), {"loss": 0.0, "sketch": 0.0, "edge": 0.0}
    for step in range(0 if init is not None else 1, cfg.steps + 1):
        if step > 0:                               # step 0: the starting model's own validation row
            sketch_net.train(), photo_net.train()
            loss_s, loss_e = torch.zeros(()), torch.zeros(())
            for name, (sk, sv, ph, pv) in sampler.batch().items():
                d = domains[name]
                s = sketch_net(gather(d.sketches, sk, sv))
                p = photo_net(gather(d.photos, ph, pv))
                labels = np.asarray([d.photo_labels[i] for i in ph])
                ok = torch.from_numpy(ph[:, None] != ph[None, :])
                if not cfg.same_class:
                    ok = ok & torch.from_numpy(labels[:, None] != labels[None, :])
                loss_s = loss_s + triplet(s, p, ok, cfg.margin) + cfg.nce_weight * info_nce(s, p, ok, cfg.temperature)
                if cfg.edges:
                    e = sketch_net(gather(d.edges, ph, pv))
                    loss_e = loss_e + triplet(e, p, ok, cfg.margin) + cfg.nce_weight * info_nce(e, p, ok, cfg.temperature)
            loss = loss_s + cfg.edge_weight * loss_e
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            sums["loss"] += loss.item()
            sums["sketch"] += loss_s.item()
            sums["edge"] += loss_e.item()
        timed_out = time.time() - t_start > 60 * cfg.max_minutes
        if step % cfg.eval_every == 0 or step == cfg.steps or timed_out:
            n = max(1, step - (curves[-1]["step"] if curves else 0))
            val = evaluate_split(sketch_net, photo_net, domains, "val", probs_cache, weights=(0.0,))
            row = {"step": step, **{f"train_{k}": v / n for k, v in sums.items()},
                   "val_shoes_acc@1": val["shoes"]["instance_only"]["acc@1"],
                   "val_shoes_acc@10": val["shoes"]["instance_only"]["acc@10"],
                   "val_sketchy_acc@1": val["sketchy"]["fusion"]["0.0"]["acc@1"],
                   "val_sketchy_acc@10": val["sketchy"]["fusion"]["0.0"]["acc@10"],
                   "val_sketchy_instance_only_acc@10": val["sketchy"]["instance_only"]["acc@10"],
                   "val_score": score(val), "seconds": round(time.time() - t0, 1)}
            curves.append(row)
            print(json.dumps(row), flush=True)
            sums = {k: 0.0 for k in sums}
            t0 = time.time()
            if row["val_score"] > best[0]:
                best = (row["val_score"], {k: v.clone() for k, v in sketch_net.state_dict().items()},
                        {k: v.clone() for k, v in photo_net.state_dict().items()})
        if timed_out:
            print(f"time limit ({cfg.max_minutes} min) reached at step {step}", flush=True)
            break
    sketch_net.load_state_dict(best[1])
    photo_net.load_state_dict(best[2])
    val = evaluate_split(sketch_net, photo_net, domains, "val", probs_cache)
    w, threshold = pick_weight(val), pick_threshold(val)
    test = evaluate_split(sketch_net, photo_net, domains, "test", probs_cache)
    report = {"config": asdict(cfg), "fusion_weight": w, "default_threshold": threshold, "class_gate": CLASS_GATE,
              "val": val, "test": test,
              "minutes": round((time.time() - t_start) / 60, 1)}
    torch.save({"config": asdict(cfg), "sketch_state_dict": best[1], "photo_state_dict": best[2],
                "pca_mean": pca_mean, "pca_components": pca_components,
                "fusion_weight": w, "default_threshold": threshold, "class_gate": CLASS_GATE,
                "best_val_score": best[0]}, out / "ckpt.pt")
    (out / "curves.json").write_text(json.dumps(curves, indent=1) + "\n")
    (out / "report.json").write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps(summary(report)), flush=True)
    return report


def summary(report: dict) -> dict:
    """The headline test figures of a run's report."""
    t, w = report["test"], str(report["fusion_weight"])
    return {"fusion_weight": report["fusion_weight"],
            "shoes": {k: round(v, 3) for k, v in t["shoes"]["instance_only"].items()},
            "sketchy_two_stage": {k: round(v, 3) for k, v in t["sketchy"]["fusion"][w].items()},
            "sketchy_class_order": {k: round(v, 3) for k, v in t["sketchy"]["fusion"]["0.0"].items()},
            "sketchy_instance_only": {k: round(v, 3) for k, v in t["sketchy"]["instance_only"].items()}}


if __name__ == "__main__":
    main()

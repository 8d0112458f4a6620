"""Train the `cgan` backend, version 2: an imaginary photo that reads as a photo, on two CPU cores.

What changed from `sbir_core.train.cgan` (version 1), each for a reason seen in version 1's photos:
- **More aligned pairs** (SketchyGAN, Chen & Hays 2018): besides Sketchy's (sketch, photo) pairs,
  (edge map of a photo, photo) pairs from every photo at hand that no evaluation uses: Sketchy and
  10-class `train` photos, `../shared/data/gallery_photos/` and the bundled demo gallery. Edge maps
  come from the project's one edge-map function (`train.features.edge_map`), are prepared exactly as
  sketches are, and the share of edge-map pairs in a batch moves from `edge_start` to `edge_end`
  over the run (edges first, sketches later). Pairs are mirrored and jittered together.
- **No checkerboard**: G upsamples by resize-then-convolve, not transposed convolutions; a
  two-scale PatchGAN (64 and 32 px) with pix2pixHD's feature matching.
- **Class conditioning**: G's bottleneck also sees an embedding of the shipped sketch classifier's
  posterior (`models/classifier.json`, 365 classes), so colour and texture can follow the class the
  sketch is read as. The posterior of every training sketch and edge map is computed once, with the
  ONNX files serving runs (`classifier_files()`: the classifier's trunk file + `classifier_head.onnx`; v2 was
  trained with the block-13 classifier, so a retrain reads the posterior of the one shipped now).
- **E1 tied to E2**: the imaginary photo is embedded by the same frozen ImageNet EfficientNet-Lite0
  (E2) as the gallery photos; the feature loss (mid + high, as in version 1) trains G alone. This
  keeps the new model files small (the sketch side ships G only and reuses `backbone_lite0.onnx`) and a
  CPU step cheap.

G sees the sketch as the classifier does (192 px, `sketch_input`) and average-pools it to `res`
inside the network, so serving prepares one input for both. Everything (uint8 arrays, posteriors,
E2's features of each photo and its mirror image) is cached once under `.cache/cgan/`.

    python -m sbir_core.train.cgan_v2 --max-minutes 40 [--resume]
"""
from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

if TYPE_CHECKING:
    from PIL import Image

from . import add_config_arguments
from ..config import data_dir
from ..data.preprocess import Preprocess, prepare_photo, prepare_sketch
from ..data.splits import split_of
from ..nets.backbone import freeze, lite0
from ..nets.perceptual import MidHighEncoder
from ..nets.pix2pix import MultiScaleDiscriminator, UNetGenerator, init_weights
from .cgan import (balanced_subset, grid_image, log_curve, photo_tensor, random_jitter, resolve, sketchy_pairs,
                   to_unit)


def classifier_files() -> list[str]:
    """The shipped sketch classifier's ONNX chain (trunk file + head), as `models/classifier.json`
    names it: the class reading G is conditioned on and the cGAN backend mixes in follows a retrain."""
    from ..backends.onnx_model import read_meta
    return list(read_meta("classifier")["sketch_model"])


CLASSIFIER_RES = 192
N_CLASSES = 365


@dataclass
class CGANv2Config:
    """Everything that defines a run; saved with every checkpoint."""
    version: int = 2
    res: int = 64                    # G's output side
    sketch_res: int = 192            # the sketch input side (the classifier's); pooled to `res` inside G
    feat_res: int = 128              # E2's input side: G's output is upsampled to it
    ngf: int = 32
    max_mult: int = 4
    n_dropout: int = 2
    upsample: str = "resize"         # "resize" (no checkerboard) or "transpose" (version 1)
    cond: str = "classifier"         # "classifier": G sees the classifier's posterior; "none"
    cond_emb: int = 64
    ndf: int = 64
    d_layers: int = 2
    d_scales: int = 2
    jitter: int = 4                  # px at `res`; the pair moves together (E2 targets of the unjittered photo)
    edge_start: float = 0.8          # share of edge-map pairs at the start of the run ...
    edge_end: float = 0.2            # ... and at its end (linear in progress)
    extra_photos: bool = True        # edge-map pairs of gallery_photos/ and the bundled gallery too
    batch: int = 16
    steps: int = 100000
    max_minutes: float = 40.0        # the schedule runs on max(step / steps, minutes / max_minutes)
    lambda_gan: float = 1.0
    lambda_fm: float = 10.0
    lambda_l1: float = 100.0
    lambda_feat: float = 2.0         # at 10 the pooled-feature term's pixel gradient was 4x L1's and almost all
                                     # high-frequency: G painted speckle that E2 reads as photo features (run 2)
    feat_mid_weight: float = 0.1     # the mid-level (spatial) term's share: at 1 G painted speckle (run 1)
    lr_g: float = 2e-4
    lr_d: float = 1e-4               # D at 2e-4 won within 200 steps (run 1: D loss 0.02)
    betas: tuple[float, float] = (0.5, 0.999)
    seed: int = 0
    threads: int = 1
    eval_every: int = 100
    save_every_s: float = 120.0
    val_queries: int = 320
    limit_photos: int = 0            # tests: only the first N train photos
    out_dir: str = "runs/cgan_v2"
    cache_dir: str = ".cache/cgan"
    curves_path: str = "runs/cgan_v2/curves.json"
    data: str = ""

    def sketch_preprocess(self) -> Preprocess:
        return Preprocess(size=self.sketch_res)

    def photo_preprocess(self) -> Preprocess:
        return Preprocess(size=self.feat_res)


# ---------------------------------------------------------------------------------------------
# the generator as served: (sketch at sketch_res, posterior) -> imaginary photo
# ---------------------------------------------------------------------------------------------
class Imaginer(nn.Module):
    """Sketch (B, 3, S, S) in [-1, 1] (+ class posterior (B, 365)) -> imaginary photo (B, 3, R, R)
    in [-1, 1]. The sketch is average-pooled from S to R first (S = 3R: the classifier's input)."""

    def __init__(self, cfg: CGANv2Config):
        super().__init__()
        self.factor = cfg.sketch_res // cfg.res
        if self.factor * cfg.res != cfg.sketch_res:
            raise ValueError(f"sketch_res {cfg.sketch_res} must be a multiple of res {cfg.res}")
        self.G = UNetGenerator(cfg.res, cfg.ngf, cfg.max_mult, cfg.n_dropout, upsample=cfg.upsample,
                               cond_dim=N_CLASSES if cfg.cond == "classifier" else 0, cond_emb=cfg.cond_emb)

    def pool(self, x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(x, self.factor) if self.factor > 1 else x

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        return self.G(self.pool(x), cond)


def build_nets(cfg: CGANv2Config) -> tuple[Imaginer, MultiScaleDiscriminator]:
    G = Imaginer(cfg)
    D = MultiScaleDiscriminator(cfg.ndf, cfg.d_layers, cfg.d_scales)
    G.apply(init_weights)
    D.apply(init_weights)
    return G, D


def to_e2(y: torch.Tensor, feat_res: int) -> torch.Tensor:
    """G's output -> E2's input side (bilinear), as serving does it."""
    return F.interpolate(y, size=(feat_res, feat_res), mode="bilinear", align_corners=False) \
        if y.shape[-1] != feat_res else y


# ---------------------------------------------------------------------------------------------
# data
# ---------------------------------------------------------------------------------------------
def extra_photo_paths(root: Path) -> list[Path]:
    """Photos no evaluation queries against Sketchy: gallery_photos/ and the bundled demo gallery."""
    from ..gallery import BUNDLED_DIR
    out = sorted((root / "gallery_photos").glob("*/*.jpg")) if (root / "gallery_photos").is_dir() else []
    bundled = BUNDLED_DIR / "images"
    out += sorted(p for p in bundled.glob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png")) if bundled.is_dir() else []
    return out


def class_posteriors(images: np.ndarray, batch: int = 32) -> np.ndarray:
    """(N, S, S) uint8 sketches (prepared at the classifier's side) -> (N, 365) float16 posteriors,
    through the same ONNX chain serving runs."""
    from ..backends.onnx_model import OnnxChain
    from ..config import MODELS_DIR
    chain = OnnxChain.load(classifier_files(), MODELS_DIR, threads=1)
    out = []
    for i in range(0, len(images), batch):
        x = np.repeat(((images[i:i + batch].astype(np.float32) / 255.0 - 0.5) / 0.5)[:, None], 3, axis=1)
        out.append(chain(x)[0].astype(np.float16))
        if i % (batch * 40) == 0:
            print(f"  posteriors {i}/{len(images)}", flush=True)
    return np.concatenate(out)


def build_cache(cfg: CGANv2Config) -> dict[str, np.ndarray]:
    """Sketches and edge maps (uint8 at sketch_res), photos (uint8 at res), posteriors, E2's mid/high
    features of each photo and its mirror image. One .npz per (sizes, data)."""
    from .features import edge_map
    root = Path(cfg.data) if cfg.data else data_dir()
    photos, sketches = sketchy_pairs(root)                          # train + val only
    if cfg.limit_photos:
        by = {k: [p.photo_id for p in photos if split_of(p.photo_id) == k] for k in ("train", "val")}
        keep = set(by["train"][:cfg.limit_photos]) | set(by["val"][:max(2, cfg.limit_photos // 4)])
        photos = [p for p in photos if p.photo_id in keep]
    pid = {p.photo_id: i for i, p in enumerate(photos)}
    sketches = [s for s in sketches if s.photo_id in pid]
    extras = extra_photo_paths(root) if cfg.extra_photos and not cfg.limit_photos else []
    paths = [p.path for p in photos] + extras
    tag = f"v2_r{cfg.res}_s{cfg.sketch_res}_f{cfg.feat_res}_p{len(photos)}_x{len(extras)}_s{len(sketches)}"
    path = resolve(cfg.cache_dir) / f"pairs_{tag}.npz"
    if path.is_file():
        return dict(np.load(path))
    t0 = time.time()
    print(f"caching {len(sketches)} sketches, {len(paths)} photos ({len(extras)} extra) -> {path}", flush=True)
    sk = np.stack([np.asarray(prepare_sketch(s.path, CLASSIFIER_RES)) for s in sketches])            # (Ns, 192, 192)
    split = np.asarray([split_of(p.photo_id) for p in photos] + ["extra"] * len(extras))
    edge_src = np.nonzero(split != "val")[0]                          # val photos stay unseen
    edges, keep_e = [], []
    for i in edge_src:
        try:
            edges.append(np.asarray(prepare_sketch(edge_map(prepare_photo(paths[i], 256)), CLASSIFIER_RES)))
            keep_e.append(i)
        except Exception as e:  # noqa: BLE001 - a photo without edges (blank) is simply not used
            print(f"  no edge map for {paths[i]}: {e}", flush=True)
    edges = np.stack(edges)
    print(f"  sketches + edge maps in {time.time() - t0:.0f} s", flush=True)
    ph = np.stack([np.asarray(prepare_photo(p, cfg.res)) for p in paths])                           # (Np, R, R, 3)
    ph_big = np.stack([np.asarray(prepare_photo(p, cfg.feat_res)) for p in paths])                  # (Np, F, F, 3)
    post_s, post_e = class_posteriors(sk), class_posteriors(edges)
    print(f"  posteriors in {time.time() - t0:.0f} s", flush=True)
    if cfg.sketch_res != CLASSIFIER_RES:     # small test configs: the classifier still reads 192 px
        from PIL import Image
        shrink = lambda a: np.stack([np.asarray(Image.fromarray(x).resize((cfg.sketch_res,) * 2, Image.Resampling.BOX))  # noqa: E731
                                     for x in a])
        sk, edges = shrink(sk), shrink(edges)
    e2 = freeze(MidHighEncoder(lite0()))
    mids, highs = [], []
    with torch.no_grad():
        for flip in (False, True):
            m_all, h_all = [], []
            for i in range(0, len(ph_big), 64):
                x = photo_tensor(ph_big[i:i + 64])
                m = e2.mid(x.flip(3) if flip else x)
                m_all.append(m.half().numpy())
                h_all.append(e2.high(m).numpy())
            mids.append(np.concatenate(m_all))
            highs.append(np.concatenate(h_all))
    labels = sorted({p.label for p in photos})
    out = {"sketches": sk, "sketch_photo": np.asarray([pid[s.photo_id] for s in sketches]),
           "sketch_post": post_s, "edges": edges, "edge_photo": np.asarray(keep_e), "edge_post": post_e,
           "photos": ph, "photo_split": split,
           "photo_label": np.asarray([labels.index(p.label) for p in photos] + [-1] * len(extras)),
           "e2_mid": np.stack(mids), "e2_high": np.stack(highs)}
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **out)
    print(f"  cache written in {time.time() - t0:.0f} s", flush=True)
    return out


def sketch_batch(a: np.ndarray) -> torch.Tensor:
    """(B, S, S) uint8 -> (B, 3, S, S) in [-1, 1], as `sketch_input` makes them."""
    return to_unit(torch.from_numpy(a)).unsqueeze(1).expand(-1, 3, -1, -1).contiguous()


def edge_share(cfg: CGANv2Config, progress: float) -> float:
    """SketchyGAN's schedule: mostly edge maps first, mostly sketches at the end."""
    p = min(max(progress, 0.0), 1.0)
    return cfg.edge_start + (cfg.edge_end - cfg.edge_start) * p


# ---------------------------------------------------------------------------------------------
# monitoring
# ---------------------------------------------------------------------------------------------
@torch.no_grad()
def validate(cfg: CGANv2Config, G: Imaginer, e2: MidHighEncoder, data: dict, val_sk: np.ndarray) -> dict[str, float]:
    """val L1 and val mAP@all: E2(G(s)) of val sketches against E2 of the val photos, by class."""
    from ..evaluate import metrics
    G.eval()
    l1s, embs = [], []
    for i in range(0, len(val_sk), 32):
        idx = val_sk[i:i + 32]
        y = G(sketch_batch(data["sketches"][idx]), cond_of(cfg, data["sketch_post"][idx]))
        p = photo_tensor(data["photos"][data["sketch_photo"][idx]])
        l1s.append(float((y - p).abs().mean()) * len(idx))
        embs.append(F.normalize(e2(to_e2(y, cfg.feat_res)), dim=1))
    G.train()
    val_ph = np.nonzero(data["photo_split"] == "val")[0]
    gal = F.normalize(torch.from_numpy(data["e2_high"][0][val_ph]), dim=1)
    scores = (torch.cat(embs) @ gal.T).numpy()
    m = metrics(scores, list(data["photo_label"][data["sketch_photo"][val_sk]]), list(data["photo_label"][val_ph]))
    return {"val_l1": sum(l1s) / len(val_sk), "val_mAP": m["mAP@all"], "val_P@20": m["P@20"]}


def cond_of(cfg: CGANv2Config, post: np.ndarray) -> torch.Tensor | None:
    return torch.from_numpy(post.astype(np.float32)) if cfg.cond == "classifier" else None


@torch.no_grad()
def sample_grid(cfg: CGANv2Config, G: Imaginer, data: dict, idx: np.ndarray) -> "Image.Image":
    G.eval()
    y = G(sketch_batch(data["sketches"][idx]), cond_of(cfg, data["sketch_post"][idx]))
    G.train()
    imag = ((y.permute(0, 2, 3, 1).numpy() + 1) * 127.5).clip(0, 255).round().astype(np.uint8)
    sk = G.pool(sketch_batch(data["sketches"][idx]))[:, 0].numpy()
    sk = np.repeat(((sk + 1) * 127.5).round().astype(np.uint8)[..., None], 3, axis=3)
    return grid_image(list(zip(sk, imag, data["photos"][data["sketch_photo"][idx]])))


# ---------------------------------------------------------------------------------------------
# training
# ---------------------------------------------------------------------------------------------
def train(cfg: CGANv2Config, resume: bool = False) -> Path:
    """Run (or continue) training, time-boxed by `max_minutes`; returns the checkpoint path."""
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    out = resolve(cfg.out_dir)
    (out / "samples").mkdir(parents=True, exist_ok=True)
    data = build_cache(cfg)
    split_of_sk = data["photo_split"][data["sketch_photo"]]
    train_sk = np.nonzero(split_of_sk == "train")[0]
    val_all = np.nonzero(split_of_sk == "val")[0]
    val_sk = balanced_subset(val_all, data["photo_label"][data["sketch_photo"][val_all]], 3, cfg.val_queries)
    train_cls = data["photo_label"][data["sketch_photo"][train_sk]]
    p_sk = 1.0 / np.bincount(train_cls)[train_cls]
    p_sk /= p_sk.sum()                                                # class-balanced sketches
    n_edges = len(data["edges"])
    grid_idx = val_sk[np.linspace(0, len(val_sk) - 1, min(8, len(val_sk))).astype(int)]
    mid_scale = float(np.mean(data["e2_mid"][0].astype(np.float32) ** 2))
    high_scale = float(np.mean(data["e2_high"][0] ** 2))
    e2_mid, e2_high = torch.from_numpy(data["e2_mid"]), torch.from_numpy(data["e2_high"])
    print(f"{len(train_sk)} train sketch pairs, {n_edges} edge-map pairs, {len(val_sk)} val queries", flush=True)

    G, D = build_nets(cfg)
    e2 = freeze(MidHighEncoder(lite0()))
    opt_g = torch.optim.Adam(G.parameters(), lr=cfg.lr_g, betas=cfg.betas)
    opt_d = torch.optim.Adam(D.parameters(), lr=cfg.lr_d, betas=cfg.betas)
    step, curves, best, minutes_before = 0, [], -1.0, 0.0
    ckpt_path, best_path = out / "ckpt.pt", out / "best.pt"
    if resume and ckpt_path.is_file():
        ck = torch.load(ckpt_path, map_location="cpu", weights_only=False)
        for m, k in ((G, "G"), (D, "D"), (opt_g, "opt_g"), (opt_d, "opt_d")):
            m.load_state_dict(ck[k])
        step, curves, best, minutes_before = ck["step"], ck["curves"], ck["best_val_mAP"], ck["minutes"]
        rng = np.random.default_rng(cfg.seed + step)
        print(f"resumed at step {step} ({minutes_before:.1f} min)", flush=True)
    t_start = t_saved = time.time()

    def minutes() -> float:
        return minutes_before + (time.time() - t_start) / 60

    def save(path: Path) -> None:
        torch.save({"G": G.state_dict(), "D": D.state_dict(), "opt_g": opt_g.state_dict(), "opt_d": opt_d.state_dict(),
                    "step": step, "curves": curves, "best_val_mAP": best, "minutes": minutes(),
                    "config": asdict(cfg)}, str(path) + ".tmp")
        os.replace(str(path) + ".tmp", path)

    (out / "config.json").write_text(json.dumps(asdict(cfg), indent=1) + "\n")
    curves_path = resolve(cfg.curves_path)
    run = {"d": 0.0, "gan": 0.0, "fm": 0.0, "l1": 0.0, "feat": 0.0, "n": 0}
    done = False
    while not done:
        progress = max(step / cfg.steps, minutes() / cfg.max_minutes if cfg.max_minutes else 0.0)
        share = edge_share(cfg, progress)
        n_e = int(rng.binomial(cfg.batch, share))
        si = rng.choice(train_sk, cfg.batch - n_e, replace=False, p=p_sk)
        ei = rng.choice(n_edges, n_e, replace=False)
        s_img = np.concatenate([data["sketches"][si], data["edges"][ei]])                      # (B, S, S)
        post = np.concatenate([data["sketch_post"][si], data["edge_post"][ei]])                # (B, 365)
        pi = np.concatenate([data["sketch_photo"][si], data["edge_photo"][ei]])               # (B,)
        flip = torch.from_numpy(rng.random(cfg.batch) < 0.5)
        s = G.pool(sketch_batch(s_img))                                                        # (B, 3, R, R)
        p = photo_tensor(data["photos"][pi])
        fl = flip[:, None, None, None]
        s, p = torch.where(fl, s.flip(3), s), torch.where(fl, p.flip(3), p)
        if cfg.jitter:
            s, p = random_jitter(s, p, cfg.jitter, rng)
        t_mid, t_high = e2_mid[flip.long(), pi].float(), e2_high[flip.long(), pi]
        cond = cond_of(cfg, post)

        fake = G.G(s, cond)                                                                    # (B, 3, R, R)
        # D step (LSGAN at every scale)
        d_real, d_fake = D(s, p), D(s, fake.detach())
        d_loss = sum(0.5 * (F.mse_loss(r, torch.ones_like(r)) + F.mse_loss(f, torch.zeros_like(f)))
                     for r, f in zip(d_real, d_fake)) / len(d_real)
        opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        opt_d.step()
        # G step: fool D, match D's features of the real pair, stay near the photo, match E2's features
        D.requires_grad_(False)
        f_fake = D.features(s, fake)
        with torch.no_grad():
            f_real = D.features(s, p)
        g_gan = sum(F.mse_loss(f[-1], torch.ones_like(f[-1])) for f in f_fake) / len(f_fake)
        g_fm = sum(F.l1_loss(a, b) for fa, fr in zip(f_fake, f_real) for a, b in zip(fa[:-1], fr[:-1])) / len(f_fake)
        g_l1 = (fake - p).abs().mean()
        mid = e2.mid(to_e2(fake, cfg.feat_res))
        g_feat = cfg.feat_mid_weight * F.mse_loss(mid, t_mid) / mid_scale + F.mse_loss(e2.high(mid), t_high) / high_scale
        g_loss = cfg.lambda_gan * g_gan + cfg.lambda_fm * g_fm + cfg.lambda_l1 * g_l1 + cfg.lambda_feat * g_feat
        opt_g.zero_grad(set_to_none=True)
        g_loss.backward()
        D.requires_grad_(True)
        opt_g.step()
        step += 1
        done = step >= cfg.steps or (cfg.max_minutes and minutes() >= cfg.max_minutes)

        for k, v in (("d", d_loss), ("gan", g_gan), ("fm", g_fm), ("l1", g_l1), ("feat", g_feat)):
            run[k] += v.item()
        run["n"] += 1
        if step % 25 == 0:
            print(f"step {step}  " + "  ".join(f"{k} {run[k] / run['n']:.3f}" for k in ("d", "gan", "fm", "l1", "feat"))
                  + f"  edges {share:.2f}  {minutes():.1f} min", flush=True)
        if step % cfg.eval_every == 0 or done:
            sample_grid(cfg, G, data, grid_idx).save(out / "samples" / f"step{step:06d}.png")
            row = {"step": step, **{k: round(run[k] / max(run["n"], 1), 5) for k in ("d", "gan", "fm", "l1", "feat")},
                   **{k: round(v, 5) for k, v in validate(cfg, G, e2, data, val_sk).items()},
                   "edge_share": round(share, 3), "minutes": round(minutes(), 2)}
            log_curve(curves, row, curves_path)
            run = {k: 0.0 for k in run} | {"n": 0}
            if row["val_mAP"] > best:
                best = row["val_mAP"]
                save(best_path)
        if time.time() - t_saved > cfg.save_every_s or done:
            save(ckpt_path)
            t_saved = time.time()
    return ckpt_path


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m sbir_core.train.cgan_v2", description=__doc__.split("\n\n")[0])
    add_config_arguments(ap, CGANv2Config, skip=("betas", "version"))
    ap.add_argument("--resume", action="store_true", help="continue from <out-dir>/ckpt.pt")
    a = vars(ap.parse_args(argv))
    resume = a.pop("resume")
    train(CGANv2Config(**a), resume=resume)


if __name__ == "__main__":
    main()

"""Train the `cgan` backend (Guo et al., ACM MM 2017): a pix2pix generator G imagines the photo
behind a sketch, and an encoder E1 embeds that imaginary photo where the frozen ImageNet encoder E2
embeds real photos. One flat loop, D step then G/E1 step:

    L_D   = LSGAN(D(s, p), real) + LSGAN(D(s, G(s)), fake)
    L_G   = λ1·LSGAN(D(s, G(s)), real) + λ2·|G(s) - p|₁ + λ3·(MSE_mid + MSE_high)(E1(G(s)), E2(p))

    python -m sbir_core.train.cgan [--steps N --res 64 --resume]

Pairs are Sketchy sketches and their own photos (the 125-class set and the complete 10-class set,
deduplicated), photos of the `train` split only; `val` is for monitoring; `test` is never read.
E2's features of every training photo (and its mirror image) are computed once and cached in
`.cache/cgan/`, so E2 never runs in the loop. Checkpoints, the resolved config and sample grids
go to `runs/cgan/`; loss and validation curves to `models/cgan_curves.json`.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from . import add_config_arguments
from ..config import REPO_ROOT, data_dir
from ..data.preprocess import Preprocess, prepare_photo, prepare_sketch
from ..data.readers import sketchy
from ..data.splits import split_of
from ..nets.backbone import freeze, lite0
from ..nets.perceptual import MidHighEncoder
from ..nets.pix2pix import PatchDiscriminator, UNetGenerator, init_weights


@dataclass
class CGANConfig:
    """Everything that defines a run; saved with every checkpoint."""
    res: int = 64                    # sketch and imaginary-photo side (256 on a GPU)
    feat_res: int = 128              # E1/E2 input side: G's output is upsampled to it
    ngf: int = 32                    # generator base width
    max_mult: int = 4                # generator widths stop at ngf * max_mult (keeps the ONNX file lean)
    n_dropout: int = 2               # innermost decoder layers with dropout (the noise)
    jitter: int = 0                  # pix2pix's random jitter: pairs resized to res + jitter, cropped back at
                                     # one random offset (E2's targets are then computed per batch, not cached)
    ndf: int = 64
    d_layers: int = 2                # PatchGAN strided layers: 2 at 64 px, 3 at 256 px
    batch: int = 16
    steps: int = 3000
    max_minutes: float = 0.0         # stop early after this much training time (0 = no limit); for leased GPUs
    lambda_gan: float = 1.0
    lambda_l1: float = 100.0
    lambda_feat: float = 10.0        # on MSE / mean(E2 feature²), mid + high
    lr_g: float = 2e-4
    lr_d: float = 2e-4
    lr_e1: float = 1e-4
    betas: tuple[float, float] = (0.5, 0.999)
    e1_mid_frozen_steps: int = 500   # E1 trains only its high stages at first: G's early outputs are noise
    seed: int = 0
    device: str = "auto"             # auto: cuda when available, else cpu
    threads: int = 1                 # CPU threads (1 is faster than 2 on a shared 2-core machine)
    sample_every: int = 250
    eval_every: int = 250
    save_every_s: float = 300.0
    val_queries: int = 320           # val sketches used for val_l1 / val_mAP (at most 3 per class)
    balance_classes: bool = True     # sample classes uniformly: 10 classes hold 2/3 of the pairs
    limit_photos: int = 0            # use only the first N train/val photos (tests)
    out_dir: str = "runs/cgan"
    cache_dir: str = ".cache/cgan"
    curves_path: str = str(Path("models") / "cgan_curves.json")
    data: str = ""                   # the shared data folder; "" = SBIR_DATA_DIR or ../shared/data

    def sketch_preprocess(self) -> Preprocess:
        return Preprocess(size=self.res)

    def photo_preprocess(self) -> Preprocess:
        return Preprocess(size=self.feat_res)


def resolve(path: str) -> Path:
    p = Path(path)
    return p if p.is_absolute() else REPO_ROOT / p


# ---------------------------------------------------------------------------------------------
# data: paired sketches/photos as uint8 arrays in memory, plus E2's cached features
# ---------------------------------------------------------------------------------------------
def sketchy_pairs(root: Path) -> tuple[list, list]:
    """(photos, sketches) of both Sketchy folders, deduplicated by photo id and sketch name,
    keeping only photos (and their sketches) of the train and val splits."""
    photos, sketches, seen_p, seen_s = [], [], set(), set()
    for sub in ("sketchy", "sketchy_10class"):
        if not (root / sub).is_dir():
            continue
        ps, ss = sketchy(root / sub)
        for it in ps:
            if it.photo_id not in seen_p and split_of(it.photo_id) in ("train", "val"):
                seen_p.add(it.photo_id)
                photos.append(it)
        for it in ss:
            if it.path.stem not in seen_s and split_of(it.photo_id) in ("train", "val"):
                seen_s.add(it.path.stem)
                sketches.append(it)
    return photos, sketches


def build_cache(cfg: CGANConfig) -> dict[str, np.ndarray]:
    """Preprocessed sketches and photos (uint8) and E2's mid/high features of each photo and of its
    mirror image, computed once per (res, feat_res, data) and stored as one .npz."""
    root = Path(cfg.data) if cfg.data else data_dir()
    photos, sketches = sketchy_pairs(root)
    if cfg.limit_photos:   # a few train photos and a quarter as many val photos (tests)
        by_split = {k: [p.photo_id for p in photos if split_of(p.photo_id) == k] for k in ("train", "val")}
        keep = set(by_split["train"][:cfg.limit_photos]) | set(by_split["val"][:max(2, cfg.limit_photos // 4)])
        photos = [p for p in photos if p.photo_id in keep]
    pid_index = {p.photo_id: i for i, p in enumerate(photos)}
    sketches = [s for s in sketches if s.photo_id in pid_index]
    tag = f"r{cfg.res}_f{cfg.feat_res}_p{len(photos)}_s{len(sketches)}"
    path = resolve(cfg.cache_dir) / f"pairs_{tag}.npz"
    if path.is_file():
        return dict(np.load(path))
    print(f"caching {len(sketches)} sketches / {len(photos)} photos -> {path}", flush=True)
    sk = np.stack([np.asarray(prepare_sketch(s.path, cfg.res)) for s in sketches])             # (Ns, R, R)
    ph = np.stack([np.asarray(prepare_photo(p.path, cfg.res)) for p in photos])                 # (Np, R, R, 3)
    ph_big = np.stack([np.asarray(prepare_photo(p.path, cfg.feat_res)) for p in photos])        # (Np, F, F, 3)
    e2 = freeze(MidHighEncoder(lite0()))
    mids, highs = [], []
    with torch.no_grad():
        for flip in (False, True):
            m_all, h_all = [], []
            for i in range(0, len(ph_big), 64):
                x = to_unit(torch.from_numpy(ph_big[i:i + 64]).permute(0, 3, 1, 2))           # (B, 3, F, F)
                if flip:
                    x = x.flip(3)
                m = e2.mid(x)                                                                  # (B, 112, F/16, F/16)
                m_all.append(m.half().numpy())
                h_all.append(e2.high(m).numpy())                                                  # (B, 1280)
            mids.append(np.concatenate(m_all))
            highs.append(np.concatenate(h_all))
    labels = sorted({p.label for p in photos})
    out = {"sketches": sk, "photos": ph, "sketch_photo": np.asarray([pid_index[s.photo_id] for s in sketches]),
           "photo_split": np.asarray([split_of(p.photo_id) for p in photos]),
           "photo_label": np.asarray([labels.index(p.label) for p in photos]),
           "e2_mid": np.stack(mids), "e2_high": np.stack(highs)}                                 # (2, Np, ...)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **out)
    return out


def balanced_subset(idx: np.ndarray, labels: np.ndarray, per_class: int, limit: int) -> np.ndarray:
    """At most `per_class` of `idx` per label (and `limit` in all): a val set every class weighs in."""
    keep = [i for c in np.unique(labels) for i in idx[labels == c][:per_class]]
    return np.sort(np.asarray(keep[:limit] if limit else keep, dtype=np.int64))


def to_unit(x: torch.Tensor) -> torch.Tensor:
    """uint8 images -> float in [-1, 1]: the same numbers as Preprocess(mean=std=0.5)."""
    return (x.float() / 255.0 - 0.5) / 0.5


def sketch_tensor(a: np.ndarray) -> torch.Tensor:
    """(B, R, R) uint8 grey sketches -> (B, 3, R, R), as `sketch_input` makes them."""
    return to_unit(torch.from_numpy(a)).unsqueeze(1).expand(-1, 3, -1, -1).contiguous()


def random_jitter(s: torch.Tensor, p: torch.Tensor, jitter: int, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """pix2pix's jitter: sketch and photo (B, 3, R, R) enlarged to R + jitter, then each pair cropped
    back to R at one random offset, so G cannot learn the training pairs pixel for pixel."""
    r = s.shape[-1]
    big = F.interpolate(torch.cat([s, p], 1), size=(r + jitter, r + jitter), mode="bilinear", align_corners=False)
    off = rng.integers(0, jitter + 1, size=(len(s), 2))
    crops = torch.stack([big[i, :, y:y + r, x:x + r] for i, (y, x) in enumerate(off)])
    return crops[:, :3], crops[:, 3:]


def photo_tensor(a: np.ndarray) -> torch.Tensor:
    """(B, R, R, 3) uint8 photos -> (B, 3, R, R) in [-1, 1]."""
    return to_unit(torch.from_numpy(a).permute(0, 3, 1, 2)).contiguous()


# ---------------------------------------------------------------------------------------------
# the imaginary-photo encoder path, shared by training and export
# ---------------------------------------------------------------------------------------------
def encode_imaginary(e1: MidHighEncoder, y: torch.Tensor, feat_res: int) -> tuple[torch.Tensor, torch.Tensor]:
    """G's output (B, 3, R, R) in [-1, 1] -> E1's mid (B, 112, F/16, F/16) and high (B, 1280) features."""
    if y.shape[-1] != feat_res:
        y = F.interpolate(y, size=(feat_res, feat_res), mode="bilinear", align_corners=False)
    mid = e1.mid(y)
    return mid, e1.high(mid)


def build_nets(cfg: CGANConfig, pretrained: bool = True) -> tuple[UNetGenerator, PatchDiscriminator, MidHighEncoder]:
    G = UNetGenerator(cfg.res, cfg.ngf, cfg.max_mult, cfg.n_dropout)
    D = PatchDiscriminator(cfg.ndf, cfg.d_layers)
    G.apply(init_weights)
    D.apply(init_weights)
    e1 = MidHighEncoder(lite0(pretrained=pretrained))
    return G, D, e1


def set_e1_mode(e1: MidHighEncoder, mid_trainable: bool) -> None:
    """E1 keeps ImageNet's batch-norm statistics (eval mode, so train == serve behaviour); its
    weights train, the mid-level stages' only once `mid_trainable`."""
    e1.eval()
    for p in e1.parameters():
        p.requires_grad_(True)
    for p in e1.mid_parameters():
        p.requires_grad_(mid_trainable)


# ---------------------------------------------------------------------------------------------
# monitoring: val losses, val retrieval, sample grids
# ---------------------------------------------------------------------------------------------
@torch.no_grad()
def validate(cfg: CGANConfig, G, e1, data: dict, val_sk: np.ndarray, device) -> dict[str, float]:
    """val L1 and val mAP@all (val sketches' E1(G(s)) vs E2 of the val photos, by class)."""
    from ..evaluate import metrics
    G.eval()
    l1s, embs = [], []
    for i in range(0, len(val_sk), 32):
        idx = val_sk[i:i + 32]
        s = sketch_tensor(data["sketches"][idx]).to(device)
        p = photo_tensor(data["photos"][data["sketch_photo"][idx]]).to(device)
        y = G(s)
        l1s.append(float((y - p).abs().mean()) * len(idx))
        embs.append(F.normalize(encode_imaginary(e1, y, cfg.feat_res)[1], dim=1).cpu())
    G.train()
    val_ph = np.nonzero(data["photo_split"] == "val")[0]
    gal = F.normalize(torch.from_numpy(data["e2_high"][0][val_ph]), dim=1)
    scores = (torch.cat(embs) @ gal.T).numpy()
    ql = data["photo_label"][data["sketch_photo"][val_sk]]
    m = metrics(scores, list(ql), list(data["photo_label"][val_ph]))
    return {"val_l1": sum(l1s) / len(val_sk), "val_mAP": m["mAP@all"], "val_P@20": m["P@20"]}


def grid_image(rows: list[tuple[np.ndarray, np.ndarray, np.ndarray]], scale: int = 2) -> Image.Image:
    """Rows of (sketch, imaginary, real) (R, R, 3) uint8 -> one image: sketch | imaginary | real."""
    tiles = [np.concatenate(r, axis=1) for r in rows]
    pad = np.full((2, tiles[0].shape[1], 3), 255, np.uint8)
    a = np.concatenate([x for t in tiles for x in (t, pad)][:-1], axis=0)
    im = Image.fromarray(a)
    return im.resize((im.width * scale, im.height * scale), Image.Resampling.LANCZOS)


def log_curve(curves: list[dict], row: dict, path: Path) -> None:
    """One evaluation row: printed, appended, and the whole curve rewritten (a stopped run keeps it)."""
    curves.append(row)
    print(json.dumps(row), flush=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(curves, indent=1) + "\n")


@torch.no_grad()
def sample_grid(G, data: dict, idx: np.ndarray, device) -> Image.Image:
    """Held-out sketches, their imaginary photos (eval mode: dropout off) and the real photos."""
    G.eval()
    y = G(sketch_tensor(data["sketches"][idx]).to(device)).cpu()                              # (B, 3, R, R)
    G.train()
    imag = ((y.permute(0, 2, 3, 1).numpy() + 1) * 127.5).clip(0, 255).round().astype(np.uint8)
    sk = np.repeat(data["sketches"][idx][..., None], 3, axis=3)
    real = data["photos"][data["sketch_photo"][idx]]
    return grid_image(list(zip(sk, imag, real)))


# ---------------------------------------------------------------------------------------------
# training
# ---------------------------------------------------------------------------------------------
def train(cfg: CGANConfig, resume: bool = False) -> Path:
    """Run (or continue) training; returns the checkpoint path."""
    device = torch.device("cuda" if cfg.device == "auto" and torch.cuda.is_available()
                          else ("cpu" if cfg.device == "auto" else cfg.device))
    if device.type == "cpu":
        torch.set_num_threads(cfg.threads)
    else:                            # fixed input sizes: let cuDNN pick its fastest kernels, TF32 allowed
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    out = resolve(cfg.out_dir)
    (out / "samples").mkdir(parents=True, exist_ok=True)
    curves_path = resolve(cfg.curves_path)

    data = build_cache(cfg)
    train_sk = np.nonzero(data["photo_split"][data["sketch_photo"]] == "train")[0]
    val_sk_all = np.nonzero(data["photo_split"][data["sketch_photo"]] == "val")[0]
    val_sk = balanced_subset(val_sk_all, data["photo_label"][data["sketch_photo"][val_sk_all]], 3, cfg.val_queries)
    # class-balanced sampling weights: without them the complete 10-class set dominates training
    train_cls = data["photo_label"][data["sketch_photo"][train_sk]]
    counts = np.bincount(train_cls)
    sample_p = 1.0 / counts[train_cls] if cfg.balance_classes else np.ones(len(train_sk))
    sample_p = sample_p / sample_p.sum()
    grid_idx = val_sk[np.linspace(0, len(val_sk) - 1, min(8, len(val_sk))).astype(int)]
    # feature scales: the MSEs are divided by E2's mean squared feature so λ3 reads as relative error
    mid_scale = float(np.mean(data["e2_mid"][0].astype(np.float32) ** 2))
    high_scale = float(np.mean(data["e2_high"][0] ** 2))
    e2_mid = torch.from_numpy(data["e2_mid"])                                                   # (2, Np, 112, f, f) fp16
    e2_high = torch.from_numpy(data["e2_high"])                                                 # (2, Np, 1280)
    print(f"{len(train_sk)} train pairs, {len(val_sk_all)} val sketches; device {device}", flush=True)

    G, D, e1 = build_nets(cfg)
    G, D, e1 = G.to(device), D.to(device), e1.to(device)
    e2 = freeze(MidHighEncoder(lite0())).to(device) if cfg.jitter else None   # targets of jittered photos
    opt_g = torch.optim.Adam(G.parameters(), lr=cfg.lr_g, betas=cfg.betas)
    opt_d = torch.optim.Adam(D.parameters(), lr=cfg.lr_d, betas=cfg.betas)
    opt_e = torch.optim.Adam(e1.parameters(), lr=cfg.lr_e1, betas=cfg.betas)
    step, curves, best = 0, [], -1.0
    ckpt_path, best_path = out / "ckpt.pt", out / "best.pt"
    if resume and ckpt_path.is_file():
        ck = torch.load(ckpt_path, map_location=device, weights_only=False)
        for m, k in ((G, "G"), (D, "D"), (e1, "E1"), (opt_g, "opt_g"), (opt_d, "opt_d"), (opt_e, "opt_e")):
            m.load_state_dict(ck[k])
        step, curves, best = ck["step"], ck["curves"], ck.get("best_val_mAP", -1.0)
        print(f"resumed at step {step}", flush=True)

    def save(path: Path) -> None:
        torch.save({"G": G.state_dict(), "D": D.state_dict(), "E1": e1.state_dict(), "opt_g": opt_g.state_dict(),
                    "opt_d": opt_d.state_dict(), "opt_e": opt_e.state_dict(), "step": step, "curves": curves,
                    "best_val_mAP": best, "config": asdict(cfg)}, str(path) + ".tmp")
        os.replace(str(path) + ".tmp", path)

    (out / "config.json").write_text(json.dumps(asdict(cfg), indent=1) + "\n")
    G.train()
    D.train()
    t_start = t_saved = time.time()
    run = {"d_loss": 0.0, "g_gan": 0.0, "g_l1": 0.0, "g_feat": 0.0, "n": 0}
    steps_per_epoch = math.ceil(len(train_sk) / cfg.batch)
    steps = cfg.steps
    while step < steps:
        set_e1_mode(e1, mid_trainable=step >= cfg.e1_mid_frozen_steps)
        # -- batch: random pairs, each mirrored with probability 1/2 (sketch, photo, E2 features) --
        idx = rng.choice(train_sk, cfg.batch, replace=False, p=sample_p)
        flip = torch.from_numpy(rng.random(cfg.batch) < 0.5)
        pi = torch.from_numpy(data["sketch_photo"][idx])
        s = sketch_tensor(data["sketches"][idx])                                            # (B, 3, R, R)
        p = photo_tensor(data["photos"][data["sketch_photo"][idx]])                          # (B, 3, R, R)
        fl = flip[:, None, None, None]
        s, p = torch.where(fl, s.flip(3), s).to(device), torch.where(fl, p.flip(3), p).to(device)
        if e2 is None:
            t_mid = e2_mid[flip.long(), pi].float().to(device)                              # (B, 112, f, f)
            t_high = e2_high[flip.long(), pi].to(device)                                    # (B, 1280)
        else:
            s, p = random_jitter(s, p, cfg.jitter, rng)
            with torch.no_grad():
                t_mid, t_high = encode_imaginary(e2, p, cfg.feat_res)

        # -- D step: real pairs -> 1, imaginary pairs -> 0 (LSGAN) --
        fake = G(s)                                                                          # (B, 3, R, R)
        d_real = D(s, p)
        d_fake = D(s, fake.detach())
        d_loss = 0.5 * (F.mse_loss(d_real, torch.ones_like(d_real)) + F.mse_loss(d_fake, torch.zeros_like(d_fake)))
        opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        opt_d.step()

        # -- G/E1 step: fool D, stay close to the photo, and let E1(G(s)) match E2(p) --
        D.requires_grad_(False)                                                              # D is fixed here
        d_fake = D(s, fake)
        g_gan = F.mse_loss(d_fake, torch.ones_like(d_fake))
        g_l1 = (fake - p).abs().mean()
        mid, high = encode_imaginary(e1, fake, cfg.feat_res)
        g_feat = F.mse_loss(mid, t_mid) / mid_scale + F.mse_loss(high, t_high) / high_scale
        g_loss = cfg.lambda_gan * g_gan + cfg.lambda_l1 * g_l1 + cfg.lambda_feat * g_feat
        opt_g.zero_grad(set_to_none=True)
        opt_e.zero_grad(set_to_none=True)
        g_loss.backward()
        D.requires_grad_(True)
        opt_g.step()
        opt_e.step()
        step += 1
        if cfg.max_minutes and time.time() - t_start > 60 * cfg.max_minutes:
            steps = step             # out of time: finish this step as the last one (samples, eval, save)

        for k, v in (("d_loss", d_loss), ("g_gan", g_gan), ("g_l1", g_l1), ("g_feat", g_feat)):
            run[k] += v.item()
        run["n"] += 1
        if step % 25 == 0:
            print(f"step {step}  d {run['d_loss'] / run['n']:.3f}  gan {run['g_gan'] / run['n']:.3f}  "
                  f"l1 {run['g_l1'] / run['n']:.3f}  feat {run['g_feat'] / run['n']:.3f}  "
                  f"{(time.time() - t_start) / 60:.1f} min", flush=True)
        if step % cfg.sample_every == 0 or step == steps:
            sample_grid(G, data, grid_idx, device).save(out / "samples" / f"step{step:06d}.png")
        if step % cfg.eval_every == 0 or step == steps:
            row = {"step": step, "epoch": round(step / steps_per_epoch, 3),
                   **{k: round(run[k] / max(run["n"], 1), 5) for k in ("d_loss", "g_gan", "g_l1", "g_feat")},
                   **{k: round(v, 5) for k, v in validate(cfg, G, e1, data, val_sk, device).items()},
                   "minutes": round((time.time() - t_start) / 60, 2)}
            log_curve(curves, row, curves_path)
            run = {k: 0.0 for k in run} | {"n": 0}
            if row["val_mAP"] > best:
                best = row["val_mAP"]
                save(best_path)
        if time.time() - t_saved > cfg.save_every_s or step == steps:
            save(ckpt_path)
            t_saved = time.time()
    if not best_path.is_file():
        save(best_path)
    return ckpt_path


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m sbir_core.train.cgan", description=__doc__.split("\n\n")[0])
    add_config_arguments(ap, CGANConfig, skip=("betas",))
    ap.add_argument("--resume", action="store_true", help="continue from runs/cgan/ckpt.pt")
    a = vars(ap.parse_args(argv))
    resume = a.pop("resume")
    train(CGANConfig(**a), resume=resume)


if __name__ == "__main__":
    main()

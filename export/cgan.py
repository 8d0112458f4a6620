"""Export the `cgan` backend: `python -m export.cgan [--ckpt runs/cgan/best.pt]`

Two ONNX files:
- `cgan_sketch.onnx`: generator G + encoder E1, sketch (B, 3, R, R) -> (imaginary photo in [0, 1]
  (B, 3, R, R), embedding (B, 1280)); R is the training resolution (128 for the shipped model).
  Exported in eval mode on purpose: dropout off, so one sketch always gives one imaginary photo and
  one ranking (pix2pix's test code keeps dropout on);
  G uses InstanceNorm and E1 ImageNet's frozen batch-norm statistics, so nothing else changes.
- `cgan_photo.onnx`: the frozen ImageNet encoder E2, pooled features of 128 px photos.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from torch import nn

from sbir_core.config import MODELS_DIR, REPO_ROOT
from sbir_core.nets.backbone import FEATURE_DIM, freeze, lite0
from sbir_core.nets.perceptual import MidHighEncoder
from sbir_core.nets.pix2pix import UNetGenerator
from sbir_core.train.cgan import CGANConfig, build_nets, encode_imaginary

from .common import CHECKPOINTS, export_onnx, ship_checkpoint, write_meta

SKETCH_FILE, PHOTO_FILE = "cgan_sketch.onnx", "cgan_photo.onnx"
DEFAULT_CKPT = REPO_ROOT / "runs" / "cgan" / "ckpt.pt"     # the last step; best.pt = best val mAP


class SketchToImaginary(nn.Module):
    """Sketch (B, 3, R, R) in [-1, 1] -> (imaginary photo (B, 3, R, R) in [0, 1], embedding (B, 1280))."""

    def __init__(self, G: UNetGenerator, e1: MidHighEncoder, feat_res: int):
        super().__init__()
        self.G, self.e1, self.feat_res = G, e1, feat_res

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        y = self.G(x)                                                     # (B, 3, R, R) in [-1, 1]
        _, emb = encode_imaginary(self.e1, y, self.feat_res)              # (B, 1280)
        return (y + 1) * 0.5, emb


def load_checkpoint(path: Path) -> tuple[CGANConfig, dict]:
    ck = torch.load(path, map_location="cpu", weights_only=False)
    cfg = dict(ck["config"])
    cfg["betas"] = tuple(cfg["betas"])
    return CGANConfig(**cfg), ck


def modules_from(cfg: CGANConfig, ck: dict | None = None, pretrained: bool = True) -> dict[str, tuple[nn.Module, int]]:
    """The two exported modules for a config (and checkpoint; random weights without one)."""
    G, _, e1 = build_nets(cfg, pretrained=pretrained)
    if ck is not None:
        G.load_state_dict(ck["G"])
        e1.load_state_dict(ck["E1"])
    e2 = MidHighEncoder(lite0(pretrained=pretrained))
    return {SKETCH_FILE: (SketchToImaginary(G, e1, cfg.feat_res).eval(), cfg.res),
            PHOTO_FILE: (freeze(e2), cfg.feat_res)}


def torch_modules(ckpt: Path | None = None) -> dict[str, tuple[nn.Module, int]]:
    """{ONNX file: (the torch module it was exported from, input size)}: for parity tests and benchmarks.
    The checkpoint is the one models/cgan.json names (models/checkpoints/cgan.pt: G and E1 in fp16,
    no optimiser state); without it only E2 is known."""
    if ckpt is None:
        meta = MODELS_DIR / "cgan.json"
        name = json.loads(meta.read_text()).get("checkpoint") if meta.is_file() else None
        ckpt = REPO_ROOT / name if name else DEFAULT_CKPT
    if ckpt.is_file():
        cfg, ck = load_checkpoint(ckpt)
        return modules_from(cfg, ck)
    cfg = CGANConfig()
    return {PHOTO_FILE: (freeze(MidHighEncoder(lite0())), cfg.feat_res)}


def export(cfg: CGANConfig, ck: dict | None, models_dir: Path, pretrained: bool = True,
           ckpt: Path | None = None) -> dict[str, float]:
    """Write both ONNX files and models/cgan.json; returns the parity error per file."""
    mods = modules_from(cfg, ck, pretrained)
    errs = {}
    (m, size), = [mods[SKETCH_FILE]]
    errs[SKETCH_FILE] = export_onnx(m, models_dir / SKETCH_FILE, size, output_names=("imaginary", "embedding"))
    (m, size), = [mods[PHOTO_FILE]]
    errs[PHOTO_FILE] = export_onnx(m, models_dir / PHOTO_FILE, size, output_names=("embedding",))
    train_config = {k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(cfg).items()}
    write_meta("cgan", {
        "backend": "cgan", "title": "cGAN (imaginary photo)",
        "description": ("pix2pix U-Net G imagines the photo behind the sketch; E1 (EfficientNet-Lite0, "
                        "trained) embeds it where the frozen ImageNet E2 embeds gallery photos "
                        "(Guo et al., ACM MM 2017)"),
        "sketch_model": SKETCH_FILE, "photo_model": PHOTO_FILE,
        "sketch_outputs": ["imaginary", "embedding"],
        "preprocess": cfg.sketch_preprocess().to_dict(), "photo_preprocess": cfg.photo_preprocess().to_dict(),
        "embedding_dim": FEATURE_DIM, "curves": "cgan_curves.json", "train_config": train_config,
        "train_steps": (ck or {}).get("step", 0),
        "checkpoint": ckpt.resolve().relative_to(REPO_ROOT).as_posix() if ckpt else None, "val_mAP": (ck or {}).get("best_val_mAP"),
        "onnx_parity_max_abs": max(errs.values()),
    }, models_dir)
    return errs


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m export.cgan")
    ap.add_argument("--ckpt", type=Path, default=DEFAULT_CKPT, help="checkpoint (default: the last step)")
    ap.add_argument("--samples", type=Path, help="also write a grid of held-out sketches and imaginary photos here")
    a = ap.parse_args(argv)
    if not a.ckpt.is_file():
        print(f"no checkpoint at {a.ckpt}; train with `python -m sbir_core.train.cgan` first")
        return
    shipped = CHECKPOINTS / "cgan.pt"
    if a.ckpt.resolve() != shipped.resolve():   # G and E1 only, fp16 (13 MB): the ONNX files come from these weights
        ship_checkpoint(a.ckpt, "cgan", keep=("G", "E1", "config", "step", "curves", "best_val_mAP"), fp16=True)
    cfg, ck = load_checkpoint(shipped)
    errs = export(cfg, ck, MODELS_DIR, ckpt=shipped)
    print(f"wrote {', '.join(str(MODELS_DIR / f) for f in errs)} (step {ck['step']}, parity {max(errs.values()):.1e})")
    if a.samples:
        print(f"wrote {sample_sheet(a.samples)}")



def sample_sheet(out: Path, per_row: int = 2, n: int = 8, size: int = 96) -> Path:
    """A grid of held-out (`test` split) Sketchy sketches, the imaginary photo the exported model
    makes for each (the serving path: sketch_input -> cgan_sketch.onnx), and the real photo."""
    import numpy as np
    from PIL import Image

    from sbir_core.backends.cgan import imaginary_image
    from sbir_core.backends.onnx_model import OnnxModel, read_meta
    from sbir_core.config import data_dir
    from sbir_core.data.preprocess import Preprocess, prepare_photo, prepare_sketch, sketch_input
    from sbir_core.data.readers import sketchy
    from sbir_core.data.splits import split_of

    meta = read_meta("cgan")
    pp = Preprocess.from_dict(meta["preprocess"])
    model = OnnxModel.load(MODELS_DIR / meta["sketch_model"], threads=1)
    photos, sketches = sketchy(data_dir() / "sketchy")
    photo_of = {p.photo_id: p.path for p in photos}
    test = [s for s in sketches if split_of(s.photo_id) == "test" and s.photo_id in photo_of]
    picks, seen = [], set()
    for s in test[:: max(1, len(test) // (4 * n))]:       # spread over classes, one sketch per class
        if s.label not in seen:
            seen.add(s.label)
            picks.append(s)
    picks = picks[:n]
    imag = model(np.stack([sketch_input(s.path, pp) for s in picks]))[0]                    # (n, 3, R, R)
    tiles = []
    for s, a in zip(picks, imag):
        row = [prepare_sketch(s.path, size).convert("RGB"), imaginary_image(a, size),
               prepare_photo(photo_of[s.photo_id], size)]
        tiles.append(np.concatenate([np.asarray(t) for t in row], axis=1))
    gap = 8
    rows = [tiles[i:i + per_row] for i in range(0, len(tiles), per_row)]
    sheet = np.full((len(rows) * (size + gap) - gap, per_row * (3 * size + gap) - gap, 3), 255, np.uint8)
    for r, row in enumerate(rows):
        for c, t in enumerate(row):
            sheet[r * (size + gap):r * (size + gap) + size, c * (3 * size + gap):c * (3 * size + gap) + 3 * size] = t
    out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(sheet).save(out, optimize=True)
    return out


if __name__ == "__main__":
    main()

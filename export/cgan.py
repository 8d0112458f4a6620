"""Export the `cgan` backend: `python -m export.cgan [--ckpt runs/cgan/best.pt]`

Two ONNX files:
- `cgan_sketch.onnx`: generator G + encoder E1, sketch (B, 3, R, R) -> (imaginary photo in [0, 1]
  (B, 3, R, R), embedding (B, 1280)); R is the training resolution (128 for the shipped model).
  Exported in eval mode on purpose: dropout off, so one sketch always gives one imaginary photo and
  one ranking (pix2pix's test code keeps dropout on);
  G uses InstanceNorm and E1 ImageNet's frozen batch-norm statistics, so nothing else changes.
- the frozen ImageNet encoder E2 (pooled features of 128 px photos) is `backbone_lite0.onnx`, the
  `pretrained` backend's file (any input size; written by `export.pretrained` when missing).

Version 2 (`sbir_core.train.cgan_v2`; the checkpoint's config has `version: 2`) ships instead
- `cgan_generator.onnx`: G alone, (sketch (B, 3, 192, 192) in [-1, 1], the sketch classifier's
  posterior `class_probs` (B, 365)) -> (imaginary photo in [0, 1] (B, 3, R, R), the same photo
  resized to E2's input in [-1, 1] `e2_input` (B, 3, F, F)); weights stored in fp16 (lossless:
  the shipped checkpoint is fp16), computed in fp32. Serving runs the classifier's ONNX chain for
  the posterior and `backbone_lite0.onnx` (E1 = E2) on `e2_input` for the embedding.
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

from .common import CHECKPOINTS, export_onnx, parity, ship_checkpoint, write_meta
from .pretrained import FILE as BACKBONE_FILE

SKETCH_FILE, GEN_FILE = "cgan_sketch.onnx", "cgan_generator.onnx"
PHOTO_FILE = BACKBONE_FILE            # E2: the pretrained backend's encoder, shared
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
    if cfg.get("version") == 2:
        from sbir_core.train.cgan_v2 import CGANv2Config
        return CGANv2Config(**cfg), ck
    return CGANConfig(**cfg), ck


class GeneratorExport(nn.Module):
    """Version 2's served generator: (sketch, class posterior) -> (imaginary in [0, 1], E2's input)."""

    def __init__(self, imaginer: nn.Module, feat_res: int):
        super().__init__()
        self.imaginer, self.feat_res = imaginer, feat_res

    def forward(self, x: torch.Tensor, class_probs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        from sbir_core.train.cgan_v2 import to_e2
        y = self.imaginer(x, class_probs)                                   # (B, 3, R, R) in [-1, 1]
        return (y + 1) * 0.5, to_e2(y, self.feat_res)


def generator_module(cfg, ck: dict | None) -> GeneratorExport:
    from sbir_core.train.cgan_v2 import build_nets as build_v2
    G, _ = build_v2(cfg)
    if ck is not None:
        G.load_state_dict({k: v.float() for k, v in ck["G"].items()})
    return GeneratorExport(G, cfg.feat_res).eval()


def weights_to_fp16(path: Path, min_size: int = 16) -> None:
    """Store an ONNX file's float32 weights as float16 initializers, each cast back to float32 by a
    Cast node (ONNX Runtime folds them at load): half the file, fp32 arithmetic. Lossless when the
    weights came from an fp16 checkpoint."""
    import numpy as np
    import onnx
    from onnx import helper, numpy_helper
    m = onnx.load(str(path))
    g = m.graph
    casts, keep = [], []
    for init in g.initializer:
        a = numpy_helper.to_array(init)
        if init.data_type == onnx.TensorProto.FLOAT and a.size >= min_size:
            half = numpy_helper.from_array(a.astype(np.float16), init.name + "_fp16")
            keep.append(half)
            casts.append(helper.make_node("Cast", [half.name], [init.name], to=onnx.TensorProto.FLOAT))
        else:
            keep.append(init)
    del g.initializer[:]
    g.initializer.extend(keep)
    nodes = list(g.node)
    del g.node[:]
    g.node.extend(casts + nodes)
    onnx.checker.check_model(m)
    onnx.save(m, str(path))


def export_generator(cfg, ck: dict | None, path: Path, atol: float = 1e-3) -> float:
    """Write cgan_generator.onnx (fp16 weights); returns max |ONNX - torch| over both outputs."""
    import numpy as np
    import onnxruntime as ort
    from sbir_core.train.cgan_v2 import N_CLASSES
    mod = generator_module(cfg, ck)
    if ck is None:   # random weights: round them to fp16 as a shipped checkpoint would be
        with torch.no_grad():
            for p in mod.parameters():
                p.copy_(p.half().float())
    path.parent.mkdir(parents=True, exist_ok=True)
    s = cfg.sketch_res
    x, c = torch.randn(2, 3, s, s), torch.softmax(torch.randn(2, N_CLASSES), 1)
    names = ("imaginary", "e2_input")
    torch.onnx.export(mod, (x, c), str(path), input_names=["input", "class_probs"], output_names=list(names),
                      dynamic_axes={n: {0: "batch"} for n in ("input", "class_probs", *names)},
                      opset_version=17, dynamo=False)
    weights_to_fp16(path)
    x, c = torch.randn(3, 3, s, s), torch.softmax(3 * torch.randn(3, N_CLASSES), 1)
    with torch.no_grad():
        ref = mod(x, c)
    out = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(
        None, {"input": x.numpy(), "class_probs": c.numpy()})
    err = float(max(np.abs(o - r.numpy()).max() for o, r in zip(out, ref)))
    if err > atol:
        raise RuntimeError(f"{path.name}: ONNX differs from torch by {err:.2e} (> {atol})")
    return err


def export_v2(cfg, ck: dict | None, models_dir: Path, pretrained: bool = True, ckpt: Path | None = None) -> dict[str, float]:
    """Version 2: cgan_generator.onnx and cgan.json (E2 is the shared backbone file, see `photo_encoder`)."""
    from sbir_core.train.cgan_v2 import classifier_files
    errs = {GEN_FILE: export_generator(cfg, ck, models_dir / GEN_FILE),
            PHOTO_FILE: photo_encoder(freeze(MidHighEncoder(lite0(pretrained=pretrained))), models_dir, cfg.feat_res)}
    train_config = {k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(cfg).items()}
    if ck and ck.get("curves"):   # the schedule's edge share is not a loss: docs/cgan.md gives it
        (models_dir / "cgan_curves.json").write_text(json.dumps(
            [{k: v for k, v in r.items() if k != "edge_share"} for r in ck["curves"]], indent=1) + "\n")
    path = models_dir / "cgan.json"
    old = json.loads(path.read_text()) if path.is_file() else {}
    for stale in ("sketch_outputs", "val_mAP", "train_steps", "onnx_parity_max_abs"):
        old.pop(stale, None)
    path.write_text(json.dumps(old, indent=1) + "\n")
    write_meta("cgan", {
        "backend": "cgan", "version": 2, "title": "cGAN (imaginary photo)",
        "description": ("a pix2pix U-Net G (resize-convolution, two-scale discriminator, trained on sketches "
                        "and edge maps) imagines the photo behind the sketch, conditioned on the sketch "
                        "classifier's reading; the frozen ImageNet encoder embeds it and the gallery photos "
                        "(after Guo et al., ACM MM 2017 and SketchyGAN)"),
        "sketch_model": GEN_FILE, "class_model": classifier_files(), "photo_model": PHOTO_FILE,
        "preprocess": cfg.sketch_preprocess().to_dict(), "photo_preprocess": cfg.photo_preprocess().to_dict(),
        "embedding_dim": FEATURE_DIM, "curves": "cgan_curves.json", "train_config": train_config,
        "train_steps": (ck or {}).get("step", 0), "train_minutes": round((ck or {}).get("minutes", 0.0), 1),
        "val_mAP": (ck or {}).get("best_val_mAP"), "onnx_parity_max_abs": max(errs.values()),
        "class_mix": old.get("class_mix", 0.0),
        **({"checkpoint": ckpt.resolve().relative_to(REPO_ROOT).as_posix()} if ckpt else {}),
    }, models_dir)
    return errs


def photo_encoder(e2: nn.Module, models_dir: Path, size: int) -> float:
    """E2 is the frozen ImageNet encoder the `pretrained` backend ships (any input size): written when
    missing, and checked against this E2 at the cGAN's size either way; returns the parity error."""
    path = models_dir / PHOTO_FILE
    if not path.is_file():
        return export_onnx(e2, path, size, any_size=True)
    err = parity(e2, path, torch.randn(3, 3, size, size))
    if err > 1e-3:
        raise RuntimeError(f"{path.name} is not the cGAN's E2 at {size} px (differs by {err:.2e})")
    return err


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
        if getattr(cfg, "version", 1) == 2:   # the generator takes two inputs: tests/test_cgan.py checks it
            return {PHOTO_FILE: (freeze(MidHighEncoder(lite0())), cfg.feat_res)}
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
    errs[PHOTO_FILE] = photo_encoder(m, models_dir, size)
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
    if a.ckpt.resolve() != shipped.resolve():   # G (and E1) only, fp16: the ONNX files come from these weights
        ship_checkpoint(a.ckpt, "cgan", keep=("G", "E1", "config", "step", "curves", "best_val_mAP", "minutes"), fp16=True)
    cfg, ck = load_checkpoint(shipped)
    if getattr(cfg, "version", 1) == 2:
        errs = export_v2(cfg, ck, MODELS_DIR, ckpt=shipped)
        stale = MODELS_DIR / SKETCH_FILE
        if stale.is_file():                  # version 1's G + E1 file: nothing serves it any more
            stale.unlink()
    else:
        errs = export(cfg, ck, MODELS_DIR, ckpt=shipped)
    print(f"wrote {', '.join(str(MODELS_DIR / f) for f in errs)} (step {ck['step']}, parity {max(errs.values()):.1e})")
    if a.samples:
        print(f"wrote {sample_sheet(a.samples)}")



def sample_sheet(out: Path, per_row: int = 2, n: int = 8, size: int = 96) -> Path:
    """A grid of held-out (`test` split) Sketchy sketches, the imaginary photo the exported model
    makes for each (the serving path: sketch_input -> cgan_sketch.onnx), and the real photo."""
    import numpy as np
    from PIL import Image

    from sbir_core.backends.cgan import CGANBackend, imaginary_image
    from sbir_core.config import data_dir
    from sbir_core.data.preprocess import prepare_photo, prepare_sketch, sketch_input
    from sbir_core.data.readers import sketchy
    from sbir_core.data.splits import split_of

    backend = CGANBackend(threads=1)
    photos, sketches = sketchy(data_dir() / "sketchy")
    photo_of = {p.photo_id: p.path for p in photos}
    test = [s for s in sketches if split_of(s.photo_id) == "test" and s.photo_id in photo_of]
    picks, seen = [], set()
    for s in test[:: max(1, len(test) // (4 * n))]:       # spread over classes, one sketch per class
        if s.label not in seen:
            seen.add(s.label)
            picks.append(s)
    picks = picks[:n]
    imag = backend.imagine(np.stack([sketch_input(s.path, backend.preprocess) for s in picks]))[0]   # (n, 3, R, R)
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

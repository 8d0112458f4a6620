"""Export the `triplet` backend and its `triplet_noedge` ablation: `python -m export.triplet`.

Sketches: trunk file + <name>_sketch_head.onnx (a shorter trunk, blocks[:sketch_from], when the
sketch branch trained the trunk's last blocks); photos: the shared trunk + <name>_photo_head.onnx.
"""
from __future__ import annotations

import torch

from sbir_core.config import MODELS_DIR
from sbir_core.train.features import PREPROCESS
from sbir_core.train.features import sketch_trunk_end
from sbir_core.train.triplet import run_dir, served_branches

from . import trunk
from .common import CHECKPOINTS, Chain, chain_parity, export_onnx, load_checkpoint, ship_checkpoint, write_meta

NAMES = ("triplet", "triplet_noedge")
TITLES = {"triplet": "Triplet joint embedding (with edge branch)", "triplet_noedge": "Triplet embedding, no edge branch (ablation)"}


def heads(name: str) -> tuple[torch.nn.Module, torch.nn.Module, dict]:
    """The shipped checkpoint's sketch and photo heads as served, and the checkpoint."""
    ck = load_checkpoint(name)
    return *served_branches(ck), ck


def torch_modules() -> dict[str, tuple[torch.nn.Module, int]]:
    out = {}
    t = trunk.trunk()
    for name in NAMES:
        if (CHECKPOINTS / f"{name}.pt").is_file():
            s, p, ck = heads(name)
            end = sketch_trunk_end(ck["config"])
            out[f"{trunk.file_name(end)}+{name}_sketch_head.onnx"] = (Chain(trunk.trunk(end), s), PREPROCESS.size)
            out[f"{trunk.FILE}+{name}_photo_head.onnx"] = (Chain(t, p), PREPROCESS.size)
    return out


def main() -> None:
    trunk_err = trunk.export()
    t = trunk.trunk()
    for name in NAMES:
        if (run_dir(name) / "ckpt.pt").is_file():
            ship_checkpoint(run_dir(name) / "ckpt.pt", name, fp16=True)
        if not (CHECKPOINTS / f"{name}.pt").is_file():
            print(f"{name}: no checkpoint, skipped (python -m sbir_core.train.triplet{' --no-edge' if 'noedge' in name else ''})")
            continue
        s, p, ck = heads(name)
        end = sketch_trunk_end(ck["config"])
        sketch_trunk = trunk.file_name(end)
        if end is not None:
            trunk_err = max(trunk_err, trunk.export(end))
        sf, pf = f"{name}_sketch_head.onnx", f"{name}_photo_head.onnx"
        export_onnx(s, MODELS_DIR / sf, trunk.feature_shape(end))
        export_onnx(p, MODELS_DIR / pf, trunk.FEATURE_SHAPE)
        err = max(trunk_err,
                  chain_parity(Chain(trunk.trunk(end), s), [MODELS_DIR / sketch_trunk, MODELS_DIR / sf], PREPROCESS.size),
                  chain_parity(Chain(t, p), [MODELS_DIR / trunk.FILE, MODELS_DIR / pf], PREPROCESS.size))
        write_meta(name, {
            "backend": name, "title": TITLES[name],
            "description": f"Sketch/edge branch (trainable {trunk.trained_part(end)}) and photo branch (frozen ImageNet "
                           "head + MLP) into one 256-d space, trained with triplet loss on hardest negatives + cosine-softmax "
                           "class loss + distillation from the classifiers, then the photo branch refit alone against "
                           "the frozen sketch branch; served as the L2-normalised class posterior over the learned "
                           "class proxies",
            "sketch_model": [sketch_trunk, sf], "photo_model": [trunk.FILE, pf],
            "embedding_dim": int(ck["proxies"].shape[0]) if "proxies" in ck else ck["config"]["dim"],
            "trained_dim": ck["config"]["dim"],
            "preprocess": PREPROCESS.to_dict(), "curves": f"{name}_curves.json", "train_config": ck["config"],
            "best_val_mAP": ck["best_val_mAP"], "photo_refit": ck.get("photo_refit"), "onnx_parity_max_abs": err})
        print(f"{name} exported (parity {err:.1e})")


if __name__ == "__main__":
    main()

"""Export the `triplet` joint embedding and its `triplet_noedge` ablation: `python -m export.triplet`.

Sketches: the classifier's trunk file (blocks[:8]) + <name>_sketch_head.onnx (the classifier's trained
blocks 8-15 and head conv, frozen, then the joint parts); photos: the shared ImageNet trunk +
<name>_photo_head.onnx (ImageNet head, the photo labeller's reading, the joint parts).
"""
from __future__ import annotations

import shutil

import torch

from sbir_core.config import MODELS_DIR
from sbir_core.nets.backbone import Top, lite0
from sbir_core.nets.joint import JointPhotoHead, JointSketchHead, Parts
from sbir_core.train import photo_labeller
from sbir_core.train.features import PREPROCESS, sketch_trunk_end
from sbir_core.train.triplet import run_dir
from sbir_core.train.triplet_features import SketchEncoder

from . import trunk
from .common import CHECKPOINTS, Chain, chain_parity, export_onnx, load_checkpoint, ship_checkpoint, write_meta

NAMES = ("triplet", "triplet_noedge")
TITLES = {"triplet": "Triplet joint embedding (with edge branch)",
          "triplet_noedge": "Triplet joint embedding, no edge branch (ablation)"}


def heads(name: str) -> tuple[torch.nn.Module, torch.nn.Module, dict, dict]:
    """The shipped checkpoint's served sketch and photo heads, its checkpoint and the classifier's."""
    ck, cls = load_checkpoint(name), load_checkpoint("classifier")
    c, parts, w = ck["config"], Parts.from_checkpoint(ck), ck["instance_weight"]
    sketch = JointSketchHead(SketchEncoder(cls).top, parts, w).eval()
    photo = JointPhotoHead(Top(lite0()), photo_labeller.labeller(cls), parts, c["prior"], w).eval()
    return sketch, photo, ck, cls


def torch_modules() -> dict[str, tuple[torch.nn.Module, int]]:
    out = {}
    for name in NAMES:
        if (CHECKPOINTS / f"{name}.pt").is_file():
            s, p, _, cls = heads(name)
            end = sketch_trunk_end(cls["config"])
            out[f"{trunk.file_name(end)}+{name}_sketch_head.onnx"] = (Chain(trunk.trunk(end), s), PREPROCESS.size)
            out[f"{trunk.FILE}+{name}_photo_head.onnx"] = (Chain(trunk.trunk(), p), PREPROCESS.size)
    return out


def main() -> None:
    for name in NAMES:
        if (run_dir(name) / "ckpt.pt").is_file():
            ship_checkpoint(run_dir(name) / "ckpt.pt", name)
        if not (CHECKPOINTS / f"{name}.pt").is_file():
            print(f"{name}: no checkpoint, skipped (python -m sbir_core.train.triplet{' --no-edge' if 'noedge' in name else ''})")
            continue
        s, p, ck, cls = heads(name)
        end = sketch_trunk_end(cls["config"])
        sf, pf = f"{name}_sketch_head.onnx", f"{name}_photo_head.onnx"
        export_onnx(s, MODELS_DIR / sf, trunk.feature_shape(end))
        export_onnx(p, MODELS_DIR / pf, trunk.FEATURE_SHAPE)
        err = max(chain_parity(Chain(trunk.trunk(end), s), [MODELS_DIR / trunk.file_name(end), MODELS_DIR / sf],
                               PREPROCESS.size),
                  chain_parity(Chain(trunk.trunk(), p), [MODELS_DIR / trunk.FILE, MODELS_DIR / pf], PREPROCESS.size))
        c = ck["config"]
        dim = c["dim"] + c["cell"] * trunk.FEATURE_SHAPE[1] * trunk.FEATURE_SHAPE[2]
        w = ck["instance_weight"]
        description = (
            f"One {dim}-d space for sketches and photos, compared by cosine: a semantic part ({c['dim']}-d; sketches "
            "through the classifier's trained trunk, photos through the ImageNet trunk plus the photo labeller's "
            f"reading; cosine-softmax over proxies of all {len(ck['classes'])} kinds + cross-domain triplet loss on "
            "hardest negatives" + (", photo edge maps as sketches" if c["edge"] else "") + ") and an instance part "
            "(the 6x6 grid's per-cell codes; triplet loss with the drawn photo as positive and photos of its kind as "
            f"negatives), weighted {1 - w:.1f} / {w:.1f}")
        earlier = {"classes": None, "trained_dim": None, "best_val_mAP": None, "photo_refit": None}   # the old model's
        write_meta(name, earlier | {
            "backend": name, "title": TITLES[name], "description": description,
            "sketch_model": [trunk.file_name(end), sf], "photo_model": [trunk.FILE, pf], "embedding_dim": dim,
            "preprocess": PREPROCESS.to_dict(), "curves": f"{name}_curves.json", "train_config": c,
            "instance_weight": w, "val": ck["val"], "onnx_parity_max_abs": err,
            "default_threshold": ck["default_threshold"], "threshold_curve": ck["threshold_curve"]})
        if (run_dir(name) / "curves.json").is_file():
            shutil.copyfile(run_dir(name) / "curves.json", MODELS_DIR / f"{name}_curves.json")
        print(f"{name} exported ({dim}-d, parity {err:.1e})")


if __name__ == "__main__":
    main()

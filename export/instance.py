"""Export the `instance` backend: `python -m export.instance`.

Sketches: the classifier's sketch trunk file (after blocks[:8]) + instance_sketch_head.onnx (the
frozen ImageNet blocks from there to the branch's grid, then the trained sketch branch); the
classifier's own sketch head reads the same trunk features for stage 1. Photos, for a branch on the
whole trunk's grid: the shared trunk + instance_photo_head.onnx, and the classifier's photo head. For
a branch on an earlier grid (`train.instance --grid-from`): the classifier's sketch trunk file +
instance_photo_head.onnx, whose second output is the whole trunk's features for the classifier's
photo head (one trunk run per photo). No classifier file is copied: the metadata names them.
"""
from __future__ import annotations

import torch

from sbir_core.config import MODELS_DIR
from sbir_core.backends.onnx_model import read_meta
from sbir_core.train.features import PREPROCESS, sketch_trunk_end
from sbir_core.train.instance import run_dir

from . import trunk
from .cgan import weights_to_fp16
from .common import CHECKPOINTS, Chain, chain_parity, export_onnx, load_checkpoint, ship_checkpoint, write_meta

NAME = "instance"


def sketch_from() -> int:
    """Where the classifier's sketch trunk file ends: the instance sketch head starts there, so one
    trunk run feeds both stages (the branch itself was trained on features after all 16 blocks)."""
    return sketch_trunk_end(load_checkpoint("classifier")["config"])


def branches(ck: dict) -> tuple[torch.nn.Module, torch.nn.Module]:
    """The checkpoint's sketch head and photo branch, eval mode. Sketch head: the frozen ImageNet
    blocks from where the classifier's sketch trunk ends up to the first block the checkpoint trained
    (all of them to 15 for a branch on the frozen grid), then its trained blocks, the cell PCA and
    the sketch branch."""
    from sbir_core.nets.backbone import TRUNK_BLOCKS
    from sbir_core.nets.instance import (CellProjection, FrozenBlocksThen, InstanceBranch, PhotoGridHead, Projected,
                                         TrainedBlocks)
    c = ck["config"]
    trained_from = c.get("sketch_from", TRUNK_BLOCKS)
    grid_from, pool = c.get("grid_from", TRUNK_BLOCKS), c.get("grid_pool", 1)
    cls_from = sketch_from()
    cls_from = TRUNK_BLOCKS if cls_from is None else cls_from
    if cls_from > min(trained_from, grid_from):
        raise ValueError(f"the classifier's sketch trunk ends after block {cls_from}, past the instance branch's "
                         f"grid or first trained block {min(trained_from, grid_from)}: one trunk run cannot feed both stages")
    kw = dict(mode=c["mode"], mid=c["mid"], cell=c["cell"], gdim=c["gdim"], global_share=c["global_share"],
              in_channels=c["pca"], residual=c.get("residual", False),
              grid=tuple(ck["sketch_state_dict"]["center"].shape)[-1] if c.get("residual") else 6)
    s, p = InstanceBranch(**kw), InstanceBranch(**kw)
    proj = CellProjection(ck["pca_mean"].float(), ck["pca_components"].float())
    p.load_state_dict({k: v.float() for k, v in ck["photo_state_dict"].items()})
    if grid_from < TRUNK_BLOCKS:                   # both branches on an earlier grid: photos need a two-output head
        s.load_state_dict({k: v.float() for k, v in ck["sketch_state_dict"].items()})
        return (FrozenBlocksThen(Projected(proj, s, pool), cls_from, end=grid_from).eval(),
                PhotoGridHead(Projected(proj, p, pool), cls_from, grid_from).eval())
    if trained_from < TRUNK_BLOCKS:
        head: torch.nn.Module = TrainedBlocks(s, proj, trained_from)
        head.load_state_dict({k: v.float() for k, v in ck["sketch_state_dict"].items()})
    else:
        s.load_state_dict({k: v.float() for k, v in ck["sketch_state_dict"].items()})
        head = Projected(proj, s)
    return FrozenBlocksThen(head, cls_from, end=trained_from).eval(), Projected(proj, p).eval()


def photo_start(ck: dict) -> int | None:
    """Where the photo chain's trunk file ends: the whole trunk (None) for a branch on its grid; the
    classifier's sketch trunk for a branch on an earlier grid (the photo head then runs the rest)."""
    from sbir_core.nets.backbone import TRUNK_BLOCKS
    return sketch_from() if ck["config"].get("grid_from", TRUNK_BLOCKS) < TRUNK_BLOCKS else None


def torch_modules() -> dict[str, tuple[torch.nn.Module, int]]:
    if not (CHECKPOINTS / f"{NAME}.pt").is_file():
        return {}
    ck = load_checkpoint(NAME)
    s, p = branches(ck)
    start, pstart = sketch_from(), photo_start(ck)
    return {f"{trunk.file_name(start)}+{NAME}_sketch_head.onnx": (Chain(trunk.trunk(start), s), PREPROCESS.size),
            f"{trunk.file_name(pstart)}+{NAME}_photo_head.onnx": (Chain(trunk.trunk(pstart), p), PREPROCESS.size)}


def main() -> None:
    if (run_dir(NAME) / "ckpt.pt").is_file():
        ship_checkpoint(run_dir(NAME) / "ckpt.pt", NAME, fp16=True)
    if not (CHECKPOINTS / f"{NAME}.pt").is_file():
        print(f"{NAME}: no checkpoint, skipped (python -m sbir_core.train.instance)")
        return
    ck = load_checkpoint(NAME)
    s, p = branches(ck)
    start, pstart = sketch_from(), photo_start(ck)
    sf, pf = f"{NAME}_sketch_head.onnx", f"{NAME}_photo_head.onnx"
    export_onnx(s, MODELS_DIR / sf, trunk.feature_shape(start))
    weights_to_fp16(MODELS_DIR / sf)               # half the file; fp32 arithmetic (parity checked below)
    two = pstart is not None                       # + the whole trunk's features for the classifier's photo head
    export_onnx(p, MODELS_DIR / pf, trunk.feature_shape(pstart),
                output_names=("output", "trunk_features") if two else ("output",))
    if not two:                                    # the whole trunk's features stay exact: fp16 weights of the
        weights_to_fp16(MODELS_DIR / pf)           # frozen blocks moved them by 0.3 % (2.5e-2 of 7.6), past parity
    err = max(chain_parity(Chain(trunk.trunk(start), s), [MODELS_DIR / trunk.file_name(start), MODELS_DIR / sf],
                           PREPROCESS.size),
              chain_parity(Chain(trunk.trunk(pstart), p), [MODELS_DIR / trunk.file_name(pstart), MODELS_DIR / pf],
                           PREPROCESS.size))
    cls = read_meta("classifier")
    assert cls["sketch_model"][0] == trunk.file_name(start), "stage 1 must read the same trunk file"
    write_meta(NAME, {
        "backend": NAME, "title": "Instance: right kind first, then the very photo drawn",
        "description": "Two stages: the classifier backend's class posterior (its heads, shared) puts the drawn kind of "
                       f"object first; inside it, an instance embedding of the frozen trunk's spatial features after block "
                       f"{ck['config'].get('grid_from', 16) - 1} (a 6x6 grid; sketch and "
                       "photo-edge branch, photo branch; triplet loss with the drawn photo as positive and same-class "
                       "photos as hard negatives, mirrored pairs, edge maps) orders photos by how closely they match "
                       "the drawing. Score: log P(class) + fusion_weight x cosine",
        "sketch_model": [trunk.file_name(start), sf], "photo_model": [trunk.file_name(pstart), pf],
        "class_sketch_model": cls["sketch_model"][-1], "class_photo_model": cls["photo_model"][-1],
        "classes": cls["classes"], "photo_classes": cls.get("photo_classes", cls["classes"]),
        "fusion_weight": ck["fusion_weight"],
        "default_threshold": ck.get("default_threshold", 0.2), "class_gate": ck.get("class_gate", 0.0),
        "embedding_dim": int(s(torch.zeros(1, *trunk.feature_shape(start))).shape[1]),
        "preprocess": PREPROCESS.to_dict(), "photo_preprocess": cls.get("photo_preprocess", PREPROCESS.to_dict()),
        "curves": f"{NAME}_curves.json", "train_config": ck["config"], "onnx_parity_max_abs": err})
    curves = run_dir(NAME) / "curves.json"
    if curves.is_file():
        (MODELS_DIR / f"{NAME}_curves.json").write_text(curves.read_text())
    print(f"{NAME} exported (parity {err:.1e})")


if __name__ == "__main__":
    main()

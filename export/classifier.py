"""Export the `classifier` and `classifier_small` backends: `python -m export.classifier`.

classifier: shared trunk file + classifier_head.onnx (sketch -> class probabilities);
photos: trunk + classifier_photo_head.onnx (the photo labeller: photo -> P(kind) over the vocabulary,
ranks within a kind and files unlabelled photos; see sbir_core.train.photo_labeller).
classifier_small: classifier_small.onnx (64 px sketch -> probabilities), same photo classifier.
"""
from __future__ import annotations

import torch

from sbir_core.config import MODELS_DIR
from sbir_core.data.preprocess import Preprocess
from sbir_core.nets.heads import ClassifierHead, KindReading, Probabilities, SmallSketchCNN
from sbir_core.train.classifier import curves_name, run_dir
from sbir_core.nets.backbone import TRUNK_BLOCKS
from sbir_core.train import first_row, photo_labeller
from sbir_core.train.features import PREPROCESS, sketch_trunk_end

from . import trunk
from .common import CHECKPOINTS, Chain, chain_parity, export_onnx, load_checkpoint, ship_checkpoint, write_meta

HEAD, SMALL, PHOTO_HEAD = "classifier_head.onnx", "classifier_small.onnx", photo_labeller.PHOTO_HEAD
READING_OUTPUTS = ("probabilities", "logits", "pooled")


def _load(arch: str) -> dict:
    return load_checkpoint(NAMES[arch])


NAMES = {"lite0": "classifier", "small": "classifier_small"}


def heads() -> tuple[KindReading, torch.nn.Module, dict]:
    """The sketch classifier (P(kind), logits, pooled features) and the photo labeller (its trained
    probe + the ImageNet head's map)."""
    ck = _load("lite0")
    head = ClassifierHead(len(ck["classes"]), start=ck["config"].get("sketch_from", TRUNK_BLOCKS))
    head.load_state_dict(ck["state_dict"])
    return KindReading(head).eval(), photo_labeller.labeller(ck), ck


def small() -> tuple[Probabilities, dict]:
    ck = _load("small")
    net = SmallSketchCNN(len(ck["classes"]), size=ck["config"]["small_size"])
    net.load_state_dict(ck["state_dict"])
    return Probabilities(net).eval(), ck


def torch_modules() -> dict[str, tuple[torch.nn.Module, int]]:
    """{ONNX file or chain 'a.onnx+b.onnx': (torch module from image to output, input size)}."""
    head, photo, ck = heads()
    t = trunk.trunk()
    end = sketch_trunk_end(ck["config"])
    out = {f"{trunk.file_name(end)}+{HEAD}": (Chain(trunk.trunk(end), head), PREPROCESS.size),
           f"{trunk.FILE}+{PHOTO_HEAD}": (Chain(t, photo), PREPROCESS.size)}
    if (CHECKPOINTS / "classifier_small.pt").is_file():
        net, ck = small()
        out[SMALL] = (net, ck["config"]["small_size"])
    return out


def main() -> None:
    for arch, name in NAMES.items():
        if (run_dir(arch) / "ckpt.pt").is_file():
            ship_checkpoint(run_dir(arch) / "ckpt.pt", name, fp16=arch == "lite0")
    trunk_err = trunk.export()
    head, photo, ck = heads()
    t = trunk.trunk()
    end = sketch_trunk_end(ck["config"])                   # the sketch head may train the trunk's last blocks
    if end is not None:
        trunk_err = max(trunk_err, trunk.export(end))
    export_onnx(head, MODELS_DIR / HEAD, trunk.feature_shape(end), output_names=READING_OUTPUTS)
    export_onnx(photo, MODELS_DIR / PHOTO_HEAD, trunk.FEATURE_SHAPE)
    err = max(trunk_err,
              chain_parity(Chain(trunk.trunk(end), head), [MODELS_DIR / trunk.file_name(end), MODELS_DIR / HEAD],
                           PREPROCESS.size),
              chain_parity(Chain(t, photo), [MODELS_DIR / trunk.FILE, MODELS_DIR / PHOTO_HEAD], PREPROCESS.size))
    common = {"classes": list(ck["classes"]), "photo_classes": photo_labeller.nameable(photo, list(ck["classes"])),
              "photo_model": [trunk.FILE, PHOTO_HEAD],
              "photo_preprocess": PREPROCESS.to_dict()}
    write_meta("classifier", {
        "backend": "classifier", "title": "Classifier + label lookup",
        "description": f"EfficientNet-Lite0 (ImageNet) with its {trunk.trained_part(end)} and a classifier over "
                       f"{len(ck['classes'])} classes trained on every sketch here (Sketchy, TU-Berlin, Quick, Draw!); "
                       "results are photos of the predicted classes",
        "sketch_model": [trunk.file_name(end), HEAD], "preprocess": PREPROCESS.to_dict(), "curves": curves_name("lite0"),
        "train_config": ck["config"], "train_result": ck["result"], "onnx_parity_max_abs": err, **common})
    print(f"classifier exported (parity {err:.1e})", ck["result"])
    first_row.main(["--write"])                            # the first-row hedge, chosen anew for this model
    if (CHECKPOINTS / "classifier_small.pt").is_file():
        net, sck = small()
        size = sck["config"]["small_size"]
        # the photo head is shared; its classes extend the small network's (the vocabulary only appends)
        assert list(ck["classes"][:len(sck["classes"])]) == list(sck["classes"]), "vocabulary order changed"
        serr = export_onnx(net, MODELS_DIR / SMALL, size)
        write_meta("classifier_small", {
            "backend": "classifier_small", "title": "Small CNN classifier + label lookup",
            "description": "The reference system's network (3 conv+pool, 2 dense, Adam) trained from scratch on sketches",
            "sketch_model": SMALL, "preprocess": Preprocess(size=size).to_dict(), "curves": curves_name("small"),
            "train_config": sck["config"], "train_result": sck["result"], "onnx_parity_max_abs": serr,
            **common, "classes": list(sck["classes"])})
        print(f"classifier_small exported (parity {serr:.1e})", sck["result"])
    photo_labeller.main(["--meta-only"])                   # its threshold, chosen anew, and its measurements


if __name__ == "__main__":
    main()

"""Export the `context` backend: `python -m export.context`.

The checkpoint is the training run's stopping point picked without labels (`selected.json`, written
by `python -m sbir_core.train.context --select runs/context_lite0`), else its last weights. One ONNX
file, `context_encoder.onnx`, serves both domains (the method's shared encoder): photos, and sketches
through the edge-domain input path (grey, in three channels). Its output is the pooled, L2-normalised
encoder feature. Weights are stored in half precision (each cast back to float32 once, when ONNX
Runtime folds constants at session start), which halves the file at no cost per query.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from sbir_core.config import MODELS_DIR
from sbir_core.train.context import CACHE, RETRIEVAL, load_encoder, run_dir

from .common import CHECKPOINTS, load_checkpoint, parity, ship_checkpoint, write_meta

FILE = "context_encoder.onnx"
RUN = "context_lite0"


class Normalised(torch.nn.Module):
    """The encoder's pooled features, L2-normalised: (B, 3, S, S) -> (B, D)."""

    def __init__(self, encoder: torch.nn.Module):
        super().__init__()
        self.encoder = encoder

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.encoder(x), dim=1)


def torch_modules() -> dict[str, tuple[torch.nn.Module, int]]:
    """{ONNX file: (the torch module it was exported from, input size)}: for parity tests and benchmarks."""
    return {FILE: (Normalised(load_encoder(load_checkpoint("context"))).eval(), RETRIEVAL.size)}


def weights_to_fp16(path: Path) -> None:
    """Store every large float32 initializer of an ONNX file as float16 behind a Cast to float32."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    model = onnx.load(str(path))
    g = model.graph
    keep, casts = [], []
    for init in g.initializer:
        a = numpy_helper.to_array(init)
        if init.data_type == TensorProto.FLOAT and a.size >= 64:
            keep.append(numpy_helper.from_array(a.astype(np.float16), init.name + "_fp16"))
            casts.append(helper.make_node("Cast", [init.name + "_fp16"], [init.name], to=TensorProto.FLOAT,
                                          name=init.name + "_cast"))
        else:
            keep.append(init)
    del g.initializer[:]
    g.initializer.extend(keep)
    nodes = casts + list(g.node)
    del g.node[:]
    g.node.extend(nodes)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def export_fp16(module: torch.nn.Module, path: Path, size: int) -> None:
    """Export in eval mode with a dynamic batch axis, batch norm kept as its own node (folding it into
    the convolutions before rounding to fp16 would round different numbers than the checkpoint holds;
    ONNX Runtime folds it at session start, in float32), then store the weights in fp16."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.onnx.export(module.eval(), (torch.randn(2, 3, size, size),), str(path), input_names=["input"],
                      output_names=["output"], dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}},
                      opset_version=17, dynamo=False, training=torch.onnx.TrainingMode.PRESERVE)
    weights_to_fp16(path)


def main() -> None:
    selected = run_dir(RUN) / "selected.json"          # the stopping point picked without labels, if any
    sel = json.loads(selected.read_text()) if selected.is_file() else None
    run_ckpt = run_dir(RUN) / (sel["checkpoint"] if sel else "ckpt.pt")
    if run_ckpt.is_file():
        ship_checkpoint(run_ckpt, "context", keep=("encoder", "config", "steps"), fp16=True)
    if not (CHECKPOINTS / "context.pt").is_file():
        print("context: no checkpoint, skipped (python -m sbir_core.train.context)")
        return
    ck = load_checkpoint("context")
    (module, size), = torch_modules().values()
    export_fp16(module, MODELS_DIR / FILE, size)
    err = parity(module, MODELS_DIR / FILE, torch.randn(3, 3, size, size))
    if err > 1e-3:
        raise RuntimeError(f"{FILE}: ONNX (fp16 weights) differs from torch by {err:.2e}")
    meta = {
        "backend": "context", "title": "Context prediction (unsupervised, no sketch labels)",
        "description": "EfficientNet-Lite0 (ImageNet init, stem + first 5 blocks frozen) trained only to predict "
                       "where a photo patch lies relative to an edge-map patch (8 ways, Joshi et al. 2019 after "
                       "Doersch et al. 2015); no sketches, no labels. Photos and sketches (as edge-domain input) "
                       "are embedded by the same encoder; cosine nearest neighbours",
        "sketch_model": FILE, "photo_model": FILE, "embedding_dim": int(module(torch.zeros(1, 3, size, size)).shape[1]),
        "preprocess": RETRIEVAL.to_dict(), "curves": "context_curves.json", "train_config": ck["config"],
        "train_steps": ck.get("steps"), "onnx_parity_max_abs": err, "onnx_weights": "float16"}
    if sel:
        meta["stopping_point"] = {**sel, "rule": "of the checkpoints saved at each validation, the one whose held-out "
                                  "edge maps retrieve their own photo best (acc@10, then acc@1): no label used"}
    evaluation = CACHE / "evaluation.json"                # python -m sbir_core.train.context --evaluate <ckpt>
    key = f"{RUN}/{run_ckpt.stem}"
    if evaluation.is_file() and key in (ev := json.loads(evaluation.read_text())):
        meta["held_out_results"] = {k: {m: v for m, v in r.items() if m != "per_class_instance"} if isinstance(r, dict)
                                    else r for k, r in ev[key].items()}
    if (run_dir(RUN) / "curves.json").is_file():
        shutil.copyfile(run_dir(RUN) / "curves.json", MODELS_DIR / "context_curves.json")
    write_meta("context", meta)
    print(f"wrote {MODELS_DIR / FILE} ({(MODELS_DIR / FILE).stat().st_size / 2**20:.1f} MB, parity {err:.1e})")


if __name__ == "__main__":
    main()

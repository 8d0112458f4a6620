"""torch -> ONNX with a parity check, and the model JSON that carries preprocessing to serving."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sbir_core.config import MODELS_DIR


def export_onnx(module: torch.nn.Module, path: Path, size: int | tuple[int, ...], atol: float = 1e-3,
                output_names: tuple[str, ...] = ("output",), any_size: bool = False) -> float:
    """Export in eval mode with a dynamic batch axis; return the max |ONNX - torch| on a random batch
    (and raise if it exceeds `atol`). `size`: an image side (input (B, 3, size, size)) or an input shape.
    `any_size`: height and width dynamic too (a pooled encoder that backends use at different sizes)."""
    module = module.eval()
    path.parent.mkdir(parents=True, exist_ok=True)
    shape = (3, size, size) if isinstance(size, int) else tuple(size)
    x = torch.randn(2, *shape)
    torch.onnx.export(module, (x,), str(path), input_names=["input"], output_names=list(output_names),
                      dynamic_axes={"input": {0: "batch", **({2: "height", 3: "width"} if any_size else {})},
                                    **{n: {0: "batch"} for n in output_names}},
                      opset_version=17, dynamo=False)
    err = parity(module, path, torch.randn(3, *shape))
    if err > atol:
        raise RuntimeError(f"{path.name}: ONNX differs from torch by {err:.2e} (> {atol})")
    return err


def parity(module: torch.nn.Module, path: Path, x: torch.Tensor) -> float:
    """Max absolute difference between torch (eval) and ONNX Runtime on the same input."""
    import onnxruntime as ort
    with torch.no_grad():
        ref = module.eval()(x)
    ref = ref if isinstance(ref, (tuple, list)) else (ref,)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    out = sess.run(None, {"input": x.numpy()})
    return float(max(np.abs(o - r.numpy()).max() for o, r in zip(out, ref)))


def write_meta(name: str, meta: dict[str, Any], models_dir: Path = MODELS_DIR) -> Path:
    """`models/<name>.json`, merged over what is there (so metrics written by evaluation survive); a
    None value removes that field (an earlier model's)."""
    path = models_dir / f"{name}.json"
    old = json.loads(path.read_text()) if path.is_file() else {}
    old.update(meta)
    old = {k: v for k, v in old.items() if v is not None}
    path.write_text(json.dumps(old, indent=1) + "\n")
    return path


class Chain(torch.nn.Module):
    """Torch modules run one after another: the torch twin of an ONNX chain (trunk file + head file)."""

    def __init__(self, *parts: torch.nn.Module):
        super().__init__()
        self.parts = torch.nn.ModuleList(parts)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for p in self.parts:
            x = p(x)
        return x


def chain_parity(module: torch.nn.Module, files: list[Path], size: int) -> float:
    """Max |ONNX chain - torch| for an image batch run through several ONNX files in turn (each file
    reads the previous one's first output; every output of the last file is compared)."""
    import onnxruntime as ort
    x = torch.randn(3, 3, size, size)
    with torch.no_grad():
        ref = module.eval()(x)
    ref = ref if isinstance(ref, (tuple, list)) else (ref,)
    out = [x.numpy()]
    for f in files:
        out = ort.InferenceSession(str(f), providers=["CPUExecutionProvider"]).run(None, {"input": out[0]})
    return float(max(np.abs(o - r.numpy()).max() for o, r in zip(out, ref)))


CHECKPOINTS = MODELS_DIR / "checkpoints"


def ship_checkpoint(run_ckpt: Path, name: str, keep: tuple[str, ...] | None = None, fp16: bool = False) -> Path:
    """Copy a training run's checkpoint (trainable parts + resolved config; a few MB) next to the
    ONNX files, so a fresh clone can rebuild the torch modules for parity tests and benchmarks.
    `keep` drops every other entry (optimiser states); `fp16` halves the file by storing float
    weights in half precision: export then reads the shipped file, so ONNX and checkpoint agree."""
    import shutil
    CHECKPOINTS.mkdir(parents=True, exist_ok=True)
    dst = CHECKPOINTS / f"{name}.pt"
    if keep is None and not fp16:
        shutil.copyfile(run_ckpt, dst)
        return dst
    ck = torch.load(run_ckpt, map_location="cpu", weights_only=False)
    ck = {k: v for k, v in ck.items() if keep is None or k in keep}

    def half(v):
        if isinstance(v, torch.Tensor) and v.is_floating_point():
            return v.half()
        return {k: half(x) for k, x in v.items()} if isinstance(v, dict) else v
    torch.save(half(ck) if fp16 else ck, dst)
    return dst


def load_checkpoint(name: str) -> dict:
    """A shipped checkpoint (see ship_checkpoint); FileNotFoundError says how to make it."""
    path = CHECKPOINTS / f"{name}.pt"
    if not path.is_file():
        raise FileNotFoundError(f"{path} missing: train the backend, then run `python -m export.all`")
    return torch.load(path, map_location="cpu", weights_only=False)

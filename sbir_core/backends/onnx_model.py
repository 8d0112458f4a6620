"""ONNX Runtime sessions and the JSON metadata that travels with each model file."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..config import MODELS_DIR

REBUILD_HINT = "rebuild it with `python -m export.all` (needs the training requirements)"


class ModelFileError(RuntimeError):
    """A model file is missing or damaged; the message says how to rebuild it."""


def default_threads() -> int:
    """Threads per query: 1 unless SBIR_THREADS says otherwise (one is fastest on 2 cores)."""
    return int(os.environ.get("SBIR_THREADS", "1"))


@dataclass
class OnnxModel:
    """One ONNX file with a single input, run by ONNX Runtime on the CPU (or CUDA when installed)."""
    path: Path
    session: Any
    input_name: str

    @classmethod
    def load(cls, path: str | Path, threads: int | None = None) -> "OnnxModel":
        import onnxruntime as ort
        path = Path(path)
        if not path.is_file():
            raise ModelFileError(f"model file {path.name} is missing from {path.parent}; {REBUILD_HINT}")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads or default_threads()
        opts.inter_op_num_threads = 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in ort.get_available_providers()]
        try:
            sess = ort.InferenceSession(str(path), sess_options=opts, providers=providers)
        except Exception as e:  # onnxruntime raises its own exception types for corrupt files
            raise ModelFileError(f"model file {path.name} is damaged ({type(e).__name__}); {REBUILD_HINT}") from None
        return cls(path, sess, sess.get_inputs()[0].name)

    def __call__(self, x: np.ndarray) -> list[np.ndarray]:
        return self.session.run(None, {self.input_name: np.ascontiguousarray(x, dtype=np.float32)})

    def batched(self, x: np.ndarray, batch: int = 32) -> list[np.ndarray]:
        """Run in chunks; outputs concatenated along the batch axis."""
        parts = [self(x[i:i + batch]) for i in range(0, len(x), batch)]
        return [np.concatenate([p[j] for p in parts]) for j in range(len(parts[0]))]


def read_meta(name: str, models_dir: Path | None = None) -> dict[str, Any]:
    """`models/<name>.json`: input size, normalisation, classes, file names, metrics."""
    path = (models_dir or MODELS_DIR) / f"{name}.json"
    if not path.is_file():
        raise ModelFileError(f"model metadata {path.name} is missing from {path.parent}; {REBUILD_HINT}")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ModelFileError(f"model metadata {path.name} is damaged ({e}); {REBUILD_HINT}") from None


def file_fingerprint(path: Path) -> str:
    """Short content hash of a model file: gallery embeddings are keyed by it, so retraining invalidates them."""
    import hashlib
    h = hashlib.sha1()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:12]


class OnnxChain:
    """ONNX files run one after another (the shared frozen trunk, then a backend's small head).
    Sessions are shared through `sessions`, so a trunk used by two chains is loaded once."""

    def __init__(self, models: list[OnnxModel]):
        self.models = models
        self.paths = [m.path for m in models]

    @classmethod
    def load(cls, files: str | list[str], models_dir: Path | None = None, threads: int | None = None,
             sessions: dict[str, OnnxModel] | None = None) -> "OnnxChain":
        models_dir = models_dir or MODELS_DIR
        sessions = {} if sessions is None else sessions
        names = [files] if isinstance(files, str) else list(files)
        for n in names:
            if n not in sessions:
                sessions[n] = OnnxModel.load(models_dir / n, threads)
        return cls([sessions[n] for n in names])

    def __call__(self, x: np.ndarray) -> list[np.ndarray]:
        out = [x]
        for m in self.models:
            out = m(out[0])
        return out

    def fingerprint(self) -> str:
        return "-".join(file_fingerprint(p)[:8] for p in self.paths)

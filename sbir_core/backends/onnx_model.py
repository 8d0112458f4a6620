"""ONNX Runtime sessions and the JSON metadata that travels with each model file."""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..config import MODELS_DIR

# ONNX Runtime otherwise keeps a device id and a telemetry database under ~/.cache; it reads this
# when it starts, so it is set before anything imports onnxruntime (an explicit setting wins).
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")

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


def read_meta(name: str, models_dir: Path | None = None) -> dict[str, Any]:
    """`models/<name>.json`: input size, normalisation, classes, file names, metrics; checked
    against the schema serving relies on (ModelFileError names the file and the field)."""
    path = (models_dir or MODELS_DIR) / f"{name}.json"
    if not path.is_file():
        raise ModelFileError(f"model metadata {path.name} is missing from {path.parent}; {REBUILD_HINT}")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError, OSError) as e:
        raise ModelFileError(f"model metadata {path.name} is damaged ({e}); {REBUILD_HINT}") from None
    problem = meta_problem(meta, name)
    if problem:
        raise ModelFileError(f"model metadata {path.name}: {problem}; {REBUILD_HINT}")
    return meta


# Fields a backend needs beyond the common ones (checked here, so a bad file fails on load, not mid-search).
REQUIRED_BY_BACKEND = {"classifier": ("classes",), "classifier_small": ("classes",), "cgan": ("photo_preprocess",)}
REQUIRED_BY_BACKEND["instance"] = ("class_sketch_model", "class_photo_model")   # and `classes`: checked by the backend
OPTIONAL_TEXT = ("title", "description", "curves", "backend", "checkpoint")


def meta_problem(meta: Any, name: str = "") -> str | None:
    """What is wrong with a model's metadata (naming the field), or None when serving can use it."""
    if not isinstance(meta, dict):
        return f"expected a JSON object, got {_json_type(meta)}"
    for f in ("preprocess", "sketch_model", "photo_model", *REQUIRED_BY_BACKEND.get(name, ())):
        if f not in meta:
            return f"field '{f}' is missing"
    for f in ("preprocess", "photo_preprocess"):
        if f in meta and (why := _preprocess_problem(meta[f])):
            return f"field '{f}' {why}"
    for f in ("sketch_model", "photo_model"):
        files = meta[f] if isinstance(meta[f], list) else [meta[f]]
        if not files or not all(isinstance(x, str) and x and Path(x).name == x and x not in (".", "..") for x in files):
            return f"field '{f}' must be a model file name (or a non-empty list of them) in the models folder, got {meta[f]!r:.80}"
    for f in OPTIONAL_TEXT:
        if f in meta and not isinstance(meta[f], str):
            return f"field '{f}' must be text, got {_json_type(meta[f])}"
    if "classes" in meta:
        c = meta["classes"]
        if not isinstance(c, list) or not c or not all(isinstance(x, str) and x for x in c):
            return "field 'classes' must be a non-empty list of class names"
    if "first_row_hedge" in meta and not (_finite(meta["first_row_hedge"]) and 0 <= meta["first_row_hedge"] <= 1):
        return f"field 'first_row_hedge' must be a share from 0 to 1, got {meta['first_row_hedge']!r:.40}"
    if "photo_refit" in meta and not isinstance(meta["photo_refit"], dict):
        return f"field 'photo_refit' must be an object, got {_json_type(meta['photo_refit'])}"
    return None


def _preprocess_problem(pp: Any) -> str | None:
    if not isinstance(pp, dict):
        return f"must be an object with size, mean and std, got {_json_type(pp)}"
    size = pp.get("size")
    if isinstance(size, bool) or not isinstance(size, int) or not 8 <= size <= 4096:
        return f"needs 'size', a whole number of pixels from 8 to 4096, got {size!r:.40}"
    for f in ("mean", "std"):
        v = pp.get(f)
        if not (isinstance(v, list) and len(v) == 3 and all(_finite(x) for x in v)):
            return f"needs '{f}', a list of 3 numbers, got {v!r:.60}"
    if any(x <= 0 for x in pp["std"]):
        return "needs every 'std' above 0"
    if "margin" in pp and not (_finite(pp["margin"]) and 0 <= pp["margin"] < 0.5):
        return f"needs 'margin' from 0 to 0.5, got {pp['margin']!r:.40}"
    return None


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _json_type(x: Any) -> str:
    return {dict: "an object", list: "a list", str: "text", bool: "true/false", type(None): "null"}.get(
        type(x), "a number")


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

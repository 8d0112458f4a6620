"""Serving side: one class per backend over ONNX Runtime, behind one protocol. No torch here."""
from __future__ import annotations

from ..config import MODELS_DIR
from .base import Backend, SearchResult, register_backend, registered
from .onnx_model import ModelFileError
from . import cgan, classifier, embedding, random_baseline  # noqa: F401  (registers the backends)
from . import instance  # noqa: F401,E402  (registers `instance`)

BASELINES = ("random",)


def available_backends(include_baselines: bool = False) -> list[str]:
    """Backends whose model files are present (the random baseline needs none)."""
    names = [n for n in registered() if (MODELS_DIR / f"{n}.json").is_file()]
    return names + [n for n in BASELINES if include_baselines]


def load_backend(name: str, threads: int | None = None) -> Backend:
    """A ready backend by name; ValueError lists the valid names, ModelFileError says how to rebuild."""
    reg = registered()
    if name not in reg:
        raise ValueError(f"unknown backend {name!r}; valid names: {', '.join(sorted(reg))}")
    return reg[name](threads=threads)


__all__ = ["Backend", "SearchResult", "available_backends", "load_backend", "register_backend", "ModelFileError"]

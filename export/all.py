"""Re-export every backend whose trained checkpoint is present: `python -m export.all`.

Each `export/<backend>.py` has `main()` (writes models/<files>.onnx + models/<backend>.json) and
`torch_modules()` ({onnx file: (torch module, input size)}, used by parity tests and benchmarks).
"""
from __future__ import annotations

import importlib

EXPORTERS = ("pretrained", "classifier", "triplet", "cgan", "instance", "context")


def exporter(name: str):
    """The export module of a backend, or None when it does not exist (yet)."""
    try:
        return importlib.import_module(f"export.{name}")
    except ModuleNotFoundError as e:
        if e.name == f"export.{name}":
            return None
        raise


if __name__ == "__main__":
    for name in EXPORTERS:
        mod = exporter(name)
        if mod is not None:
            print(f"== {name}")
            mod.main()

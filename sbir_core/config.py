"""Where things live. Every path is relative to the repo or an environment variable, never absolute."""
from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
MODELS_DIR = Path(os.environ.get("SBIR_MODELS_DIR", REPO_ROOT / "models"))
GALLERIES_DIR = REPO_ROOT / "galleries"
SPLITS_DIR = Path(__file__).resolve().parent / "data" / "splits"


def data_dir() -> Path:
    """The real data folder: `SBIR_DATA_DIR`, else `../shared/data` beside the repo."""
    return Path(os.environ.get("SBIR_DATA_DIR", REPO_ROOT.parent / "shared" / "data"))

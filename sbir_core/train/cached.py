"""Load the trunk features cached by `python -m sbir_core.train.features`, and small training helpers."""
from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import torch

from .features import CACHE


@dataclass
class Cached:
    """Features (N, V, 320, h, w) float16 with one record (path, label, photo_id, split, source) per row."""
    feats: np.ndarray
    records: list[dict]

    def where(self, split: str) -> np.ndarray:
        return np.asarray([i for i, r in enumerate(self.records) if r["split"] == split])


def load(name: str) -> Cached:
    path = CACHE / f"{name}.npy"
    if not path.is_file():
        raise FileNotFoundError(f"{path} missing: run `python -m sbir_core.train.features` first")
    return Cached(np.load(path, mmap_mode="r"), json.loads((CACHE / f"{name}.json").read_text()))


def balanced_weights(labels: list[str]) -> np.ndarray:
    """Sampling weights that give every class the same share (the 10-class set would dominate otherwise)."""
    uniq, inv, counts = np.unique(np.asarray(labels), return_inverse=True, return_counts=True)
    w = 1.0 / counts[inv]
    return w / w.sum()


def batch_tensor(feats: np.ndarray, rows: np.ndarray, views: np.ndarray) -> torch.Tensor:
    """Gather (B, 320, h, w) float32 from cached features at (row, view) pairs."""
    return torch.from_numpy(np.asarray(feats[rows, views], dtype=np.float32))


def topk_accuracy(logits: torch.Tensor, target: torch.Tensor, ks: tuple[int, ...] = (1, 5)) -> dict[str, float]:
    top = logits.topk(max(ks), dim=-1).indices                                   # (B, kmax)
    hit = top == target[:, None]
    return {f"top{k}": float(hit[:, :k].any(dim=1).float().mean()) for k in ks}

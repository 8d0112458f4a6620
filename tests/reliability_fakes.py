"""A backend with no model files, for the reliability tests (their subprocess imports it too)."""
from __future__ import annotations

import time

import numpy as np

from sbir_core.backends.base import Backend
from sbir_core.data.preprocess import Preprocess


class MeanColour(Backend):
    """Features = each photo's mean colour: cheap, and different for different photos."""
    name = "meancolour"
    preprocess = Preprocess(size=16)
    photo_batch = 4
    delay = 0.0

    def __init__(self) -> None:
        self.batches = 0                                   # encode_photos calls: how often it indexed

    @property
    def feature_key(self) -> str:
        return "meancolour-1"

    def encode_photos(self, x: np.ndarray) -> np.ndarray:
        self.batches += 1
        time.sleep(self.delay)
        return x.reshape(len(x), 3, -1).mean(axis=2).astype(np.float32)         # (B, 3)

    def encode_sketches(self, x: np.ndarray) -> tuple[np.ndarray, dict]:
        return x.reshape(len(x), 3, -1).mean(axis=2).astype(np.float32), {}

    def score(self, q: np.ndarray, f: np.ndarray, labels: list) -> np.ndarray:
        return -((q[:, None, :] - f[None]) ** 2).sum(-1)                           # (Q, N)

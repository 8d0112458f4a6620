"""Baseline: a random ranking, the floor for every metric."""
from __future__ import annotations

import hashlib
from typing import Any, Sequence

import numpy as np

from .base import Backend, register_backend


@register_backend("random")
class RandomBackend(Backend):
    """Scores are random numbers seeded by the sketch's pixels: repeatable, and meaningless."""

    ranks_in_store = False      # random numbers per photo: nothing a store could search
    card_score = "rank"         # the order means nothing, so no score is shown

    def __init__(self, threads: int | None = None, seed: int = 0, **_: Any):
        self.seed = seed

    @property
    def feature_key(self) -> str:
        return "random"

    def encode_photos(self, x: np.ndarray) -> np.ndarray:
        return np.zeros((len(x), 1), np.float32)

    def photo_inputs(self, images: Sequence[Any]) -> np.ndarray:
        return np.zeros((len(images), 1), np.float32)      # no need to decode photos

    def encode_sketches(self, x: np.ndarray) -> tuple[np.ndarray, dict[str, Any]]:
        seeds = [int.from_bytes(hashlib.sha1(s.tobytes()).digest()[:4], "little") ^ self.seed for s in x]
        return np.asarray(seeds, dtype=np.int64)[:, None], {}

    def score(self, queries: np.ndarray, features: np.ndarray, labels: Sequence[str | None]) -> np.ndarray:
        return np.stack([np.random.default_rng(int(q[0])).random(len(features)) for q in queries]).astype(np.float32)

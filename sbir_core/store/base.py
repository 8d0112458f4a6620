"""The one interface every vector store follows: photos' feature vectors per backend, searched by
inner product (cosine on the unit vectors backends store).

A store holds, per *feature key* (a backend's `feature_key`, which changes whenever its photo model
does), one row per photo: the photo id, its vector, and what a gallery needs to show it without the
vectors (label, file path, a stamp of the file's size and mtime so a rebuild sees a changed photo).
Nothing here knows about backends or images: `sbir_core.gallery` and `sbir_core.store.build` do.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np


class StoreError(OSError):
    """A store that cannot be opened or used (bad URI, unreachable server, missing package,
    a key it does not hold): one message for the user, never a traceback. An OSError, so code
    that already turns I/O failures into messages (the app, the command lines) covers it."""


@dataclass(frozen=True)
class PhotoRecord:
    """What a store keeps beside each vector, so a gallery can list and show photos without vectors."""
    id: str
    file: str = ""            # where the photo is read from (thumbnails are read on demand)
    label: str = ""           # a vocabulary class, or "" (unlabelled)
    stamp: str = ""           # "<size>:<mtime_ns>" of the file when it was indexed ("" = unknown)


class VectorStore(ABC):
    """Per feature key: add (or replace) photos' vectors, search the top k or every photo within a
    similarity, count, delete and look up by photo id. Scores are inner products, higher is better."""

    uri: str = ""
    index: str = "exact"          # how it searches: exact, or Milvus's HNSW / IVF_FLAT / FLAT index

    @abstractmethod
    def add(self, key: str, vectors: np.ndarray, photos: Sequence[PhotoRecord]) -> None:
        """Store (N, D) `vectors` for `photos` under `key`; a photo id already there is replaced."""

    @abstractmethod
    def search(self, key: str, query: np.ndarray, k: int) -> tuple[list[str], np.ndarray]:
        """The k photo ids with the highest inner product with `query` (D,), best first, and their scores."""

    @abstractmethod
    def within(self, key: str, query: np.ndarray, threshold: float, limit: int) -> tuple[list[str], np.ndarray]:
        """Every photo id scoring >= `threshold` (at most `limit`), best first, and their scores."""

    @abstractmethod
    def count(self, key: str) -> int:
        """How many photos `key` holds (0 when it holds none)."""

    @abstractmethod
    def delete(self, key: str, ids: Sequence[str]) -> None:
        """Remove these photos from `key` (ids it does not hold are ignored)."""

    @abstractmethod
    def stamps(self, key: str, ids: Sequence[str]) -> dict[str, str]:
        """{id: stamp} for the ids of `ids` that `key` holds: what a resumed build skips."""

    @abstractmethod
    def get(self, key: str, ids: Sequence[str]) -> np.ndarray:
        """(len(ids), D) stored vectors in the order of `ids`; StoreError names an id it lacks."""

    @abstractmethod
    def photos(self, key: str, batch: int = 10_000) -> Iterator[list[PhotoRecord]]:
        """Every photo of `key`, in batches (a gallery lists them without loading vectors)."""

    @abstractmethod
    def keys(self) -> list[str]:
        """The feature keys this store holds."""

    def dim(self, key: str) -> int | None:
        """The vectors' dimension under `key`, or None when it holds none."""
        return None

    def close(self) -> None:
        """Release connections (a store is also closed when the process exits)."""

    def __enter__(self) -> "VectorStore":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def check_vectors(vectors: np.ndarray, photos: Sequence[PhotoRecord]) -> np.ndarray:
    """(N, D) finite float32 rows, one per photo, with unique ids: refused with a message otherwise."""
    v = np.asarray(vectors, dtype=np.float32)
    if v.ndim != 2 or len(v) != len(photos):
        raise StoreError(f"expected one vector per photo ({len(photos)}), got an array of shape {v.shape}")
    if not np.isfinite(v).all():
        raise StoreError("vectors must be finite (an unreadable photo has no vector: leave it out)")
    ids = [p.id for p in photos]
    if len(set(ids)) != len(ids):
        raise StoreError("photo ids must be unique within one add")
    return np.ascontiguousarray(v)

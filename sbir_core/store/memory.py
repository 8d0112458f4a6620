"""The in-process store (`memory`): vectors in this process's memory, exact search by FAISS's flat
inner-product scan (numpy without faiss). Today's behaviour and the default; nothing is shared
between processes and nothing outlives the process."""
from __future__ import annotations

import threading
from typing import Iterator, Sequence

import numpy as np

from ..index import top_k
from .base import PhotoRecord, StoreError, VectorStore, check_vectors


class _Table:
    """One feature key's rows: vectors (capacity-doubling array), records, id -> row."""

    def __init__(self, dim: int):
        self.dim = dim
        self.vectors = np.zeros((0, dim), np.float32)                     # (capacity, D)
        self.records: list[PhotoRecord] = []
        self.row: dict[str, int] = {}
        self.flat = None                  # a FAISS IndexFlatIP over the rows, rebuilt after a change
        self.dirty = True

    def __len__(self) -> int:
        return len(self.records)

    def live(self) -> np.ndarray:
        return self.vectors[:len(self.records)]

    def add(self, vectors: np.ndarray, photos: Sequence[PhotoRecord]) -> None:
        new = [j for j, p in enumerate(photos) if p.id not in self.row]
        for j, p in enumerate(photos):                                     # replace in place
            if p.id in self.row:
                r = self.row[p.id]
                self.vectors[r], self.records[r] = vectors[j], p
        n, need = len(self.records), len(self.records) + len(new)
        if need > len(self.vectors):
            grown = np.zeros((max(need, 2 * len(self.vectors), 1024), self.dim), np.float32)
            grown[:n] = self.vectors[:n]
            self.vectors = grown
        self.vectors[n:need] = vectors[new]
        for r, j in enumerate(new, start=n):
            self.records.append(photos[j])
            self.row[photos[j].id] = r
        self.dirty = True

    def delete(self, ids: Sequence[str]) -> None:
        for i in ids:
            r = self.row.pop(i, None)
            if r is None:
                continue
            last = len(self.records) - 1                                   # move the last row into the hole
            if r != last:
                self.vectors[r], self.records[r] = self.vectors[last], self.records[last]
                self.row[self.records[r].id] = r
            self.records.pop()
            self.dirty = True

    def scores(self, query: np.ndarray) -> np.ndarray:
        return self.live() @ query                                           # (N,)

    def search(self, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        if self.dirty:
            self.flat, self.dirty = _faiss_flat(self.live()), False
        if self.flat is None:
            s = self.scores(query)
            idx = top_k(s, k)
            return idx, s[idx]
        s, i = self.flat.search(query.reshape(1, -1), min(k, len(self)))
        keep = i[0] >= 0
        return i[0][keep].astype(np.int64), s[0][keep]


class MemoryStore(VectorStore):
    """In-process vectors per feature key, exact inner-product search; thread-safe."""

    def __init__(self) -> None:
        self.uri = "memory"
        self._tables: dict[str, _Table] = {}
        self._lock = threading.Lock()

    def _table(self, key: str) -> _Table:
        t = self._tables.get(key)
        if t is None:
            raise StoreError(f"the store holds no vectors for {key!r} (holds: {', '.join(self.keys()) or 'none'})")
        return t

    def add(self, key: str, vectors: np.ndarray, photos: Sequence[PhotoRecord]) -> None:
        v = check_vectors(vectors, photos)
        with self._lock:
            t = self._tables.setdefault(key, _Table(v.shape[1]))
            if v.shape[1] != t.dim:
                raise StoreError(f"{key!r} holds {t.dim}-dimensional vectors, got {v.shape[1]}")
            t.add(v, photos)

    def search(self, key: str, query: np.ndarray, k: int) -> tuple[list[str], np.ndarray]:
        with self._lock:
            t = self._table(key)
            idx, s = t.search(_query(query, t.dim), k)
            return [t.records[i].id for i in idx], s

    def within(self, key: str, query: np.ndarray, threshold: float, limit: int) -> tuple[list[str], np.ndarray]:
        with self._lock:
            t = self._table(key)
            s = t.scores(_query(query, t.dim))
            idx = np.nonzero(s >= threshold)[0]
            idx = idx[np.argsort(-s[idx], kind="stable")][:limit]
            return [t.records[i].id for i in idx], s[idx]

    def count(self, key: str) -> int:
        t = self._tables.get(key)
        return 0 if t is None else len(t)

    def delete(self, key: str, ids: Sequence[str]) -> None:
        with self._lock:
            if key in self._tables:
                self._tables[key].delete(ids)

    def stamps(self, key: str, ids: Sequence[str]) -> dict[str, str]:
        t = self._tables.get(key)
        if t is None:
            return {}
        return {i: t.records[t.row[i]].stamp for i in ids if i in t.row}

    def get(self, key: str, ids: Sequence[str]) -> np.ndarray:
        with self._lock:
            t = self._table(key)
            missing = [i for i in ids if i not in t.row]
            if missing:
                raise StoreError(f"{key!r} holds no vector for photo {missing[0]!r}")
            return t.vectors[[t.row[i] for i in ids]].copy()

    def photos(self, key: str, batch: int = 10_000) -> Iterator[list[PhotoRecord]]:
        with self._lock:
            records = list(self._table(key).records)
        for i in range(0, len(records), batch):
            yield records[i:i + batch]

    def keys(self) -> list[str]:
        return sorted(k for k, t in self._tables.items() if len(t))

    def dim(self, key: str) -> int | None:
        t = self._tables.get(key)
        return None if t is None else t.dim


def _query(query: np.ndarray, dim: int) -> np.ndarray:
    q = np.ascontiguousarray(np.asarray(query, dtype=np.float32).reshape(-1))
    if len(q) != dim:
        raise StoreError(f"the query has {len(q)} dimensions, the stored vectors {dim}")
    return q


def _faiss_flat(vectors: np.ndarray):
    """A FAISS exact inner-product index over `vectors` (copied), or None without faiss."""
    try:
        import faiss
    except ImportError:
        return None
    flat = faiss.IndexFlatIP(vectors.shape[1])
    if len(vectors):
        flat.add(np.ascontiguousarray(vectors))
    return flat

"""Galleries' features on disk and the indexing jobs behind them.

Per backend, a gallery's features are one .npy file with a .json record (which photos, shape,
checksum) beside it, written atomically, so a damaged, stale or half-written file is rebuilt, never
served. One indexing job per gallery folder at a time: every session that asks waits for it.
"""
from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import threading
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

log = logging.getLogger(__name__)

CACHE_FORMAT = 1
STALE_TEMP_S = 3600           # a temp file this old belongs to no live writer


def read_cached(cache_dir: Path, key: str, fp: str, n_listed: int, saved: bool) -> tuple[np.ndarray | None, list[str]]:
    """The cached (listed photos, ...) features, or None when absent, damaged or stale; and the
    photos its record names as unreadable. A `saved` gallery's committed embeddings may predate the
    records, so a missing record is accepted there."""
    path, meta_path = cache_dir / f"{key}.npy", cache_dir / f"{key}.json"
    if not path.is_file():
        return None, []
    try:
        data = path.read_bytes()
        feats = np.load(io.BytesIO(data), allow_pickle=False)
    except (OSError, ValueError, EOFError) as e:
        log.warning("rebuilding %s: the cached features are damaged (%s)", path, e)
        return None, []
    if (feats.ndim != 2 or len(feats) != n_listed or not np.issubdtype(feats.dtype, np.floating)
            or not (np.isfinite(feats).all(axis=1) | np.isnan(feats).all(axis=1)).all()):
        log.warning("rebuilding %s: shape %s, dtype %s do not fit %d photos", path, feats.shape, feats.dtype,
                    n_listed)
        return None, []
    meta = read_json(meta_path)
    if meta is None and not saved:
        log.warning("rebuilding %s: no record of which photos it holds", path)
        return None, []
    if meta is not None:             # (a saved gallery's embeddings may predate these records)
        expect = {"format": CACHE_FORMAT, "photos": fp, "shape": list(feats.shape), "dtype": str(feats.dtype),
                  "sha1": hashlib.sha1(data).hexdigest()}
        wrong = [k for k, v in expect.items() if meta.get(k) != v]
        if wrong:
            log.warning("rebuilding %s: stale or damaged (%s differ)", path, ", ".join(wrong))
            return None, []
        return feats, [str(m) for m in meta.get("skipped") or []]
    return feats, []

def write_cached(cache_dir: Path, key: str, fp: str, feats: np.ndarray, skipped: list[str]) -> None:
    """Features, then their record, each written atomically; a read-only folder is not an error
    (the gallery still works, it just re-indexes next time)."""
    buf = io.BytesIO()
    np.save(buf, feats, allow_pickle=False)
    data = buf.getvalue()
    meta = {"format": CACHE_FORMAT, "photos": fp, "shape": list(feats.shape), "dtype": str(feats.dtype),
            "sha1": hashlib.sha1(data).hexdigest(), "skipped": skipped}
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        atomic_write(cache_dir / f"{key}.npy", data)
        atomic_write(cache_dir / f"{key}.json", (json.dumps(meta, indent=1) + "\n").encode())
    except OSError as e:
        log.warning("could not cache features in %s (%s)", cache_dir, e)
        return
    for tmp in cache_dir.glob(f".{key}.*.tmp"):   # left by a process killed mid-write
        try:
            if time.time() - tmp.stat().st_mtime > STALE_TEMP_S:
                tmp.unlink()
        except OSError:
            pass


def photos_fingerprint(sources: Sequence[Any], by_content: bool = False) -> str:
    """A hash over every photo in order: bytes by content; files by folder and name + size + mtime
    (cheap: one stat each), or by folder and name + content when `by_content` (stable across a git
    checkout)."""
    h = hashlib.sha1()
    for src in sources:
        if isinstance(src, (bytes, bytearray, memoryview)):
            h.update(b"b" + hashlib.sha1(src).digest())
            continue
        p = Path(src)
        h.update(b"f" + f"{p.parent.name}/{p.name}".encode("utf-8", "surrogateescape") + b"\0")
        try:
            if by_content:
                h.update(hashlib.sha1(p.read_bytes()).digest())
            else:
                st = p.stat()
                h.update(f"{st.st_size}:{st.st_mtime_ns}".encode())
        except OSError:
            h.update(b"missing")
    return h.hexdigest()[:20]


def atomic_write(path: Path, data: bytes) -> None:
    """Write to a temp file in the same folder, fsync, rename over `path`: readers see the old
    file or the new one, never half of one (a kill mid-write leaves only a stray temp file)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def read_json(path: Path) -> dict[str, Any] | None:
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return d if isinstance(d, dict) else None


class IndexJob:
    """One gallery being indexed: its progress and outcome, for everyone waiting on it."""

    def __init__(self) -> None:
        self.done = 0
        self.total = 0
        self.finished = threading.Event()
        self.error: BaseException | None = None
        self.owner: Any = None             # the Gallery instance that indexes
        self.key = ""

    def run(self, work: Any, release: Any) -> None:
        """`work()` in a daemon thread; then `release()` and wake the waiters (also on failure)."""
        def target() -> None:
            try:
                work()
            except BaseException as e:      # handed to the waiters, who raise it
                self.error = e
            finally:
                release()
                self.finished.set()
        threading.Thread(target=target, name="gallery-index", daemon=True).start()

    def report(self, done: int, total: int) -> None:
        """The worker's progress, read by the waiters."""
        self.done, self.total = done, total


_jobs: dict[str, IndexJob] = {}
_jobs_guard = threading.Lock()


def claim(key: str) -> tuple[IndexJob, bool]:
    """The job indexing this gallery now, and whether the caller just became its owner."""
    with _jobs_guard:
        job = _jobs.get(key)
        if job is None:
            job = _jobs[key] = IndexJob()
            return job, True
        return job, False


def release(key: str, job: IndexJob) -> None:
    with _jobs_guard:
        if _jobs.get(key) is job:
            del _jobs[key]

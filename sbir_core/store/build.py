"""Index a folder of photos of any size into a vector store: in batches, with a progress bar,
resuming where an earlier run stopped (photo ids already stored with the same file stamp are
skipped), never holding more than two batches of images in memory, naming every unreadable file.

    python -m sbir_core.store.build FOLDER --store ./photos.db --backends triplet,classifier

A folder is `<class>/<image>` subfolders (labelled) or flat (unlabelled), as `Gallery.from_folder`
reads it, with the same photo ids (`<class>/<stem>`, or `<stem>`). Photos whose file lies under
FOLDER but is gone from it are removed from the store (`prune`).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Sequence

import numpy as np

from ..data.classes import canonical, normalise
from ..data.preprocess import ImageInputError, load_image
from ..data.readers import IMAGE_SUFFIXES
from ..uploads import safe_name
from .base import PhotoRecord, StoreError, VectorStore

if TYPE_CHECKING:
    from ..backends.base import Backend

BATCH = 64


@dataclass
class BuildReport:
    """What one run did, per backend and in all."""
    photos: int = 0                                       # listed in the folder
    processed: int = 0                                    # read and indexed (for any backend) in this run
    indexed: dict[str, int] = field(default_factory=dict)     # newly stored, per backend
    already: dict[str, int] = field(default_factory=dict)     # skipped: stored before with the same stamp
    removed: dict[str, int] = field(default_factory=dict)     # gone from the folder, deleted from the store
    stored: dict[str, int] = field(default_factory=dict)      # in the store afterwards
    unreadable: list[str] = field(default_factory=list)       # "<file> (<why>)"
    duplicates: list[str] = field(default_factory=list)       # files whose id another file already has
    seconds: float = 0.0
    cpu_s: float = 0.0                                    # this process's CPU time (all threads)
    decode_s: float = 0.0                                 # reading, decoding and preprocessing images (2nd thread)
    encode_s: float = 0.0                                 # preprocessing + the backends' photo models
    store_s: float = 0.0                                  # writing to the store
    interrupted: bool = False

    def as_dict(self) -> dict[str, Any]:
        done = self.processed
        return {"photos": self.photos, "indexed": self.indexed, "already_stored": self.already,
                "removed": self.removed, "stored": self.stored, "unreadable": self.unreadable,
                "duplicates": self.duplicates, "seconds": round(self.seconds, 2),
                "photos_per_s": round(done / self.seconds, 1) if self.seconds and done else None,
                "seconds_decode": round(self.decode_s, 2), "seconds_encode": round(self.encode_s, 2),
                "seconds_store": round(self.store_s, 2), "cpu_seconds": round(self.cpu_s, 2),
                "photos_per_cpu_s": round(done / self.cpu_s, 1) if self.cpu_s and done else None,
                "interrupted": self.interrupted}


def list_folder(folder: str | Path) -> Iterator[PhotoRecord]:
    """Every image of a folder as a record (id, absolute file, label, stamp), without opening any:
    flat images first (unlabelled), then each `<class>/` subfolder in name order."""
    root = Path(folder).expanduser().resolve()
    if not root.is_dir():
        raise StoreError(f"no such folder: {folder}")

    def images(d: Path) -> list[os.DirEntry]:
        with os.scandir(d) as it:
            return sorted((e for e in it if e.is_file() and not e.name.startswith(".")
                           and os.path.splitext(e.name)[1].lower() in IMAGE_SUFFIXES), key=lambda e: e.name)

    def record(e: os.DirEntry, sub: str | None) -> PhotoRecord:
        st = e.stat()
        stem = os.path.splitext(e.name)[0]
        pid = f"{normalise(sub)}/{stem}" if sub is not None else stem
        label = (canonical(sub) or "") if sub is not None else ""
        return PhotoRecord(pid, e.path, label, f"{st.st_size}:{st.st_mtime_ns}")

    for e in images(root):
        yield record(e, None)
    with os.scandir(root) as it:
        subs = sorted(e.name for e in it if e.is_dir() and not e.name.startswith("."))
    for sub in subs:
        for e in images(root / sub):
            yield record(e, sub)


def index_folder(folder: str | Path, store: VectorStore, backends: Sequence["Backend"], batch: int = BATCH,
                 prune: bool = True, progress: Callable[[int, int, float], None] | None = None,
                 limit: int | None = None) -> BuildReport:
    """Store every photo of `folder` for each backend that lacks it (see the module docstring).
    `limit` stops after that many photos were indexed (to test resuming); `progress(done, total,
    photos_per_s)` is called after each batch. Ctrl-C stops cleanly after the batch being written:
    the report says so, and a second run resumes."""
    t_start, cpu_start = time.perf_counter(), time.process_time()
    rep = BuildReport()
    listed, seen, root = [], set(), str(Path(folder).expanduser().resolve())
    for r in list_folder(folder):
        if r.id in seen:
            rep.duplicates.append(f"{_name(r.file)} (another file already has the id {r.id})")
            continue
        seen.add(r.id)
        listed.append(r)
    rep.photos = len(listed)
    todo: dict[str, list[int]] = {}                 # per feature key: positions in `listed` to index
    for b in backends:
        key = b.feature_key
        if prune:
            gone = [r.id for chunk in store.photos(key) for r in chunk if r.id not in seen
                    and r.file.startswith(root + os.sep)] if store.count(key) else []
            store.delete(key, gone)
            rep.removed[b.name] = len(gone)
        stamps: dict[str, str] = {}
        for i in range(0, len(listed), 5_000):
            stamps.update(store.stamps(key, [r.id for r in listed[i:i + 5_000]]))
        todo[key] = [n for n, r in enumerate(listed) if stamps.get(r.id) != r.stamp]
        rep.already[b.name] = len(listed) - len(todo[key])
        rep.indexed[b.name] = 0
    needed = sorted(set().union(*todo.values())) if todo else []
    if limit is not None:
        needed = needed[:limit]
    wanted = {b.feature_key: set(todo[b.feature_key]) for b in backends}
    done = 0
    batches = [needed[i:i + batch] for i in range(0, len(needed), batch)]
    prepare = lambda rows: _prepare(listed, rows, backends, wanted)  # noqa: E731
    try:
        with ThreadPoolExecutor(1) as pool:          # decodes and preprocesses the next batch while this one is encoded
            pending = pool.submit(prepare, batches[0]) if batches else None
            for bi in range(len(batches)):
                inputs, bad, dt = pending.result()
                rep.decode_s += dt
                pending = pool.submit(prepare, batches[bi + 1]) if bi + 1 < len(batches) else None
                rep.unreadable += [f"{_name(listed[n].file)} ({why})" for n, why in bad]
                for b in backends:
                    rows, x = inputs[b.feature_key]
                    if not rows:
                        continue
                    t0 = time.perf_counter()
                    feats = b.encode_photos(x)
                    recs = [listed[n] for n in rows]
                    vecs = b.store_vectors(feats, [r.label or None for r in recs])
                    t1 = time.perf_counter()
                    store.add(b.feature_key, vecs, recs)
                    rep.store_s += time.perf_counter() - t1
                    rep.encode_s += t1 - t0
                    rep.indexed[b.name] += len(rows)
                done += len(batches[bi])
                rep.processed = done
                if progress:
                    progress(done, len(needed), done / max(time.perf_counter() - t_start, 1e-9))
    except KeyboardInterrupt:
        rep.interrupted = True
    rep.stored = {b.name: store.count(b.feature_key) for b in backends}
    rep.seconds = time.perf_counter() - t_start
    rep.cpu_s = time.process_time() - cpu_start
    return rep


def _prepare(listed: Sequence[PhotoRecord], rows: Sequence[int], backends: Sequence["Backend"],
             wanted: dict[str, set[int]]) -> tuple[dict[str, tuple[list[int], Any]], list[tuple[int, str]], float]:
    """One batch, off the encoding thread: open each photo through the guarded loader once, then each
    backend's model inputs (shared by backends with the same photo preprocessing). Returns {feature
    key: (positions, (B, 3, S, S) inputs)}, [(position, why unreadable)], seconds."""
    t0 = time.perf_counter()
    images, bad = {}, []
    for n in rows:
        try:
            im = load_image(listed[n].file)
            im.load()
            images[n] = im
        except ImageInputError as e:
            bad.append((n, str(e)))
        except OSError as e:                         # vanished or unreadable since it was listed
            bad.append((n, e.strerror or str(e)))
    out: dict[str, tuple[list[int], Any]] = {}
    made: dict[tuple, tuple[list[int], Any]] = {}
    for b in backends:
        mine = [n for n in images if n in wanted[b.feature_key]]
        how = (type(b).photo_inputs, repr(b.photo_preprocess or b.preprocess), tuple(mine))
        if how not in made:
            good, arrays = [], []
            for n in mine:
                try:
                    arrays.append(b.photo_inputs([images[n]])[0])
                    good.append(n)
                except ImageInputError as e:
                    if not any(m == n for m, _ in bad):
                        bad.append((n, str(e)))
            made[how] = (good, np.stack(arrays) if arrays else None)
        out[b.feature_key] = made[how]
    return out, bad, time.perf_counter() - t0


def _name(path: str) -> str:
    p = Path(path)
    return safe_name(f"{p.parent.name}/{p.name}", 160)


class ProgressBar:
    """One line on stderr, redrawn at most every 0.2 s: [#####.....] 1,234/5,000  61.2 photos/s  eta 1m02s."""

    def __init__(self, label: str, stream: Any = None, width: int = 28):
        self.label, self.stream, self.width, self.last = label, stream or sys.stderr, width, 0.0

    def __call__(self, done: int, total: int, rate: float) -> None:
        now = time.perf_counter()
        if now - self.last < 0.2 and done < total:
            return
        self.last = now
        fill = int(self.width * done / max(total, 1))
        eta = (total - done) / rate if rate > 0 else 0
        self.stream.write(f"\r{self.label} [{'#' * fill}{'.' * (self.width - fill)}] {done:,}/{total:,}  "
                          f"{rate:.1f} photos/s  eta {int(eta // 60)}m{int(eta % 60):02d}s ")
        if done >= total:
            self.stream.write("\n")
        self.stream.flush()


def main_index(folder: Path, uri: str | None, backend_names: Sequence[str], batch: int = BATCH,
               prune: bool = True, limit: int | None = None, as_json: bool = False, threads: int | None = None) -> int:
    """What `main` runs: index, print a summary, and return the exit status (0 ok, 1 some photos
    unreadable, 130 interrupted)."""
    import json

    from ..backends import available_backends, load_backend
    from ..gallery import Gallery
    from . import is_memory, open_store, store_uri

    names = list(backend_names) or available_backends()
    # one ONNX Runtime thread (SBIR_THREADS) beside the thread that reads and preprocesses: on 2 cores
    # that indexed faster than 2 ORT threads, 103 vs 73 photos per CPU-second (docs/stores.md)
    backends = [load_backend(n, threads=threads) for n in names]
    uri = store_uri(uri)
    if is_memory(uri):               # today's behaviour: features cached beside the folder gallery
        g = Gallery.from_folder(folder)
        for b in backends:
            bar = ProgressBar(b.name)
            t0 = time.perf_counter()
            g.features(b, lambda d, n: bar(d, n, d / max(time.perf_counter() - t0, 1e-9)))
        print(f"{len(g)} photos of {folder} indexed in memory (cached under {g.cache_dir}) for {', '.join(names)}; "
              f"pass --store ./photos.db or http://host:19530 to keep them in Milvus")
        if g.skipped:
            print(g.skipped_summary(), file=sys.stderr)
        return 1 if g.skipped else 0
    with open_store(uri) as store:
        rep = index_folder(folder, store, backends, batch=batch, prune=prune, limit=limit,
                           progress=ProgressBar("indexing"))
    if as_json:
        print(json.dumps(rep.as_dict(), indent=1))
    else:
        d = rep.as_dict()
        print(f"{rep.photos} photos in {folder}; store {uri}")
        for n in names:
            print(f"  {n}: {rep.indexed[n]} indexed now, {rep.already[n]} already stored, "
                  f"{rep.removed.get(n, 0)} removed (gone from the folder), {rep.stored[n]} in the store")
        if d["photos_per_s"]:
            print(f"  {d['photos_per_s']} photos/s ({d['seconds']} s: read + preprocess {d['seconds_decode']} s in a second "
                  f"thread, encode {d['seconds_encode']} s, store {d['seconds_store']} s)")
        for line in rep.duplicates:
            print(f"  duplicate id, not indexed: {line}", file=sys.stderr)
    if rep.unreadable:
        print(f"{len(rep.unreadable)} unreadable photo(s), not indexed:", file=sys.stderr)
        for line in rep.unreadable:
            print(f"  {line}", file=sys.stderr)
    if rep.interrupted:
        print("interrupted: the photos above are stored; run the same command again to resume", file=sys.stderr)
        return 130
    return 1 if rep.unreadable else 0


def main(argv: list[str] | None = None) -> None:
    """The command line; a bad store URI or backend name is one message, not a traceback."""
    ap = argparse.ArgumentParser(prog="python -m sbir_core.store.build", description=__doc__.split("\n\n")[0])
    ap.add_argument("folder", type=Path, help="a folder of photos (<class>/<image> or flat)")
    ap.add_argument("--store", default=None, help="memory (default; or $SBIR_STORE), ./photos.db "
                    "(Milvus Lite) or http://host:19530 (a Milvus server)")
    ap.add_argument("--backends", default="", help="comma-separated backends (default: all)")
    ap.add_argument("--batch", type=int, default=BATCH, help="photos per batch")
    ap.add_argument("--no-prune", action="store_true", help="keep stored photos that are gone from the folder")
    ap.add_argument("--limit", type=int, default=None, help="stop after this many photos")
    ap.add_argument("--json", action="store_true", help="print the report as JSON")
    ap.add_argument("--threads", type=int, default=None,
                    help="ONNX Runtime threads (default: SBIR_THREADS or 1; photos are read in another)")
    a = ap.parse_args(argv)
    try:
        sys.exit(main_index(a.folder, a.store, [b for b in a.backends.split(",") if b], batch=max(1, a.batch),
                            prune=not a.no_prune, limit=a.limit, as_json=a.json, threads=a.threads))
    except (StoreError, ValueError) as e:          # bad URI, unknown backend, ...
        sys.exit(f"store.build: {e}")


if __name__ == "__main__":
    main()

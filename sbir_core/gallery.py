"""A gallery: photos, their labels, and per-backend features, saved and loaded as plain files.

Four kinds, one class: the bundled gallery (`galleries/bundled`: images + metadata.csv +
precomputed embeddings/), any folder of photos (features cached under `.cache/`), photos held
in memory (a user's upload; features live for the session), and a gallery in a vector store
(`Gallery.from_store`: Milvus Lite or a Milvus server, filled by `python -m sbir_core.store.build
FOLDER --store URI`): the store searches, this process keeps only ids, labels and file names, and
reads a photo only to show it.

The feature cache must never be able to show wrong results, so each `<feature_key>.npy` is
written atomically (temp file + rename) with a `<feature_key>.json` beside it that records the
photos' fingerprint, the array's shape and dtype and the file's hash; a file that is damaged, was
cut short, or belongs to other photos is rebuilt, never trusted. One thread indexes a gallery at a
time; the others wait for its result (and see its progress) instead of indexing it again.
"""
from __future__ import annotations

import csv
import hashlib
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
from PIL import Image

from .config import GALLERIES_DIR, REPO_ROOT
from .data.classes import display
from .data.preprocess import ImageInputError, load_image, probe_image
from .data.readers import image_folder
from .feature_cache import IndexJob, claim, photos_fingerprint, read_cached, release, write_cached
from .index import top_k
from .uploads import safe_name

if TYPE_CHECKING:
    from .backends.base import Backend, Progress
    from .store import VectorStore

log = logging.getLogger(__name__)

BUNDLED_DIR = GALLERIES_DIR / "bundled"
CACHE_ROOT = REPO_ROOT / ".cache" / "embeddings"
METADATA_COLUMNS = ("id", "file", "label", "caption", "source", "licence")
STORE_MAX_K = 16_384          # most results one store search returns (Milvus's own limit)


@dataclass
class Gallery:
    """Photos to search. `sources[i]` is a path or the image bytes; `labels[i]` a class or None.

    `saved` galleries (a folder with metadata.csv) fingerprint their photos by content, so their
    committed embeddings stay valid in a fresh clone; folder galleries by name, size and mtime.
    `skipped` names the photos left out because they could not be read (one line each)."""
    name: str
    ids: list[str]
    sources: list[Any]
    labels: list[str | None]
    captions: list[str] = field(default_factory=list)
    info: list[dict[str, str]] = field(default_factory=list)   # per photo: source, licence, ...
    cache_dir: Path | None = None
    saved: bool = False
    skipped: list[str] = field(default_factory=list)
    _features: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    _fingerprint: str | None = field(default=None, repr=False)
    _n_listed: int | None = field(default=None, repr=False)     # photos before any was skipped
    _kept: list[int] | None = field(default=None, repr=False)   # their listed positions, once some were
    store: "VectorStore | None" = field(default=None, repr=False)  # set: the store ranks (`from_store`)
    _position: dict[str, int] | None = field(default=None, repr=False)
    _parts: "tuple[Gallery, Gallery] | None" = field(default=None, repr=False)   # set by `with_photos`

    def __len__(self) -> int:
        return len(self.ids)

    # -- constructors ------------------------------------------------------------------------
    @classmethod
    def from_folder(cls, path: str | Path, name: str | None = None) -> "Gallery":
        """`<class>/<image>` subfolders (labelled) or a flat folder (unlabelled)."""
        items = image_folder(path)
        if not items:
            raise ImageInputError(f"no images found in {path}")
        key = hashlib.sha1(str(Path(path).resolve()).encode()).hexdigest()[:12]
        ids = [f"{it.raw_label}/{it.path.stem}" if it.raw_label else it.path.stem for it in items]
        return cls(name or Path(path).name, ids, [it.path for it in items], [it.label for it in items],
                   [it.path.stem for it in items], [{} for _ in items], cache_dir=CACHE_ROOT / key)

    @classmethod
    def load(cls, folder: str | Path) -> "Gallery":
        """A saved gallery: `metadata.csv` (id, file, label, caption, source, licence[, author, display])
        + images + embeddings/."""
        folder = Path(folder)
        with open(folder / "metadata.csv", newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            missing = [c for c in ("id", "file", "label") if c not in (reader.fieldnames or [])]
            if missing:
                raise ValueError(f"{folder / 'metadata.csv'}: missing column(s) {', '.join(missing)}")
            rows = list(reader)
        root = folder.resolve()
        for n, r in enumerate(rows, start=2):
            if not r["file"] or not (folder / r["file"]).resolve().is_relative_to(root):
                raise ValueError(f"{folder / 'metadata.csv'} line {n}: file {r['file']!r:.80} is not inside the gallery folder")
        return cls(folder.name, [r["id"] for r in rows], [folder / r["file"] for r in rows],
                   [r["label"] or None for r in rows], [r.get("caption", "") for r in rows],
                   [{k: r.get(k) or "" for k in ("source", "licence", "author", "display")} for r in rows],
                   cache_dir=folder / "embeddings", saved=True)

    @classmethod
    def bundled(cls) -> "Gallery":
        """The gallery that ships in the repo (real, redistributable photos; see NOTICE)."""
        return cls.load(BUNDLED_DIR)

    @classmethod
    def from_store(cls, store: "str | VectorStore", name: str | None = None) -> "Gallery":
        """The photos a vector store holds (every feature key's, by id): a gallery whose searches run
        in the store. Only ids, labels and file names are loaded; photos are read when shown.
        StoreError when the store cannot be opened or holds no photos."""
        from .store import StoreError, open_store
        st = open_store(store) if isinstance(store, str) else store
        records: dict[str, Any] = {}
        for key in st.keys():
            for batch in st.photos(key):
                for r in batch:
                    records.setdefault(r.id, r)
        if not records:
            raise StoreError(f"the store {st.uri} holds no photos yet: python -m sbir_core.store.build FOLDER "
                             f"--store {st.uri} --backends NAME,... indexes a folder into it")
        ordered = [records[i] for i in sorted(records)]
        label = lambda r: r.label or None  # noqa: E731
        g = cls(name or _store_name(st.uri), [r.id for r in ordered], [r.file or r.id for r in ordered],
                [label(r) for r in ordered], [Path(r.file).stem if r.file else r.id for r in ordered],
                [{} for _ in ordered], store=st)
        g._fingerprint = hashlib.sha1("\n".join(f"{r.id}\t{r.stamp}" for r in ordered).encode()
                                      + st.uri.encode()).hexdigest()[:20]
        g._n_listed = len(ordered)
        return g

    @classmethod
    def from_images(cls, named: Sequence[tuple[str, bytes]], name: str = "my photos",
                    labels: Sequence[str | None] | None = None) -> tuple["Gallery", list[str]]:
        """Photos given as (file name, bytes): a user's upload. Files that are not images (or too
        large) are skipped and reported in the returned messages, so one bad file loses nothing
        else. Only headers are checked here; a photo that fails to decode later is left out when
        indexing and named in `skipped`."""
        ids, sources, keep_labels, problems = [], [], [], []
        for n, (fname, data) in enumerate(named):
            try:
                probe_image(data)
            except ImageInputError as e:
                problems.append(f"{safe_name(fname)}: {e}")
                continue
            stem = Path(fname.replace("\\", "/")).stem         # zip members may use Windows separators
            ids.append(f"{n:05d}-{safe_name(stem)}")
            sources.append(bytes(data))
            keep_labels.append(labels[n] if labels else None)
        return cls(name, ids, sources, keep_labels, [i.split("-", 1)[1] for i in ids],
                   [{} for _ in ids]), problems

    def with_photos(self, named: Sequence[tuple[str, bytes]], labels: Sequence[str | None]) -> tuple["Gallery", list[str]]:
        """This gallery and a few more photos, in memory (a visitor's photos of a kind they taught):
        a backend's features are this gallery's and the new photos' (only those are indexed). Photos
        that do not decode are left out and named in the returned messages. Not for store galleries."""
        if self.store is not None:
            raise ValueError("photos cannot be added to a store gallery in memory: index them into the store")
        good, keep, problems = [], [], []
        for (fname, data), label in zip(named, labels):
            try:
                load_image(data)
                good.append((fname, data))
                keep.append(label)
            except ImageInputError as e:
                problems.append(f"{safe_name(fname)}: {e}")
        extra, more = Gallery.from_images(good, name=self.name, labels=keep)
        g = Gallery(self.name, self.ids + extra.ids, list(self.sources) + extra.sources, list(self.labels) + extra.labels,
                    (self.captions or [""] * len(self)) + extra.captions, (self.info or [{}] * len(self)) + extra.info)
        g._parts = (self, extra)
        return g, problems + more

    # -- use ---------------------------------------------------------------------------------
    def display_label(self, i: int) -> str:
        """What a person reads for photo i: its class in words, else the gallery's display name for a
        photo no class fits ("seahorse"), else its caption or file name; never "unlabelled"."""
        if self.labels[i]:
            return display(self.labels[i])
        info = self.info[i] if self.info else {}
        caption = self.captions[i] if self.captions else ""
        return info.get("display") or caption.strip().rstrip(".") or Path(str(self.ids[i])).name

    def image(self, i: int) -> Image.Image:
        return load_image(self.sources[i])

    @property
    def fingerprint(self) -> str:
        """Identifies these photos (as listed when the gallery was made): a changed, added or
        removed photo changes it. Also a safe memo key for results (two uploads of the same size
        differ here)."""
        if self._fingerprint is None:
            self._fingerprint = photos_fingerprint(self.sources, by_content=self.saved)
            self._n_listed = len(self.sources)
        return self._fingerprint

    @property
    def content_key(self) -> str:
        """The photos as searched now: the fingerprint and how many are left after skipping."""
        return f"{self.fingerprint}-{len(self)}"

    def skipped_summary(self) -> str | None:
        """One line naming every photo left out as unreadable, or None."""
        if not self.skipped:
            return None
        return f"Skipped {len(self.skipped)} unreadable photo(s) of {self.name}: " + "; ".join(self.skipped)

    def rank(self, backend: "Backend", queries: np.ndarray, k: int,
             threshold: float | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Positions and scores of the top k photos for the first of `queries` (the backend's
        `encode_sketches` output), best first; with `threshold`, every photo scoring at least that
        (at most k). In memory: the backend's own `score` over every photo's features. In a store:
        the store searches (at most STORE_MAX_K results), by the backend's `store_query`."""
        if self.store is None or not backend.ranks_in_store:
            s = backend.score(queries[:1], self.features(backend), self.labels)[0]      # (N,)
            if threshold is None:
                idx = top_k(s, k)
            else:
                idx = np.nonzero(s >= threshold)[0]
                idx = idx[np.argsort(-s[idx], kind="stable")][:k]
            return idx, backend.plain_scores(s[idx])
        key, q = backend.feature_key, backend.store_query(queries)
        k = min(k, STORE_MAX_K)
        from .store import StoreError
        try:
            ids, s = self.store.search(key, q, k) if threshold is None else self.store.within(key, q, threshold, k)
        except StoreError:
            self.check_store(backend)            # says how to index a backend the store lacks
            raise
        if threshold is None:
            ids, s = backend.store_first_row(self.store, key, queries, list(ids), np.asarray(s), k)
            s = backend.plain_scores(s)
        if self._position is None:
            self._position = {pid: i for i, pid in enumerate(self.ids)}
        hits = [(self._position[pid], sc) for pid, sc in zip(ids, s) if pid in self._position]  # added since: left out
        return np.asarray([h[0] for h in hits], np.int64), np.asarray([h[1] for h in hits], np.float32)

    def check_store(self, backend: "Backend") -> None:
        """For a store gallery: StoreError (saying how to index) when the store holds no vectors of
        this backend; searching needs nothing else in memory."""
        from .store import StoreError
        if self.store is not None and backend.ranks_in_store and self.store.count(backend.feature_key) == 0:
            raise StoreError(f"the store {self.store.uri} holds no features of {backend.name} (its model "
                             f"{backend.feature_key}); index them with: python -m sbir_core.store.build FOLDER "
                             f"--store {self.store.uri} --backends {backend.name}")

    def features(self, backend: "Backend", progress: "Progress | None" = None) -> np.ndarray:
        """This backend's features for every photo: from memory, from the cache folder, or computed
        now (then cached). Keyed by the backend's photo model, so a retrained model re-indexes.

        Indexing runs in a worker thread, one per gallery at a time: every caller (the one that
        started it too) waits for it and sees its progress, so twenty first searches index once,
        and a caller that gives up (a page rerun raising out of `progress`) does not stop it.
        Unreadable photos are dropped from the gallery (see `skipped`); the rest are indexed."""
        key = backend.feature_key
        if self.store is not None:
            return self._store_features(backend)
        if self._parts is not None:
            if key not in self._features:
                self._features[key] = np.concatenate([part.features(backend, progress) for part in self._parts])
            return self._features[key]
        while True:
            feats = self._features.get(key)
            if feats is not None:
                return feats
            job, owner = claim(self._lock_key())
            if owner:
                job.run(lambda: self._index(backend, job), lambda: release(self._lock_key(), job))
            while not job.finished.wait(0.1):
                if progress is not None and job.total:
                    progress(job.done, job.total)
            if job.error is not None and job.owner is self and job.key == key:
                raise job.error
            # done: this gallery now has the features in memory, or the job was another one; look again

    def _store_features(self, backend: "Backend") -> np.ndarray:
        """Every photo's features read back from the store (evaluation, or a backend that cannot rank
        in the store); kept in memory once read. StoreError when photos lack this backend's."""
        key = backend.feature_key
        if key not in self._features:
            from .store import StoreError
            if self.store.count(key) == 0 and not backend.ranks_in_store:     # random: nothing to read
                return backend.index_photos([None] * len(self))
            try:
                vectors = self.store.get(key, self.ids)
            except StoreError as e:
                raise StoreError(f"{e}: index this backend with python -m sbir_core.store.build FOLDER --store "
                                 f"{self.store.uri} --backends {backend.name}") from None
            self._features[key] = backend.features_from_store(vectors)
        return self._features[key]

    def _index(self, backend: "Backend", job: "IndexJob") -> None:
        """The worker: features from the cache or computed, kept in memory (runs under the lock)."""
        job.owner, job.key = self, backend.feature_key
        if backend.feature_key not in self._features:
            self._features[backend.feature_key] = self._load_or_build(backend, job.report)

    def _lock_key(self) -> str:
        """Galleries with the same cache folder share one lock (two instances of one folder)."""
        return str(self.cache_dir) if self.cache_dir is not None else f"memory-{id(self)}"

    def _load_or_build(self, backend: "Backend", progress: "Progress | None") -> np.ndarray:
        """(photos in the gallery, ...) features: the cached ones when they fit these photos, else
        computed. On disk the rows follow the photos as listed, NaN for the unreadable ones."""
        fp = self.fingerprint                         # of the photos as listed (before any skip)
        key = backend.feature_key
        full = None
        if self.cache_dir is not None:
            full, skipped = read_cached(self.cache_dir, key, fp, self._n_listed, self.saved)
            self.skipped += [m for m in skipped if m not in self.skipped]
        if full is None:
            problems: list[tuple[int, str]] = []
            feats = backend.index_photos(self.sources, progress, problems)
            self.skipped += [f"{self._name_of(i)} ({why})" for i, why in problems]
            if problems:
                log.warning("%s", self.skipped_summary())
            full = np.full((self._n_listed,) + feats.shape[1:], np.nan, dtype=feats.dtype)
            full[self._listed()] = feats
            if self.cache_dir is not None:
                write_cached(self.cache_dir, key, fp, full, self.skipped)
        unreadable = np.isnan(full.reshape(len(full), -1)).all(axis=1)             # (listed,)
        self._drop_unreadable(unreadable)
        if len(self) == 0:
            raise ImageInputError(f"none of the {self._n_listed} photos of {self.name} could be read")
        return np.ascontiguousarray(full[self._listed()])

    def _listed(self) -> list[int]:
        """For each photo still in the gallery, its position in the original listing."""
        return list(self._kept) if self._kept is not None else list(range(len(self)))

    def _name_of(self, i: int) -> str:
        """How photo i is named in messages: its folder and file name, or its id."""
        src = self.sources[i]
        if isinstance(src, (str, Path)):
            p = Path(src)
            return safe_name(f"{p.parent.name}/{p.name}" if p.parent.name else p.name, 120)
        return self.ids[i]

    def _drop_unreadable(self, unreadable: np.ndarray) -> None:
        """Leave out the photos whose listed position is marked unreadable (from every backend's
        features in memory too), naming each in `skipped`."""
        listed = self._listed()
        keep = [i for i, p in enumerate(listed) if not unreadable[p]]
        if len(keep) == len(listed):
            return
        for i, p in enumerate(listed):
            name = self._name_of(i)
            if unreadable[p] and not any(s.startswith(name + " (") for s in self.skipped):
                self.skipped.append(f"{name} (could not be read)")
        pick = lambda xs: [xs[i] for i in keep] if xs else xs  # noqa: E731
        self.ids, self.sources, self.labels = pick(self.ids), pick(self.sources), pick(self.labels)
        self.captions, self.info = pick(self.captions), pick(self.info)
        self._kept = [listed[i] for i in keep]
        self._features = {k: v[keep] for k, v in self._features.items()}

    def save(self, folder: str | Path) -> None:
        """Write metadata.csv next to images already in `folder` (sources must be paths inside it)."""
        folder = Path(folder)
        with open(folder / "metadata.csv", "w", newline="", encoding="utf-8") as f:
            w = csv.DictWriter(f, fieldnames=METADATA_COLUMNS)
            w.writeheader()
            for i in range(len(self)):
                w.writerow({"id": self.ids[i], "file": Path(self.sources[i]).relative_to(folder).as_posix(),
                            "label": self.labels[i] or "", "caption": self.captions[i] if self.captions else "",
                            **{k: (self.info[i].get(k, "") if self.info else "") for k in ("source", "licence")}})


# -- helpers ---------------------------------------------------------------------------------
def _store_name(uri: str) -> str:
    """A store gallery's name for people: the Lite file's name, or the server's address."""
    base = uri.split("?", 1)[0].rstrip("/")
    return Path(base).name if base.endswith(".db") else base.split("://", 1)[-1]

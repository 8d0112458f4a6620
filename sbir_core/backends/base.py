"""The one protocol every backend follows, and the registry that `load_backend` reads."""
from __future__ import annotations

import math
import numbers
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Callable, Literal, Mapping, Protocol, Sequence, runtime_checkable

import numpy as np
from PIL import Image

from ..data.preprocess import ImageInputError, Preprocess, photo_input, sketch_input
from ..teach import TeachError

Progress = Callable[[int, int], None]   # (done, total)
CardScore = Literal["probability", "mixed", "similarity", "rank"]


@dataclass
class SearchResult:
    """Ranked photos for one sketch. `indices` are positions in the gallery."""
    ids: list[str]
    scores: np.ndarray
    labels: list[str | None]
    indices: np.ndarray
    extras: dict[str, Any] = field(default_factory=dict)   # timings_ms, top_classes, imaginary, ...


@runtime_checkable
class GalleryLike(Protocol):
    """What a backend needs of the photos it searches (`sbir_core.gallery.Gallery` is the one
    implementation): declared here so backends never import the gallery module, which imports them."""
    name: str
    ids: list[str]
    labels: list[str | None]

    def __len__(self) -> int: ...

    def features(self, backend: "Backend", progress: Progress | None = None) -> np.ndarray: ...

    def rank(self, backend: "Backend", queries: np.ndarray, k: int,
             threshold: float | None = None) -> tuple[np.ndarray, np.ndarray]: ...


class Backend(ABC):
    """Sketch in, ranked gallery photos out. Subclasses say how to encode sketches and photos
    and how to score one against the other; `search` and `score_matrix` are shared."""

    name: str = ""
    meta: Mapping[str, Any] = MappingProxyType({})  # the model's metadata (models/<name>.json)
    preprocess: Preprocess = Preprocess()          # sketches
    photo_preprocess: Preprocess | None = None     # photos, when they differ from sketches
    photo_batch = 32
    card_score: CardScore = "similarity"           # what the score under a result card means (the app's note)
    default_threshold: float | None = None         # where the "By similarity" slider starts; None: no such search

    @property
    @abstractmethod
    def feature_key(self) -> str:
        """Names the gallery features this backend needs; changes whenever the photo model does."""

    @abstractmethod
    def encode_photos(self, x: np.ndarray) -> np.ndarray:
        """(B, 3, S, S) photo inputs -> (B, ...) gallery features."""

    @abstractmethod
    def encode_sketches(self, x: np.ndarray) -> tuple[np.ndarray, dict[str, Any]]:
        """(B, 3, S, S) sketch inputs -> (B, ...) query representation, and extras for the first."""

    @abstractmethod
    def score(self, queries: np.ndarray, features: np.ndarray, labels: Sequence[str | None]) -> np.ndarray:
        """(Q, ...) queries vs (N, ...) gallery features -> (Q, N) scores, higher is better."""

    def photo_kinds(self, features: np.ndarray) -> np.ndarray | None:
        """(N, C) P(kind) of each gallery photo, over `meta["classes"]`, for backends whose photo side
        reads kinds (the photo labeller); None for the others, which cannot file an unlabelled photo."""
        return None

    # -- kinds a visitor teaches (sbir_core.teach); backends that read kinds override these ----
    @property
    def can_teach(self) -> bool:
        """Whether `teach` works here (a backend reading kinds, with its imprint calibration)."""
        return False

    def teach(self, kind: str, sketches: Sequence[Any]) -> "Backend":
        """A copy of this backend that also reads `kind`, from a few example drawings (PIL images,
        arrays, bytes or paths); this backend, shared by other sessions, stays as it was."""
        raise TeachError(f"{self.name} does not read kinds, so it cannot be taught one: use classifier.")

    def forget(self, kind: str) -> "Backend":
        """A copy of this backend that no longer reads `kind`."""
        raise TeachError(f"{self.name} does not read kinds, so it cannot forget one: use classifier.")

    def taught(self) -> list[str]:
        """The kinds taught to this copy, in teaching order."""
        return []

    # -- shared -------------------------------------------------------------------------------
    def photo_inputs(self, images: Sequence[Any]) -> np.ndarray:
        pp = self.photo_preprocess or self.preprocess
        return np.stack([photo_input(im, pp) for im in images])                          # (B, 3, S, S)

    def index_photos(self, images: Sequence[Any], progress: Progress | None = None,
                     problems: list[tuple[int, str]] | None = None) -> np.ndarray:
        """Gallery features for many photos, in batches, reporting progress.

        An unreadable photo raises ImageInputError naming its position, unless `problems` is given:
        then it gets a row of NaN and `(position, reason)` goes to `problems`, so one bad file in a
        folder costs that file only."""
        out = []
        for i in range(0, len(images), self.photo_batch):
            chunk = images[i:i + self.photo_batch]
            try:
                out.append(self.encode_photos(self.photo_inputs(chunk)))
            except ImageInputError:
                out.append(self._index_one_by_one(chunk, i, problems))
            if progress:
                progress(min(i + self.photo_batch, len(images)), len(images))
        return np.concatenate(out) if out else np.zeros((0, 1), np.float32)

    def _index_one_by_one(self, chunk: Sequence[Any], start: int, problems: list[tuple[int, str]] | None) -> np.ndarray:
        """A batch with an unreadable photo: decode each alone, NaN rows for the bad ones."""
        good, inputs = [], []
        for j, im in enumerate(chunk):
            try:
                inputs.append(self.photo_inputs([im])[0])
                good.append(j)
            except ImageInputError as e:
                if problems is None:
                    raise ImageInputError(f"photo {start + j}: {e}") from None
                problems.append((start + j, str(e)))
        if not good:                                     # only to learn the features' shape and dtype
            inputs = list(self.photo_inputs([Image.new("RGB", (8, 8), "white")]))
        feats = self.encode_photos(np.stack(inputs))
        rows = np.full((len(chunk),) + feats.shape[1:], np.nan, dtype=feats.dtype)
        if good:
            rows[good] = feats
        return rows

    def search(self, sketch: Any, gallery: "GalleryLike", k: int = 20) -> SearchResult:
        """Rank the gallery for one sketch (PIL image, array, bytes or path). Raises ImageInputError
        (BlankSketchError for an empty drawing) with a message for the user; TypeError/ValueError
        name a wrong `k` or `gallery`."""
        return self._search(sketch, gallery, check_k(k))

    def _search(self, sketch: Any, gallery: "GalleryLike", k: int, threshold: float | None = None) -> SearchResult:
        """The top k, or every photo scoring >= `threshold` (at most k): the gallery ranks, in
        memory or in its vector store (`Gallery.rank`)."""
        check_gallery(gallery)
        t0 = time.perf_counter()
        x = sketch_input(sketch, self.preprocess)[None]                                  # (1, 3, S, S)
        t1 = time.perf_counter()
        q, extras = self.encode_sketches(x)
        t2 = time.perf_counter()
        idx, s = gallery.rank(self, q, k, threshold)                                     # (k,), (k,)
        t3 = time.perf_counter()
        extras["timings_ms"] = {"preprocess": 1e3 * (t1 - t0), "encode": 1e3 * (t2 - t1),
                                "search": 1e3 * (t3 - t2), "total": 1e3 * (t3 - t0)}
        return SearchResult([gallery.ids[i] for i in idx], s, [gallery.labels[i] for i in idx], idx, extras)

    def search_within(self, sketch: Any, gallery: "GalleryLike", threshold: float) -> SearchResult:
        """Retrieval by distance: every photo scoring at least `threshold`, best first (backends with
        a `default_threshold`; the others raise TypeError)."""
        threshold = self.check_threshold(threshold)
        check_gallery(gallery)
        return self._search(sketch, gallery, len(gallery), threshold)

    def check_threshold(self, threshold: Any) -> float:
        """`threshold` as a float, or the error a caller can show."""
        if self.default_threshold is None:
            raise TypeError(f"{self.name} does not retrieve by similarity: its scores are no distances")
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float, np.floating, np.integer)) \
                or not np.isfinite(threshold):
            raise ValueError(f"threshold must be a cosine similarity (a number, at most 1 to find anything), "
                             f"got {threshold!r:.40}")
        return float(threshold)

    def card_confidence(self, features: np.ndarray, labels: Sequence[str | None], indices: np.ndarray) -> np.ndarray:
        """(k,) the within-kind factor of the result cards' scores at gallery positions `indices`
        (a classifier's doubt about an unlabelled photo's kind); 1 for backends whose scores stand alone."""
        return np.ones(len(indices))

    def store_first_row(self, store: Any, key: str, queries: np.ndarray, ids: list[str], scores: np.ndarray,
                        k: int) -> tuple[list[str], np.ndarray]:
        """A store's plain top k, reordered as `score` orders it in memory (the classifier's hedge);
        as it came for the others."""
        return ids, scores

    def plain_scores(self, scores: np.ndarray) -> np.ndarray:
        """Scores as a card shows them: what `score` returned, less any lift a backend adds to order
        its first row (the classifier's hedge)."""
        return scores

    # -- vector stores (sbir_core.store) ------------------------------------------------------
    ranks_in_store = True      # False: ranking needs every photo's features at once (random)

    def store_vectors(self, features: np.ndarray, labels: Sequence[str | None]) -> np.ndarray:
        """(N, D) what a vector store keeps per photo, chosen so that its inner product with
        `store_query` ranks as `score` does: the features themselves for cosine backends."""
        return np.asarray(features, dtype=np.float32)

    def store_query(self, queries: np.ndarray) -> np.ndarray:
        """(D,) the vector a store searches with, for the first query of `encode_sketches`."""
        return np.asarray(queries[0], dtype=np.float32).reshape(-1)

    def features_from_store(self, vectors: np.ndarray) -> np.ndarray:
        """Gallery features back from stored vectors (the inverse of `store_vectors`)."""
        return vectors

    def score_matrix(self, sketches: Sequence[Any], gallery: "GalleryLike", batch: int = 32,
                     progress: Progress | None = None) -> np.ndarray:
        """(Q, N) scores of many sketches against the whole gallery: what evaluation ranks."""
        check_gallery(gallery)
        feats = gallery.features(self)
        rows = []
        for i in range(0, len(sketches), batch):
            x = np.stack([sketch_input(s, self.preprocess) for s in sketches[i:i + batch]])
            q, _ = self.encode_sketches(x)
            rows.append(self.score(q, feats, gallery.labels))
            if progress:
                progress(min(i + batch, len(sketches)), len(sketches))
        return np.concatenate(rows)         # float64 where a backend's tie-breaks need it (classifier)


def check_k(k: Any) -> int:
    """`k` as a positive int: whole numbers of any numeric type pass (5, 5.0, np.int64(5)); None,
    text, booleans, fractions and k < 1 are refused with a message naming `k`."""
    if isinstance(k, (bool, np.bool_)) or not isinstance(k, numbers.Real):
        raise TypeError(f"k must be a whole number of results, got {type(k).__name__} {k!r:.40}")
    if not math.isfinite(float(k)) or float(k) != int(k) or int(k) < 1:
        raise ValueError(f"k must be a whole number of results, at least 1, got {k!r:.40}")
    return int(k)


def check_gallery(gallery: Any) -> None:
    if not isinstance(gallery, GalleryLike):
        raise TypeError(f"gallery must be a sbir_core.Gallery (Gallery.from_folder, Gallery.bundled, ...), "
                        f"got {type(gallery).__name__}")
    if len(gallery) == 0:
        raise ValueError(f"the gallery {gallery.name!r} has no photos")


_REGISTRY: dict[str, Callable[..., Backend]] = {}


def register_backend(name: str) -> Callable:
    """Class decorator: make a backend loadable by name (like timm's @register_model)."""
    def wrap(cls):
        cls.name = name
        _REGISTRY[name] = cls
        return cls
    return wrap


def registered() -> dict[str, Callable[..., Backend]]:
    return dict(_REGISTRY)

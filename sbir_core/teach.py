"""Teach a kind-reading backend a new kind from a few drawings, or make it forget one, without training.

Weight imprinting (Qi et al., CVPR 2018): the examples' mean feature becomes the new kind's row of the
classifier. The classifier's sketch head serves its pooled features and logits next to P(kind)
(`nets.heads.KindReading`), so a taught kind's logit is

    scale x cosine(whiten(pooled - centre), prototype) + bias

with `prototype` the unit mean of the examples' whitened, unit features, and `centre`, `whiten`,
`scale` and `bias` fitted once on canvas-drawn training drawings so a taught logit sits on the
trained ones' scale (`python -m sbir_core.train.imprint`: `imprint` in models/classifier.json, the
whitening matrix in models/classifier_imprint_whiten.npy). A forgotten kind's
logit is dropped. P(kind) is the softmax over what is left: the trained kinds, then the taught ones.
"""
from __future__ import annotations

import html
import io
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

MAX_TAUGHT = 50           # kinds one backend can be taught (a session's list stays readable)
MIN_EXAMPLES, MAX_EXAMPLES = 1, 10
NAME_LENGTH = 40


class TeachError(ValueError):
    """A kind cannot be taught or forgotten; the message says why, for the visitor."""


@dataclass(frozen=True)
class Imprint:
    """How a taught kind's logit is made from pooled features (see the module docstring). `whiten`
    ((K, F) or None) maps centred features onto their K main directions, each scaled to about unit
    spread, so the cosine weighs every direction alike instead of the few that vary most."""
    centre: np.ndarray
    scale: float
    bias: float
    whiten: np.ndarray | None = None

    @classmethod
    def from_meta(cls, meta: dict[str, Any], folder: Path | None = None) -> "Imprint":
        """From `imprint` in the model's metadata; its whitening matrix is a file beside the model."""
        whiten = np.load(folder / meta["whiten_file"]).astype(np.float32) if meta.get("whiten_file") and folder else None
        return cls(np.asarray(meta["centre"], np.float32), float(meta["scale"]), float(meta["bias"]), whiten)

    def embed(self, pooled: np.ndarray) -> np.ndarray:
        """(B, F) pooled features -> (B, K) unit vectors in the space prototypes live in."""
        x = np.asarray(pooled, np.float32) - self.centre
        return unit(x if self.whiten is None else x @ self.whiten.T)

    def prototype(self, pooled: np.ndarray) -> np.ndarray:
        """(K, F) the examples' pooled features -> their unit mean direction."""
        return unit(self.embed(pooled).mean(axis=0))

    def logits(self, pooled: np.ndarray, prototypes: np.ndarray) -> np.ndarray:
        """(B, F) pooled features, (T, K) prototypes -> (B, T) taught kinds' logits."""
        return self.scale * self.embed(pooled) @ prototypes.T + self.bias


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-8)


def kind_name(name: Any) -> str:
    """A visitor's name for a kind, cleaned: words of letters, digits, spaces, - and ' (markup and
    control characters go), at most NAME_LENGTH characters, stored like the vocabulary (`hot_dog`)."""
    if not isinstance(name, str):
        raise TeachError("Give the kind a name.")
    text = re.sub(r"<[^>]*>", " ", html.unescape(name))               # markup reads as the words in it
    text = re.sub(r"[^\w\s'\-]", " ", text, flags=re.UNICODE)
    text = "_".join(text.lower().split())
    if not text:
        raise TeachError("Give the kind a name: letters or digits.")
    if len(text) > NAME_LENGTH:
        raise TeachError(f"Keep the name under {NAME_LENGTH} characters.")
    return text


@dataclass(frozen=True)
class KindEdits:
    """What a backend was taught or told to forget: (kind, prototype) pairs, in teaching order, and
    forgotten kinds. Immutable, so a taught copy of a backend never changes the one others share."""
    taught: tuple[tuple[str, np.ndarray], ...] = ()
    forgotten: frozenset[str] = field(default_factory=frozenset)

    def __bool__(self) -> bool:
        return bool(self.taught or self.forgotten)

    def kinds(self) -> list[str]:
        return [k for k, _ in self.taught]

    def teach(self, kind: str, prototype: np.ndarray) -> "KindEdits":
        """Teaching a taught kind again replaces its examples; a forgotten trained kind stays forgotten
        as trained (only the examples read it: the benchmark's remove-and-re-add)."""
        kept = tuple((k, p) for k, p in self.taught if k != kind)
        if len(kept) >= MAX_TAUGHT:
            raise TeachError(f"It already knows {MAX_TAUGHT} taught kinds: forget one first.")
        return KindEdits(kept + ((kind, prototype),), self.forgotten)

    def forget(self, kind: str) -> "KindEdits":
        return KindEdits(tuple((k, p) for k, p in self.taught if k != kind), self.forgotten | {kind})

    def classes(self, trained: Sequence[str]) -> list[str]:
        """Every kind the reading scores: the trained ones (forgotten ones keep their column, at
        probability 0), then the taught kinds the model was not trained on."""
        known = set(trained)
        return list(trained) + [k for k in self.kinds() if k not in known]

    def plan(self, trained: Sequence[str]) -> "ReadingPlan":
        """Where each edit goes among the trained kinds' columns: worked out once per backend copy,
        not per query."""
        position = {c: i for i, c in enumerate(trained)}
        kinds = self.kinds()
        return ReadingPlan(np.asarray([position[k] for k in self.forgotten if k in position], np.int64),
                           np.asarray([position[k] for k in kinds if k in position], np.int64),
                           np.asarray([j for j, k in enumerate(kinds) if k in position], np.int64),
                           np.asarray([j for j, k in enumerate(kinds) if k not in position], np.int64),
                           np.stack([p for _, p in self.taught]) if self.taught else np.zeros((0, 1), np.float32))

    def read(self, probs: np.ndarray, logits: np.ndarray, pooled: np.ndarray, plan: "ReadingPlan",
             imprint: Imprint) -> np.ndarray:
        """(B, C) the trained reading -> (B, len(classes(trained))) P(kind), `plan` from `plan(trained)`.
        A taught kind the model was trained on reads by either way (log-sum-exp of the trained and the
        taught logit) unless forgotten."""
        if not self:
            return probs
        z = np.asarray(logits, np.float64).copy()
        z[:, plan.off] = -np.inf
        if self.taught:
            t = imprint.logits(pooled, plan.prototypes).astype(np.float64)
            z[:, plan.merge] = np.logaddexp(z[:, plan.merge], t[:, plan.merge_from])
            z = np.concatenate([z, t[:, plan.new]], axis=1)
        z = z - z.max(axis=1, keepdims=True)
        e = np.exp(z)
        return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)


@dataclass(frozen=True)
class ReadingPlan:
    """`KindEdits.plan`: trained columns to drop, to merge with a taught kind (and which), the taught
    kinds that add a column, and the prototypes (T, K) in teaching order."""
    off: np.ndarray
    merge: np.ndarray
    merge_from: np.ndarray
    new: np.ndarray
    prototypes: np.ndarray


# -- taught kinds kept on a machine (the app's presenter mode) --------------------------------
PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")


def taught_dir() -> Path:
    """Where presenter mode keeps taught kinds and the app loads them from at start:
    $SBIR_TAUGHT_DIR, else ~/.sketchsearch/taught (outside the repository)."""
    return Path(os.environ.get("SBIR_TAUGHT_DIR") or Path.home() / ".sketchsearch" / "taught")


def save_taught(folder: Path, kinds: dict[str, list[Any]], photos: dict[str, list[tuple[str, bytes]]]) -> int:
    """Write each kind as `<folder>/<kind>/example_<n>.png` (+ `photo_<n><suffix>`), replacing what
    the folder held; returns the number of kinds written."""
    import shutil
    from .data.preprocess import load_image
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.iterdir():
        if old.is_dir() and old.name not in kinds:
            shutil.rmtree(old)
    for kind, examples in kinds.items():
        d = folder / kind_name(kind)
        if d.exists():
            shutil.rmtree(d)
        d.mkdir()
        for n, ex in enumerate(examples):
            buf = io.BytesIO()
            load_image(ex).convert("L").save(buf, "PNG")
            (d / f"example_{n}.png").write_bytes(buf.getvalue())
        for n, (name, data) in enumerate(photos.get(kind) or []):
            suffix = Path(name).suffix.lower()
            (d / f"photo_{n}{suffix if suffix in PHOTO_SUFFIXES else '.jpg'}").write_bytes(data)
    return len(kinds)


def load_taught(folder: Path) -> tuple[dict[str, list[bytes]], dict[str, list[tuple[str, bytes]]]]:
    """What `save_taught` wrote: ({kind: example PNGs}, {kind: [(file name, bytes)]}); a missing
    folder is nothing taught, and a sub-folder without examples or with a name that is no kind is skipped."""
    kinds: dict[str, list[bytes]] = {}
    photos: dict[str, list[tuple[str, bytes]]] = {}
    if not folder.is_dir():
        return kinds, photos
    for d in sorted(p for p in folder.iterdir() if p.is_dir()):
        try:
            kind = kind_name(d.name)
        except TeachError:
            continue
        examples = [p.read_bytes() for p in sorted(d.glob("example_*.png"))][:MAX_EXAMPLES]
        if not examples or len(kinds) >= MAX_TAUGHT:
            continue
        kinds[kind] = examples
        photos[kind] = [(p.name, p.read_bytes()) for p in sorted(d.glob("photo_*")) if p.suffix.lower() in PHOTO_SUFFIXES]
    return kinds, photos

"""A gallery: photos, their labels, and per-backend features, saved and loaded as plain files.

Three kinds, one class: the bundled gallery (`galleries/bundled`: images + metadata.csv +
precomputed embeddings/), any folder of photos (features cached under `.cache/`), and photos held
in memory (a user's upload; features live for the session).
"""
from __future__ import annotations

import csv
import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
from PIL import Image

from .config import GALLERIES_DIR, REPO_ROOT
from .data.preprocess import ImageInputError, load_image
from .data.readers import image_folder

if TYPE_CHECKING:
    from .backends.base import Backend, Progress

BUNDLED_DIR = GALLERIES_DIR / "bundled"
METADATA_COLUMNS = ("id", "file", "label", "caption", "source", "licence")


@dataclass
class Gallery:
    """Photos to search. `sources[i]` is a path or the image bytes; `labels[i]` a class or None."""
    name: str
    ids: list[str]
    sources: list[Any]
    labels: list[str | None]
    captions: list[str] = field(default_factory=list)
    info: list[dict[str, str]] = field(default_factory=list)   # per photo: source, licence, ...
    cache_dir: Path | None = None
    _features: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    def __len__(self) -> int:
        return len(self.ids)

    # -- constructors ------------------------------------------------------------------------
    @classmethod
    def from_folder(cls, path: str | Path, name: str | None = None) -> "Gallery":
        """`<class>/<image>` subfolders (labelled) or a flat folder (unlabelled)."""
        items = image_folder(path)
        if not items:
            raise ImageInputError(f"no images found in {path}")
        key = hashlib.sha1(str(Path(path).resolve()).encode() + str(len(items)).encode()).hexdigest()[:12]
        ids = [f"{it.raw_label}/{it.path.stem}" if it.raw_label else it.path.stem for it in items]
        return cls(name or Path(path).name, ids, [it.path for it in items], [it.label for it in items],
                   [it.path.stem for it in items], [{} for _ in items],
                   cache_dir=REPO_ROOT / ".cache" / "embeddings" / key)

    @classmethod
    def load(cls, folder: str | Path) -> "Gallery":
        """A saved gallery: `metadata.csv` (id, file, label, caption, source, licence) + images + embeddings/."""
        folder = Path(folder)
        with open(folder / "metadata.csv", newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
        return cls(folder.name, [r["id"] for r in rows], [folder / r["file"] for r in rows],
                   [r["label"] or None for r in rows], [r.get("caption", "") for r in rows],
                   [{k: r.get(k, "") for k in ("source", "licence")} for r in rows],
                   cache_dir=folder / "embeddings")

    @classmethod
    def bundled(cls) -> "Gallery":
        """The gallery that ships in the repo (real, redistributable photos; see NOTICE)."""
        return cls.load(BUNDLED_DIR)

    @classmethod
    def from_images(cls, named: Sequence[tuple[str, bytes]], name: str = "my photos",
                    labels: Sequence[str | None] | None = None) -> tuple["Gallery", list[str]]:
        """Photos given as (file name, bytes): a user's upload. Unreadable ones are skipped and
        reported in the returned list of messages, so one bad file loses nothing else."""
        ids, sources, keep_labels, problems = [], [], [], []
        for n, (fname, data) in enumerate(named):
            try:
                load_image(data)
            except ImageInputError as e:
                problems.append(f"{fname}: {e}")
                continue
            ids.append(f"{n:05d}-{Path(fname).stem}")
            sources.append(bytes(data))
            keep_labels.append(labels[n] if labels else None)
        return cls(name, ids, sources, keep_labels, [i.split("-", 1)[1] for i in ids],
                   [{} for _ in ids]), problems

    # -- use ---------------------------------------------------------------------------------
    def image(self, i: int) -> Image.Image:
        return load_image(self.sources[i])

    def features(self, backend: "Backend", progress: "Progress | None" = None) -> np.ndarray:
        """This backend's features for every photo: from memory, from the cache folder, or computed
        now (then cached). Keyed by the backend's photo model, so a retrained model re-indexes."""
        key = backend.feature_key
        if key in self._features:
            return self._features[key]
        path = self.cache_dir / f"{key}.npy" if self.cache_dir else None
        feats = None
        if path is not None and path.is_file():
            feats = np.load(path)
            if len(feats) != len(self):
                feats = None
        if feats is None:
            feats = backend.index_photos(self.sources, progress)
            if path is not None:
                try:
                    path.parent.mkdir(parents=True, exist_ok=True)
                    np.save(path, feats)
                except OSError:
                    pass   # a read-only gallery still works; it just re-indexes next time
        self._features[key] = feats
        return feats

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

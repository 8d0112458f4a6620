"""Readers for the real datasets, in the layout of ../shared/data and in their official layouts.

Readers return light records (paths, labels, pairing); images are opened only when used.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from .classes import canonical, normalise

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}


@dataclass(frozen=True)
class Item:
    """One image on disk. `label` is canonical (or None); `photo_id` pairs a sketch with its photo."""
    path: Path
    label: str | None
    photo_id: str
    raw_label: str = ""


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
                  and not p.name.startswith("."))


def sketch_photo_id(path: Path) -> str:
    """`n02691156_10151-3.png` -> `n02691156_10151`: a sketch names the photo it was drawn from."""
    return re.sub(r"-\d+$", "", path.stem)


def image_folder(root: str | Path, *, sketches: bool = False) -> list[Item]:
    """Any folder of images: `<class>/<image>` subfolders (labelled) or flat (unlabelled).

    Subfolder names are mapped to the vocabulary; a name outside it keeps `raw_label` only.
    With `sketches`, `<photo_id>-<n>.png` names pair each sketch with its photo.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"no such folder: {root}")
    items: list[Item] = []
    for p in _images(root):
        items.append(Item(p, None, sketch_photo_id(p) if sketches else p.stem, ""))
    for sub in sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith(".")):
        for p in _images(sub):
            pid = sketch_photo_id(p) if sketches else p.stem
            items.append(Item(p, canonical(sub.name), pid, normalise(sub.name)))
    return items


def _sketchy_root(root: Path, kind: str) -> Path:
    """`<root>/<kind>` here, or the official `rendered_256x256/256x256/<kind>/tx_000000000000`."""
    for cand in (root / kind, root / "256x256" / kind / "tx_000000000000",
                 root / "rendered_256x256" / "256x256" / kind / "tx_000000000000"):
        if cand.is_dir():
            return cand
    raise FileNotFoundError(f"no Sketchy {kind} folder under {root}")


def sketchy(root: str | Path) -> tuple[list[Item], list[Item]]:
    """Sketchy photos and sketches (either layout); sketches carry their photo's id."""
    root = Path(root)
    return (image_folder(_sketchy_root(root, "photo")),
            image_folder(_sketchy_root(root, "sketch"), sketches=True))


def read_split(path: str | Path) -> dict[str, str]:
    """A `split<TAB>path` table (sketchy_10class/split.tsv) -> {photo_id: split}."""
    out = {}
    for line in Path(path).read_text().splitlines():
        if line.strip():
            split, rel = line.split("\t")[:2]
            out[Path(rel).stem] = split
    return out


def shoes(root: str | Path) -> tuple[list[Item], list[Item]]:
    """The fine-grained shoe set: `photo/<id>.jpg`, `sketch/<id>-<n>.png`, all of class `shoe`."""
    root = Path(root)
    photos = [Item(p, "shoe", p.stem, "shoe") for p in _images(root / "photo")]
    sketches = [Item(p, "shoe", sketch_photo_id(p), "shoe") for p in _images(root / "sketch")]
    return photos, sketches


def quickdraw_bitmaps(path: str | Path, limit: int | None = None) -> np.ndarray:
    """Quick, Draw! bitmaps -> uint8 (N, 28, 28), white ink on black; accepts (N, 784) and (N, 28, 28)."""
    a = np.load(path, mmap_mode="r")
    if limit is not None:
        a = a[:limit]
    if a.ndim == 2 and a.shape[1] == 784:
        a = a.reshape(-1, 28, 28)
    if a.ndim != 3 or a.shape[1:] != (28, 28):
        raise ValueError(f"{path}: expected (N, 784) or (N, 28, 28), got {a.shape}")
    return np.asarray(a, dtype=np.uint8)


def quickdraw_classes(folder: str | Path, suffix: str) -> dict[str, Path]:
    """{canonical class: file} for a Quick, Draw! folder (`_` or spaces in names), skipping unmapped."""
    out = {}
    for p in sorted(Path(folder).glob(f"*{suffix}")):
        c = canonical(p.name[: -len(suffix)])
        if c is not None:
            out[c] = p
    return out


Strokes = list[tuple[np.ndarray, np.ndarray]]   # per stroke: xs, ys


def quickdraw_strokes(path: str | Path, limit: int | None = None) -> Iterator[dict]:
    """Quick, Draw! simplified ndjson -> dicts with `word`, `key_id`, `recognized`, `strokes`."""
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f):
            if limit is not None and n >= limit:
                break
            d = json.loads(line)
            d["strokes"] = [(np.asarray(s[0], float), np.asarray(s[1], float)) for s in d["drawing"]]
            yield d


def tuberlin(root: str | Path) -> list[Item]:
    """TU-Berlin sketches: `<class>/<n>.svg` (this sample) or the official `png/<class>/<n>.png`/`svg/...`."""
    root = Path(root)
    for sub in ("png", "svg"):
        if (root / sub).is_dir():
            root = root / sub
            break
    items = []
    for d in sorted(x for x in root.iterdir() if x.is_dir()):
        for p in sorted(d.iterdir()):
            if p.suffix.lower() in (".svg", ".png"):
                items.append(Item(p, canonical(d.name), p.stem, normalise(d.name)))
    return items

"""What the app can offer, found on disk: the backends that load, the galleries, their thumbnails, the
example sketches. No Streamlit.
"""
from __future__ import annotations

import base64
import csv
import hashlib
import io
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from PIL import Image, ImageOps

from sbir_core.backends import BASELINES, ModelFileError, available_backends
from sbir_core.backends.onnx_model import REBUILD_HINT, read_meta
from sbir_core.config import MODELS_DIR, REPO_ROOT, data_dir
from sbir_core.data.preprocess import ImageInputError, load_image
from sbir_core.data.readers import sketch_photo_id
from sbir_core.data.splits import split_of
from sbir_core.gallery import BUNDLED_DIR, Gallery
from sbir_core.store import is_memory, store_uri

from .drawing import png_bytes

EXAMPLES_DIR = REPO_ROOT / "assets" / "examples"


EXAMPLE_CLASSES = ("apple", "airplane", "car_(sedan)", "cat", "butterfly", "fish", "guitar", "tree")   # each has 2+ bundled photos


GALLERY_BUILD_HINT = "build it with `python -m galleries.build_bundled --index` (see the README), or pick another gallery"


@dataclass
class BackendInfo:
    """What the app shows about a backend before (or instead of) loading it."""
    name: str
    title: str
    description: str = ""
    baseline: bool = False
    meta: dict[str, Any] = field(default_factory=dict)
    error: str | None = None          # damaged metadata: the message, with the rebuild command


# the order pickers and the Compare page list backends in: the demo's three methods, then the other
# trained backends, the ablations and the baselines (a backend not named here comes before the baselines)
BACKEND_ORDER = ("classifier", "triplet", "cgan", "instance", "context", "triplet_noedge", "classifier_small",
                 "pretrained", "random")


def backend_infos() -> list[BackendInfo]:
    """Every backend whose model files are present, in BACKEND_ORDER; never raises. A backend
    whose metadata is invalid, or names a model file that is not there, carries the message."""
    out = []
    for name in available_backends(include_baselines=True):
        if name in BASELINES:
            out.append(BackendInfo(name, f"{name.capitalize()} (baseline)", "Random ranking: the floor for every metric.",
                                   baseline=True))
            continue
        try:
            meta = read_meta(name)
            missing = [f for key in ("sketch_model", "photo_model")
                       for f in ([meta[key]] if isinstance(meta[key], str) else meta[key])
                       if not (MODELS_DIR / f).is_file()]
            if missing:
                raise ModelFileError(f"model file {missing[0]} of {name} is missing from {MODELS_DIR}; {REBUILD_HINT}")
            out.append(BackendInfo(name, meta.get("title", name), meta.get("description", ""),
                                   baseline=name == "pretrained", meta=meta))
        except ModelFileError as e:
            out.append(BackendInfo(name, name, error=str(e)))
    rank = {n: i for i, n in enumerate(BACKEND_ORDER)}
    return sorted(out, key=lambda i: rank.get(i.name, BACKEND_ORDER.index("pretrained") - 0.5))


@dataclass
class GallerySource:
    """A gallery the app can offer; `load` builds it (slow the first time: cache the result)."""
    key: str
    title: str
    description: str
    load: Callable[[], Gallery]


def bundled_gallery_present() -> bool:
    return (BUNDLED_DIR / "metadata.csv").is_file()


def gallery_sources() -> list[GallerySource]:
    """Galleries available on this machine: the bundled one, Sketchy's photos when ../shared/data is
    present, and a folder named by SBIR_GALLERY_DIR. (The user's own photos live in the session.)"""
    out = []
    if bundled_gallery_present():
        out.append(GallerySource("bundled", "Bundled demo gallery",
                                 "Redistributable photos that ship with SketchSearch (see NOTICE).", Gallery.bundled))
    sketchy = data_dir() / "sketchy" / "photo"
    if sketchy.is_dir():
        out.append(GallerySource("sketchy", "Sketchy photos (125 classes)",
                                 "The 3,125 Sketchy photos from ../shared/data (research use only).",
                                 lambda: Gallery.from_folder(sketchy, name="Sketchy photos")))
    extra = os.environ.get("SBIR_GALLERY_DIR")
    if extra and Path(extra).is_dir():
        out.append(GallerySource("folder", f"Folder {Path(extra).name}", f"Photos from {extra}",
                                 lambda: Gallery.from_folder(extra)))
    if not is_memory():          # SBIR_STORE names a Milvus store: its photos, searched there
        uri = store_uri()
        out.append(GallerySource("store", f"Store {uri.split('?', 1)[0]}", f"Photos indexed in the vector store {uri} "
                                 "(python -m sbir_core.store.build FOLDER --store URI)", lambda: Gallery.from_store(uri)))
    return out


def missing_gallery_message() -> str:
    return ("The bundled gallery is missing (galleries/bundled/metadata.csv); " + GALLERY_BUILD_HINT
            + ". You can also upload your own photos on the Galleries page.")


class Thumbnails:
    """Small JPEG previews of a gallery's photos, made once each (the grid redraws often). `src(i)` is
    what a result card's <img> shows: with `static_dir` (the app's static folder, served by Streamlit at
    `static_url`), a file written once per gallery and photo, so the browser fetches and decodes each
    photo once and a new answer is a few hundred bytes of HTML; else an inline data: URL (encoded once)."""

    def __init__(self, gallery: Gallery, size: int = 256, max_items: int = 4000,
                 static_dir: Path | None = None, static_url: str = "app/static"):
        self.gallery, self.size, self.max_items = gallery, size, max_items
        self.static_dir, self.static_url = static_dir, static_url.rstrip("/")
        self._cache: dict[int, bytes] = {}
        self._urls: dict[tuple[int, int], str] = {}
        self._files: dict[tuple[int, int], str] = {}

    def src(self, i: int) -> str:
        """Photo i's thumbnail for an <img src>: a static file's URL (written once), else a data: URL."""
        if self.static_dir is None:
            return self.data_url(i)
        key = (i, len(self.gallery))
        url = self._files.get(key)
        if url is None:
            folder = "thumbs/" + hashlib.sha1(f"{self.gallery.content_key}-{self.size}".encode()).hexdigest()[:16]
            path = self.static_dir / folder / f"{i}.jpg"
            try:
                if not path.exists():
                    path.parent.mkdir(parents=True, exist_ok=True)
                    tmp = path.with_suffix(f".{os.getpid()}.tmp")      # other sessions may write it at once
                    tmp.write_bytes(self(i))
                    os.replace(tmp, path)
            except OSError:                # a read-only app folder: inline, as without a static folder
                return self.data_url(i)
            if len(self._files) >= self.max_items:
                self._files.pop(next(iter(self._files)))
            url = self._files[key] = f"{self.static_url}/{folder}/{i}.jpg"
        return url

    def data_url(self, i: int) -> str:
        """Photo i's thumbnail as a `data:image/jpeg;base64,...` URL, encoded once per gallery."""
        key = (i, len(self.gallery))
        url = self._urls.get(key)
        if url is None:
            if len(self._urls) >= self.max_items:
                self._urls.pop(next(iter(self._urls)))
            url = "data:image/jpeg;base64," + base64.b64encode(self(i)).decode("ascii")
            self._urls[key] = url
        return url

    def __call__(self, i: int) -> bytes:
        key = (i, len(self.gallery))     # positions shift when indexing leaves out an unreadable photo
        if key not in self._cache:
            if len(self._cache) >= self.max_items:
                self._cache.pop(next(iter(self._cache)))
            try:
                im = self.gallery.image(i).convert("RGB")
            except ImageInputError:
                im = Image.new("RGB", (self.size, self.size), (230, 230, 230))
            im = ImageOps.pad(im, (self.size, self.size), color=(255, 255, 255))
            buf = io.BytesIO()
            im.save(buf, format="JPEG", quality=85)
            self._cache[key] = buf.getvalue()
        return self._cache[key]


@dataclass
class Example:
    """An example sketch to click: PNG bytes, its class, and where it comes from."""
    label: str
    png: bytes
    source: str


def example_sketches(classes: Sequence[str] = EXAMPLE_CLASSES) -> list[Example]:
    """Real held-out Sketchy sketches when ../shared/data is present (one test-split sketch per
    class), else the OpenMoji outlines that ship in assets/examples (CC BY-SA 4.0)."""
    out: list[Example] = []
    root = data_dir() / "sketchy" / "sketch"
    if root.is_dir():
        for c in classes:
            folder = root / c
            if not folder.is_dir():
                continue
            files = sorted(p for p in folder.iterdir() if p.suffix.lower() == ".png")
            test = [p for p in files if split_of(sketch_photo_id(p)) == "test"]
            if test:
                try:
                    out.append(Example(c, png_bytes(load_image(test[0]).convert("L")), f"Sketchy test sketch {test[0].name}"))
                except ImageInputError:
                    continue
        if out:
            return out
    table = EXAMPLES_DIR / "examples.tsv"
    if table.is_file():
        with open(table, newline="", encoding="utf-8") as f:
            for row in csv.DictReader(f, delimiter="\t"):
                p = EXAMPLES_DIR / row["file"]
                if p.is_file():
                    out.append(Example(row["label"], p.read_bytes(), f"{row['source']}, {row['licence']}"))
    return out

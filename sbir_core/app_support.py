"""Everything the Streamlit app needs that is not UI: which backends and galleries exist, example
sketches, turning the canvas's drawing into an image, searching without tracebacks, and the
evaluation report as tables. Kept here (never importing streamlit) so it is tested like the rest.
"""
from __future__ import annotations

import base64
import csv
import hashlib
import io
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageOps

from .backends import BASELINES, ModelFileError, available_backends
from .backends.base import Backend, SearchResult
from .backends.onnx_model import REBUILD_HINT, read_meta
from .config import MODELS_DIR, REPO_ROOT, data_dir
from .data.classes import display
from .data.preprocess import ImageInputError, load_image
from .gallery import BUNDLED_DIR, Gallery
from .gallery_kinds import classes_in_gallery  # noqa: F401  (the reading asks it; app_widgets imports it here)

log = logging.getLogger(__name__)

EXAMPLES_DIR = REPO_ROOT / "assets" / "examples"
METRICS_FILE = MODELS_DIR / "metrics_sketchy.json"
BENCH_FILE = REPO_ROOT / "bench.json"
EXAMPLE_CLASSES = ("apple", "airplane", "car_(sedan)", "cat", "butterfly", "fish", "guitar", "tree")   # each has 2+ bundled photos
GALLERY_BUILD_HINT = "build it with `python -m sbir_core.build_gallery --index` (see the README), or pick another gallery"


# -- backends --------------------------------------------------------------------------------
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


# -- galleries -------------------------------------------------------------------------------
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
    from .store import is_memory, store_uri
    if not is_memory():          # SBIR_STORE names a Milvus store: its photos, searched there
        uri = store_uri()
        out.append(GallerySource("store", f"Store {uri.split('?', 1)[0]}", f"Photos indexed in the vector store {uri} "
                                 "(python -m sbir_core.build_gallery FOLDER --store URI)", lambda: Gallery.from_store(uri)))
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


# -- sketches --------------------------------------------------------------------------------
@dataclass
class Example:
    """An example sketch to click: PNG bytes, its class, and where it comes from."""
    label: str
    png: bytes
    source: str


def _png(im: Image.Image) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


def example_sketches(classes: Sequence[str] = EXAMPLE_CLASSES) -> list[Example]:
    """Real held-out Sketchy sketches when ../shared/data is present (one test-split sketch per
    class), else the OpenMoji outlines that ship in assets/examples (CC BY-SA 4.0)."""
    from .data.readers import sketch_photo_id
    from .data.splits import split_of
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
                    out.append(Example(c, _png(load_image(test[0]).convert("L")), f"Sketchy test sketch {test[0].name}"))
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


def drawing_objects(drawing: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The stroke objects of a canvas drawing (Fabric.js JSON), in drawing order."""
    if not isinstance(drawing, dict):
        return []
    objs = drawing.get("objects") or []
    return [o for o in objs if isinstance(o, dict) and o.get("type", "").lower() == "path"]


def _path_points(path: list) -> list[tuple[float, float]]:
    """Fabric path commands (M, L, Q, C) -> a polyline through their points (curves sampled)."""
    pts: list[tuple[float, float]] = []
    for cmd in path:
        if not isinstance(cmd, (list, tuple)) or not cmd:
            continue
        op, nums = str(cmd[0]).upper(), [float(v) for v in cmd[1:]]
        if op in ("M", "L") and len(nums) >= 2:
            pts.append((nums[0], nums[1]))
        elif op == "Q" and len(nums) >= 4 and pts:
            (x0, y0), (cx, cy), (x1, y1) = pts[-1], nums[0:2], nums[2:4]
            for t in (0.25, 0.5, 0.75, 1.0):
                u = 1 - t
                pts.append((u * u * x0 + 2 * u * t * cx + t * t * x1, u * u * y0 + 2 * u * t * cy + t * t * y1))
        elif op == "C" and len(nums) >= 6 and pts:
            (x0, y0), (ax, ay), (bx, by), (x1, y1) = pts[-1], nums[0:2], nums[2:4], nums[4:6]
            for t in (0.25, 0.5, 0.75, 1.0):
                u = 1 - t
                pts.append((u**3 * x0 + 3 * u * u * t * ax + 3 * u * t * t * bx + t**3 * x1,
                            u**3 * y0 + 3 * u * u * t * ay + 3 * u * t * t * by + t**3 * y1))
    return pts


def render_drawing(drawing: dict[str, Any] | None, width: int, height: int) -> Image.Image | None:
    """The canvas's Fabric.js JSON -> grey image (black ink on white), or None when nothing is drawn.

    Rendering the strokes here (rather than asking the browser for a PNG) keeps undo, clear and
    restoring a drawing on another page consistent, and lets tests inject a drawing as JSON.
    White strokes (the eraser) are painted over, in order, as on the canvas.
    """
    objs = drawing_objects(drawing)
    if not objs:
        return None
    ss = 2
    img = Image.new("L", (width * ss, height * ss), 255)
    draw = ImageDraw.Draw(img)
    for o in objs:
        pts = _path_points(o.get("path") or [])
        if not pts:
            continue
        colour = str(o.get("stroke", "#000000")).lower()
        fill = 255 if colour in ("#fff", "#ffffff", "white", "rgb(255, 255, 255)") else 0
        lw = max(1, int(round(float(o.get("strokeWidth", 3)) * ss)))
        scaled = [(x * ss, y * ss) for x, y in pts]
        if len(scaled) > 1:
            draw.line(scaled, fill=fill, width=lw, joint="curve")
        r = lw / 2
        for x, y in (scaled[0], scaled[-1]):
            draw.ellipse((x - r, y - r, x + r, y + r), fill=fill)
    im = img.resize((width, height), Image.Resampling.BOX)
    return im if np.asarray(im).min() < 200 else None


def drawing_without_last_stroke(drawing: dict[str, Any] | None) -> dict[str, Any]:
    """Undo: the same drawing minus its last object."""
    objs = list((drawing or {}).get("objects") or [])
    return {**(drawing or {}), "objects": objs[:-1]}


def png_bytes(image: Image.Image) -> bytes:
    return _png(image)


# -- searching -------------------------------------------------------------------------------
@dataclass
class SearchOutcome:
    """A search's result, or the message to show instead (never a traceback)."""
    backend: str
    result: SearchResult | None = None
    error: str | None = None
    blank: bool = False               # nothing drawn yet: a hint, not an error

    @property
    def latency_ms(self) -> float | None:
        return None if self.result is None else float(self.result.extras["timings_ms"]["total"])


def safe_search(backend: Backend, sketch: Any, gallery: Gallery, k: int = 20,
                threshold: float | None = None) -> SearchOutcome:
    """`backend.search` (top k), or with a threshold `search_within` (every photo at least that
    similar, at most k shown), with every failure turned into a message for the user."""
    from .data.preprocess import BlankSketchError
    try:
        if threshold is not None and supports_threshold(backend):
            r = backend.search_within(sketch, gallery, threshold)
            r.extras["within"] = len(r.ids)
            return SearchOutcome(backend.name, SearchResult(r.ids[:k], r.scores[:k], r.labels[:k], r.indices[:k],
                                                            r.extras))
        return SearchOutcome(backend.name, backend.search(sketch, gallery, k))
    except BlankSketchError as e:
        return SearchOutcome(backend.name, error=str(e), blank=True)
    except (ImageInputError, ModelFileError) as e:
        return SearchOutcome(backend.name, error=str(e))
    except Exception as e:  # the app's last line of defence: log it, show one line (no advice we cannot stand by)
        log.exception("search failed")
        return SearchOutcome(backend.name, error=f"The search failed unexpectedly ({type(e).__name__}: {e}). "
                                                 "Try again, or pick another backend or gallery.")


def supports_threshold(backend: Backend) -> bool:
    """Embedding backends also retrieve by distance (every photo above a cosine similarity)."""
    return backend.default_threshold is not None


def hits(result: SearchResult, label: str | None) -> list[bool] | None:
    """Which results are of the sketch's class (None when the class is unknown)."""
    if not label:
        return None
    return [lab == label for lab in result.labels]


# -- evaluation report -----------------------------------------------------------------------
def load_report(path: Path | None = None) -> dict[str, Any] | None:
    """The evaluation CLI's JSON (models/metrics_sketchy.json), or None when absent or unreadable."""
    path = Path(path or METRICS_FILE)
    try:
        report = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return report if isinstance(report, dict) and isinstance(report.get("backends"), dict) else None


def first_row_hits(path: Path | None = None) -> dict[str, float]:
    """{backend: doodles -> bundled gallery hit@4} from the benchmark's JSON (bench.json): how often
    a visitor's quick drawing finds a right photo in the first row. Empty when absent or unreadable."""
    try:
        results = json.loads(Path(path or BENCH_FILE).read_text())["quality"]["results"]
        hits = {n: r["sets"]["quickdraw"]["hit@4"] for n, r in results.items()}
    except (OSError, json.JSONDecodeError, KeyError, TypeError, AttributeError):
        return {}
    return {n: float(h) for n, h in hits.items() if isinstance(h, (int, float))}


METRIC_COLUMNS = ("mAP@all", "P@20", "acc@1", "acc@5", "acc@10")


def metrics_rows(report: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per backend: the headline metrics and the mean latency per query in ms."""
    rows = []
    for name, m in report["backends"].items():
        row: dict[str, Any] = {"backend": name}
        for c in METRIC_COLUMNS:
            if c in m:
                row[c] = m[c]
        q = m.get("queries") or report.get("queries")
        if m.get("query_seconds") is not None and q:
            row["ms/query"] = 1e3 * float(m["query_seconds"]) / float(q)
        if "latency_ms_p50" in m:
            row["ms/query"] = m["latency_ms_p50"]
        rows.append(row)
    return sorted(rows, key=lambda r: -r.get("mAP@all", 0.0))


def per_class_rows(report: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per class: its mAP@all under each backend."""
    classes = sorted({c for m in report["backends"].values() for c in (m.get("per_class_mAP") or {})})
    return [{"class": display(c), **{n: (m.get("per_class_mAP") or {}).get(c) for n, m in report["backends"].items()}}
            for c in classes]


def load_curves(name: str) -> list[dict[str, Any]] | None:
    """A backend's training curves, per epoch or step (`models/<name>_curves.json`, or the file its
    metadata names), or None when it has none."""
    candidates = [MODELS_DIR / f"{name}_curves.json"]
    try:
        meta = read_meta(name)
        if meta.get("curves"):
            candidates.insert(0, MODELS_DIR / str(meta["curves"]))
    except ModelFileError:
        pass
    for p in candidates:
        try:
            rows = json.loads(p.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        if isinstance(rows, dict):
            rows = rows.get("epochs") or rows.get("curves") or []
        if not isinstance(rows, list):
            continue
        rows = [r for r in rows if isinstance(r, dict) and ("epoch" in r or "step" in r)]
        if rows:
            return rows
    return None


QUALITY_MARKS = ("acc", "top1", "top5", "mAP", "P@")
NOT_PLOTTED = {"epoch", "step", "seconds", "minutes"}


def curve_series(rows: list[dict[str, Any]]) -> tuple[str, list[str], list[str]]:
    """Split a curves file's numeric columns into losses and quality figures (accuracy, mAP, P@K),
    so each trainer may log its own names; the x axis is `step` where the trainer logged one."""
    columns = list(dict.fromkeys(k for r in rows for k, v in r.items()
                                 if isinstance(v, (int, float)) and not isinstance(v, bool)))
    x = "step" if "step" in columns else "epoch"
    plotted = [c for c in columns if c not in NOT_PLOTTED]
    quality = [c for c in plotted if any(m in c for m in QUALITY_MARKS)]
    return x, [c for c in plotted if c not in quality], quality


# -- the canvas: sizing, scaling, one set of tools ---------------------------------------------
SKETCH_WIDTH = 480                     # every screen's strokes are scaled into a sketch this wide
CANVAS_ASPECT = 0.9                    # height / width of the canvas (and of the sketch image)
PEN_SIZES = {"Thin": 4.0, "Medium": 7.0, "Thick": 12.0}   # pen widths in sketch pixels (of SKETCH_WIDTH)
ERASER_FACTOR = 3.0                    # the eraser is this much wider than the pen
DEFAULT_CANVAS_WIDTH = 320             # until the browser has said how much room there is


def canvas_size(available_width: float | None, viewport_height: float | None = None,
                presenter: bool = False, top: float | None = None) -> tuple[int, int]:
    """(width, height) in CSS pixels of a canvas that fits the column the browser reported.

    The width follows the column (never wider, so no stroke lands outside what is visible). The
    height keeps the canvas's aspect ratio, but on a short screen (presenter mode at 1280x720) the
    whole canvas must fit below its `top` in the window: then it gets lower, and narrower too
    when it would be flatter than 4:3. Never below 200 px either way."""
    w = float(available_width or DEFAULT_CANVAS_WIDTH)
    w = max(200.0, min(w, 900.0 if presenter else 640.0))
    h = w * CANVAS_ASPECT
    if viewport_height:
        room = float(viewport_height) - (float(top) if top is not None else 300.0) - 40.0   # gap + margin
        if presenter or room >= 0.5 * h:        # a laptop scrolls rather than shrink the canvas to a strip
            h = min(h, max(200.0, room))
            w = min(w, h / 0.75)
    return int(w), int(h)


def scale_drawing(drawing: dict[str, Any] | None, factor: float) -> dict[str, Any] | None:
    """A Fabric.js drawing with every coordinate and stroke width multiplied by `factor`: moves a
    drawing between a canvas of one size and the sketch's fixed size (or a resized canvas)."""
    if not isinstance(drawing, dict):
        return drawing
    objs = []
    for o in drawing.get("objects") or []:
        if not isinstance(o, dict):
            continue
        o = dict(o)
        for k in ("left", "top", "width", "height", "strokeWidth"):
            if isinstance(o.get(k), (int, float)):
                o[k] = round(float(o[k]) * factor, 3)
        if isinstance(o.get("path"), list):
            o["path"] = [[c[0], *(round(float(v) * factor, 3) for v in c[1:])]
                         if isinstance(c, (list, tuple)) and c else c for c in o["path"]]
        if isinstance(o.get("pathOffset"), dict):
            o["pathOffset"] = {k: round(float(v) * factor, 3) for k, v in o["pathOffset"].items()}
        objs.append(o)
    return {**drawing, "objects": objs}


def sketch_from_drawing(drawing: dict[str, Any] | None, aspect: float = CANVAS_ASPECT) -> Image.Image | None:
    """A drawing in sketch pixels (SKETCH_WIDTH wide) -> the grey sketch image that is searched."""
    return render_drawing(drawing, SKETCH_WIDTH, max(1, int(round(SKETCH_WIDTH * aspect))))


# -- what the backend sees: the reading, card scores and labels --------------------------------
@dataclass
class Reading:
    """What a backend makes of the sketch, in words, for the line next to the canvas.

    kind "classes": the backend classifies; `items` are (class, probability), `recognised` its top class.
    kind "nearest": an embedding backend; `items` are (class, best similarity of a photo of that class).
    kind "none": nothing to say (random ranking, or no labelled photo among the results)."""
    kind: str
    items: list[tuple[str, float]] = field(default_factory=list)
    recognised: str | None = None
    missing: bool = False              # the recognised class has no photo in this gallery

    def text(self) -> str:
        if self.kind == "classes":
            return "I see: " + " · ".join(f"{display(c)} {p:.0%}".replace("%", " %") for c, p in self.items)
        if self.kind == "nearest":
            return "Closest photos: " + " · ".join(f"{display(c)} ({s:.2f})" for c, s in self.items)
        return ""


def read_sketch(result: SearchResult, classes_here: set[str] | None, kind: str = "similarity", n: int = 3) -> Reading:
    """The reading of one search: a classifier's top classes (and whether the gallery has photos of
    the first; `classes_here` None: unknown, never said missing), else the classes of the nearest photos
    with their best similarity. `result` should rank the whole gallery, so that every class's best photo is in it."""
    top = result.extras.get("top_classes")
    if top:
        items = [(str(c), float(p)) for c, p in list(top)[:n]]
        first = items[0][0]
        return Reading("classes", items, first, missing=classes_here is not None and first not in classes_here)
    if kind == "rank":
        return Reading("none")
    best: dict[str, float] = {}
    for lab, s in zip(result.labels, np.asarray(result.scores, dtype=float)):
        if lab and lab not in best:
            best[lab] = float(s)
            if len(best) == n:
                break
    return Reading("nearest", list(best.items())) if best else Reading("none")


def score_kind(backend: Backend | None) -> str:
    """How a backend's scores read on a card (`Backend.card_score`); 'rank' when no backend is known."""
    return backend.card_score if backend is not None else "rank"


def photo_class_confidence(backend: Backend, gallery: Gallery, indices: Sequence[int]) -> np.ndarray:
    """The within-kind factor of the result cards' scores (`Backend.card_confidence`)."""
    return backend.card_confidence(gallery.features(backend), gallery.labels, np.asarray(indices, dtype=np.int64))


UNLIKELY_KIND = 0.02    # a result photo whose kind the reading gives less than this is marked "unlikely"


def kind_probabilities(result: SearchResult, backend: Any) -> np.ndarray | None:
    """P(the sketch shows each result photo's kind), where the backend reads the sketch's kind: a
    classifier's scores (its label lookup) or `instance`'s stage 1; None for the other backends."""
    if "class_probability" in result.extras:
        return np.asarray(result.extras["class_probability"], dtype=np.float64)
    if score_kind(backend) == "probability":
        return np.asarray(backend.plain_scores(np.asarray(result.scores, dtype=np.float64)))
    return None


def unlikely_from(kind_probability: np.ndarray | None, floor: float = UNLIKELY_KIND) -> int | None:
    """Where a ranked list runs into kinds the reading gives under `floor` (a house's list ending in
    horses): the first such position after at least one likely photo, so the grid can say so there.
    None when there is no such place (all likely, no reading, or nothing likely at all)."""
    if kind_probability is None:
        return None
    below = np.flatnonzero(np.asarray(kind_probability) < floor)
    return int(below[0]) if len(below) and below[0] > 0 else None


@dataclass
class CardScores:
    """The text under each result card, and one line saying what it means."""
    texts: list[str]
    note: str


def card_scores(result: SearchResult, kind: str, photo_confidence: Sequence[float] | None = None) -> CardScores:
    """Per-card scores that mean something: cosine similarity (embedding backends), P(class) x the
    photo's within-class confidence (classifiers), or the rank alone - never one number on every
    card: when the shown values are all equal, the cards show their rank and the note says why."""
    n = len(result.ids)
    ranks = [f"#{i + 1}" for i in range(n)]
    if kind == "rank" or n == 0:
        return CardScores(ranks, "Random ranking: the order means nothing, so no score is shown.")
    s = np.asarray(result.scores, dtype=np.float64)
    if kind == "probability":
        conf = np.asarray(photo_confidence if photo_confidence is not None else np.ones(n), dtype=np.float64)
        values, word = s * conf, "match"
        note = ("Card scores: P(the sketch shows the photo's kind), × how sure the photo labeller is of "
                "the kind for a photo without a label.")
        shown = [f"{v:.0%}" for v in values]
    elif kind == "mixed":
        values, word = s, "similarity"
        note = ("Card scores: cosine similarity of the imagined photo and the photo (1 = same direction). "
                "The order also weighs P(the sketch shows the photo's class), so photos of the class the "
                "sketch is read as come first.")
        shown = [f"{v:.2f}" for v in values]
    else:
        values, word = s, "similarity"
        note = "Card scores: cosine similarity of sketch and photo in the backend's space (1 = same direction)."
        shown = [f"{v:.2f}" for v in values]
    if n > 1 and len(set(shown)) == 1:
        return CardScores(ranks, f"All {n} shown have the same {word} ({shown[0]}): cards show their rank.")
    return CardScores([f"#{i + 1} · {v}" for i, v in enumerate(shown)], note)


def card_label(label: str | None, caption: str | None = None, max_chars: int = 38) -> str:
    """What a result card is called: its class in words, else its display name or caption (shortened,
    see `Gallery.display_label`), else 'photo'."""
    if label:
        return display(label)
    text = (caption or "").strip().rstrip(".")
    if not text:
        return "photo"
    return text if len(text) <= max_chars else text[: max_chars - 1].rstrip() + "…"


def try_classes(labels: Sequence[str | None], known: Sequence[str] | None = None, n: int = 8) -> list[str]:
    """Classes to suggest drawing ("try: apple · fish …"): the gallery's classes with the most photos
    (that the backend can recognise, when its vocabulary is known), ties in alphabetical order."""
    counts: dict[str, int] = {}
    for lab in labels:
        if lab:
            counts[lab] = counts.get(lab, 0) + 1
    ok = set(known) if known else None
    ranked = sorted((c for c in counts if ok is None or c in ok), key=lambda c: (-counts[c], c))
    return ranked[:n]


def grid_columns(width: float, most: int = 4, card: float = 115.0) -> int:
    """Cards per row in a column `width` px wide: as many as fit at about `card` px each, 2 to `most`."""
    return int(max(2, min(most, width // card)))


def first_k(result: SearchResult, k: int) -> SearchResult:
    """The first k of a ranking (the app ranks the whole gallery once and shows the top)."""
    return SearchResult(result.ids[:k], result.scores[:k], result.labels[:k], result.indices[:k], result.extras)


# -- compare: one summary row per backend ----------------------------------------------------------
@dataclass
class CompareRow:
    """One backend's line in the Compare page's summary table."""
    name: str
    title: str
    sees: str                      # its top classes, or the classes of its nearest photos
    hits: int | None               # results of the sketch's class in its top K (None: class unknown)
    k: int
    latency_ms: float | None
    baseline: bool = False
    quality: float = 0.0           # its mAP@all in the shipped evaluation (orders rows while the class is unknown)


def compare_order(rows: Sequence[CompareRow]) -> list[CompareRow]:
    """Best first, baselines last: by hits in the top K once the class is known (ties: faster first),
    else by the shipped evaluation's mAP@all."""
    def key(r: CompareRow):
        if r.hits is not None:
            return (r.baseline, -r.hits, -r.quality, r.latency_ms or 0.0)
        return (r.baseline, -r.quality, r.latency_ms or 0.0)
    return sorted(rows, key=key)


def reading_summary(reading: "Reading | None", label: str | None = None, n: int = 3) -> str:
    """A reading in a few words for a table cell: 'bicycle 95 % · car 2 %', or 'cup · hat · fish';
    once the sketch's class is known, ✅/❌ says whether the first class is it."""
    if reading is None or reading.kind == "none" or not reading.items:
        return "–"
    if reading.kind == "classes":
        text = " · ".join(f"{display(c)} {p:.0%}" for c, p in reading.items[:n])
    else:
        text = " · ".join(display(c) for c, _ in reading.items[:n])
    if label:
        text = ("✅ " if reading.items[0][0] == label else "❌ ") + text
    return text


# -- embedding map ---------------------------------------------------------------------------------
def map_classes_to_colour(xs: Sequence[float], ys: Sequence[float], classes: Sequence[str],
                          at: tuple[float, float] | None = None, n: int = 10,
                          first: Sequence[str] = ()) -> list[str]:
    """The classes worth a colour (and a legend entry) on the map: `first` (the classes of the sketch's
    nearest neighbours in the backend's space), then those whose nearest point lies closest to the
    sketch's place, or without a sketch the n with the most points; the rest are grey."""
    xs, ys = np.asarray(xs, dtype=float), np.asarray(ys, dtype=float)
    best: dict[str, float] = {}
    count: dict[str, int] = {}
    for i, c in enumerate(classes):
        if not c:
            continue
        count[c] = count.get(c, 0) + 1
        if at is not None:
            d = float((xs[i] - at[0]) ** 2 + (ys[i] - at[1]) ** 2)
            best[c] = min(best.get(c, d), d)
    lead = list(dict.fromkeys(c for c in first if c in count))
    rest = sorted(best, key=lambda c: (best[c], c)) if at is not None else sorted(count, key=lambda c: (-count[c], c))
    return (lead + [c for c in rest if c not in lead])[:n]


def map_label_placement(x: float, y: float, x_range: tuple[float, float], y_range: tuple[float, float]) -> dict[str, Any]:
    """Where the sketch's label goes so that it stays inside the plot: left of the marker in the
    right half, right of it in the left half; below it near the top edge, above it otherwise."""
    right_half = x > (x_range[0] + x_range[1]) / 2
    near_top = y > y_range[1] - 0.12 * (y_range[1] - y_range[0])
    return {"align": "right" if right_half else "left", "dx": -16 if right_half else 16,
            "dy": 22 if near_top else -22}

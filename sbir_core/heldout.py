"""The held-out evaluation sets every backend is scored on, the gallery the speed figures use, and
one backend's scores on one set (`score_set`). In the library, not the benchmark, because the
trainers' and exporters' own checks (`sbir_core.train.score_instance`, `export/quantize.py`) score
the same sets.

Every set is real data from `../shared/data` that no backend trains on (see `held_out_notes`):
- `sketchy`: sketches of the held-out Sketchy photos (split table `sbir_core/data/splits`) against
  all 3,125 Sketchy photos;
- `sketchy10`: sketches of the 200 `test` photos of the complete 10-class set (its `split.tsv`)
  against all 1,000 photos of that set;
- `shoes`: the sketches of the held-out `test` shoes against all 304 shoe photos (instance-level);
- `quickdraw`: held-out Quick, Draw! drawings, rendered like the browser canvas, against the demo
  gallery, for the classes that gallery has (cross-dataset: other people, other drawing tool).
"""
from __future__ import annotations

import hashlib
import io
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .config import REPO_ROOT, data_dir
from .data import readers
from .data.render import CANVAS_LINE_WIDTH, CANVAS_SIZE, render_canvas
from .data.splits import QUICKDRAW_EVAL_ROWS
from .evaluate import classification_accuracy, metrics, select_queries
from .gallery import BUNDLED_DIR, Gallery

# Quick, Draw! simplified-stroke rows (per class file) the cross-dataset row uses: QUICKDRAW_EVAL_ROWS
# (lines 0-9, see sbir_core.data.splits), disjoint from every row a trainer uses; the bench checks it.
FALLBACK_GALLERY_NOTE = ("the bundled gallery (galleries/bundled) is missing, so a stand-in was used: "
                         "the held-out Sketchy test photos (up to 5 per class, {n} photos, labelled)")

REPORTED = ("mAP@all", "P@20", "P@20_capped", "hit@4", "P@4", "relevant_per_query", "acc@1", "acc@10")


@dataclass
class EvalSet:
    """One query set against one gallery. `queries[i]` is anything `sketch_input` accepts."""
    name: str
    title: str
    gallery: Gallery
    queries: list[Any]
    query_labels: list[str]
    query_photo_ids: list[str] | None           # None: no instance pairing (category metrics only)
    notes: list[str] = field(default_factory=list)
    classify: tuple[list[Any], list[str]] | None = None   # sketch top-1 queries, when not `queries`
    truth: list[str | None] | None = None       # the gallery's real labels when the backend sees them hidden
    drawn_kinds: int | None = None              # kinds with drawings here, for the share of all doodles served

    @property
    def classified(self) -> tuple[list[Any], list[str]]:
        """The sketches (and labels) whose classification top-1/5 is reported for this set."""
        return self.classify or (self.queries, self.query_labels)

    @property
    def gallery_photo_ids(self) -> list[str]:
        """The photo id each gallery item pairs with (file stem, like the sketches name them)."""
        return [Path(str(s)).stem for s in self.gallery.sources]

    @property
    def gallery_truth(self) -> list[str]:
        """The labels relevance is judged by: the real ones, even when the backend sees them hidden."""
        return [g or "" for g in (self.truth if self.truth is not None else self.gallery.labels)]

    def describe(self) -> dict[str, Any]:
        out = {"title": self.title, "queries": len(self.queries), "gallery": len(self.gallery),
               "classes": len(set(self.query_labels)), "paired": self.query_photo_ids is not None,
               "notes": self.notes}
        if self.drawn_kinds:
            out["drawn_kinds"] = self.drawn_kinds
        return out


def _cached_gallery(name: str, items: Sequence[readers.Item]) -> Gallery:
    """A gallery over photo files; features cached under `.cache/embeddings` (keyed by the files)."""
    key = hashlib.sha1("\n".join(str(it.path.resolve()) for it in items).encode()).hexdigest()[:12]
    return Gallery(name, [f"{it.label}/{it.path.stem}" for it in items], [it.path for it in items],
                   [it.label for it in items], [it.path.stem for it in items], [{} for _ in items],
                   cache_dir=REPO_ROOT / ".cache" / "embeddings" / f"bench-{name}-{key}")


def _first_classes(items: list[readers.Item], classes: set[str] | None) -> list[readers.Item]:
    return items if classes is None else [it for it in items if it.label in classes]


def _class_subset(labels: Sequence[str | None], max_classes: int | None) -> set[str] | None:
    """The first `max_classes` classes by name (quick runs), or None for all."""
    if max_classes is None:
        return None
    return set(sorted({lab for lab in labels if lab})[:max_classes])


def _cap(items: list, max_queries: int | None) -> list:
    """At most `max_queries`, spread evenly over the list (so every class keeps some)."""
    if max_queries is None or len(items) <= max_queries:
        return items
    step = len(items) / max_queries
    return [items[int(i * step)] for i in range(max_queries)]


def sketchy_heldout(max_classes: int | None = None, max_queries: int | None = None) -> EvalSet:
    """Sketches of the held-out Sketchy `test` photos against every Sketchy photo."""
    photos, sketches = readers.sketchy(data_dir() / "sketchy")
    keep = _class_subset([p.label for p in photos], max_classes)
    photos = _first_classes(photos, keep)
    queries = _cap(_first_classes(select_queries(sketches, "test"), keep), max_queries)
    return EvalSet("sketchy", "Sketchy held-out", _cached_gallery("sketchy", photos),
                   [q.path for q in queries], [q.label for q in queries], [q.photo_id for q in queries],
                   ["queries: sketches of the Sketchy photos in the `test` split (sbir_core/data/splits/sketchy.tsv); "
                    "gallery: every Sketchy photo, test and training photos alike"])


def sketchy_10class(max_classes: int | None = None, max_queries: int | None = None) -> EvalSet:
    """Sketches of the 10-class set's `test` photos against all its photos."""
    root = data_dir() / "sketchy_10class"
    photos, sketches = readers.sketchy(root)
    split = readers.read_split(root / "split.tsv")
    keep = _class_subset([p.label for p in photos], max_classes)
    photos = _first_classes(photos, keep)
    queries = _cap(_first_classes([s for s in sketches if split.get(s.photo_id) == "test"], keep), max_queries)
    return EvalSet("sketchy10", "Sketchy 10-class test", _cached_gallery("sketchy10", photos),
                   [q.path for q in queries], [q.label for q in queries], [q.photo_id for q in queries],
                   ["queries: sketches of the `test` photos of sketchy_10class/split.tsv; gallery: all its photos"])


def tuberlin_heldout(max_classes: int | None = None, max_queries: int | None = None) -> EvalSet:
    """TU-Berlin `test` sketches (another drawing style, never trained on): those of Sketchy classes
    against all Sketchy photos; sketch top-1 over every held-out TU-Berlin sketch."""
    from .data.splits import tuberlin_splits
    items = readers.tuberlin(data_dir() / "tuberlin")
    test = [it for it, sp in zip(items, tuberlin_splits(items)) if sp == "test"]
    photos, _ = readers.sketchy(data_dir() / "sketchy")
    keep = _class_subset([p.label for p in photos], max_classes)
    photos = _first_classes(photos, keep)
    have = {p.label for p in photos}
    queries = _cap([it for it in test if it.label in have], max_queries)
    classify = _cap(test if keep is None else queries, max_queries)
    return EvalSet("tuberlin", "TU-Berlin held-out", _cached_gallery("sketchy", photos),
                   [q.path for q in queries], [q.label for q in queries], None,
                   [f"queries: the TU-Berlin `test` sketches (sbir_core.data.splits.tuberlin_splits) of the "
                    f"{len({q.label for q in queries})} classes Sketchy has, against every Sketchy photo; sketch "
                    f"top-1/5 over all {len(classify)} held-out TU-Berlin sketches"],
                   classify=([c.path for c in classify], [c.label for c in classify]))


def shoes(max_photos: int | None = None, max_queries: int | None = None) -> EvalSet:
    """The sketches of the held-out `test` shoes (`sbir_core.data.splits.shoe_splits`: the `instance`
    backend trains on the others) against all 304 shoe photos."""
    from .data.splits import shoe_splits
    photos, sketches = readers.shoes(data_dir() / "shoes")
    split = shoe_splits([p.photo_id for p in photos], {s.photo_id for s in sketches})
    sketches = [s for s in sketches if split.get(s.photo_id) == "test"]
    if max_photos is not None:
        photos = [p for p in photos if split[p.photo_id] == "test"][:max_photos // 2] + \
            [p for p in photos if split[p.photo_id] != "test"][:max_photos - max_photos // 2]
        ids = {p.photo_id for p in photos}
        sketches = [s for s in sketches if s.photo_id in ids]
    sketches = _cap(sketches, max_queries)
    return EvalSet("shoes", "Shoes (fine-grained)", _cached_gallery("shoes", photos),
                   [s.path for s in sketches], [s.label for s in sketches], [s.photo_id for s in sketches],
                   ["every photo is a shoe, so only instance-level acc@K means anything here; queries: the sketches "
                    "of the held-out `test` shoes (sbir_core.data.splits.shoe_splits, 20 % of the sketched shoes)"])


def quickdraw_kinds() -> dict[str, Path]:
    """{vocabulary kind: its simplified-stroke file}: every kind with Quick, Draw! drawings here."""
    return readers.quickdraw_classes(data_dir() / "quickdraw" / "simplified", ".ndjson")


def quickdraw_canvas(gallery: Gallery, per_class: int | None = None, max_classes: int | None = None,
                     hide_labels: bool = False) -> EvalSet:
    """Held-out Quick, Draw! drawings of the gallery's classes, rendered at canvas size (PNG bytes).
    `hide_labels`: the backend sees the gallery without its labels (a visitor's own folder of photos),
    relevance is still judged by them."""
    files = quickdraw_kinds()
    classes = sorted(set(files) & {lab for lab in gallery.labels if lab})
    if max_classes is not None:
        classes = classes[:max_classes]
    rows = list(QUICKDRAW_EVAL_ROWS)[:per_class] if per_class else list(QUICKDRAW_EVAL_ROWS)
    queries, labels = [], []
    for c in classes:
        for n, d in enumerate(readers.quickdraw_strokes(files[c], limit=rows[-1] + 1)):
            if n in rows:
                buf = io.BytesIO()
                render_canvas(d["strokes"]).save(buf, "PNG")
                queries.append(buf.getvalue())
                labels.append(c)
    notes = [f"Quick, Draw! simplified strokes, rows {rows[0]}-{rows[-1]} of each class file "
             f"(QUICKDRAW_EVAL_ROWS in sbir_core/data/splits.py), rendered at {CANVAS_SIZE} px with a "
             f"{CANVAS_LINE_WIDTH} px pen; {len(classes)} classes that the gallery has, of {len(files)} drawn here"]
    if not hide_labels:
        return EvalSet("quickdraw", "Quick, Draw! → demo gallery", gallery, queries, labels, None, notes,
                       drawn_kinds=len(files))
    hidden = replace(gallery, labels=[None] * len(gallery), _features={})
    return EvalSet("quickdraw_hidden", "Quick, Draw! → demo gallery, labels hidden", hidden, queries, labels, None,
                   notes + ["the backends see the gallery without labels (as a visitor's own folder): unlabelled "
                            "photos are filed by the photo labeller; relevance is judged by the real labels"],
                   truth=list(gallery.labels), drawn_kinds=len(files))


def demo_gallery() -> tuple[Gallery, str | None]:
    """The bundled demo gallery, or (until it exists) a stand-in folder gallery and a note saying so."""
    if (BUNDLED_DIR / "metadata.csv").is_file():
        return Gallery.bundled(), None
    photos, _ = readers.sketchy(data_dir() / "sketchy")
    from .data.splits import split_of
    test = [p for p in photos if split_of(p.photo_id) == "test"]
    return _cached_gallery("fallback", test), FALLBACK_GALLERY_NOTE.format(n=len(test))


def quality_sets(max_classes: int | None = None, max_queries: int | None = None,
                 quickdraw_per_class: int | None = None) -> list[EvalSet]:
    """All six sets, built once so every backend sees exactly the same queries and galleries."""
    gallery, note = demo_gallery()
    qd = quickdraw_canvas(gallery, quickdraw_per_class, max_classes)
    hidden = quickdraw_canvas(gallery, quickdraw_per_class, max_classes, hide_labels=True)
    if note:
        qd.notes.append(note)
    return [sketchy_heldout(max_classes, max_queries), sketchy_10class(max_classes, max_queries),
            tuberlin_heldout(max_classes, max_queries), shoes(None if max_classes is None else 30, max_queries), qd,
            hidden]


def quickdraw_rows_disjoint_from_training() -> bool:
    """Whether QUICKDRAW_EVAL_ROWS avoids every Quick, Draw! row a trainer reads (bitmaps and strokes)."""
    from .data.splits import (QUICKDRAW_BITMAP_TRAIN_ROWS, QUICKDRAW_BITMAP_VAL_ROWS,
                               QUICKDRAW_STROKE_TRAIN_ROWS)
    used = set(QUICKDRAW_BITMAP_TRAIN_ROWS) | set(QUICKDRAW_BITMAP_VAL_ROWS) | set(QUICKDRAW_STROKE_TRAIN_ROWS)
    return not used & set(QUICKDRAW_EVAL_ROWS)


# What each backend's trainer reads, checked by reading sbir_core/train/{features,classifier,
# triplet,cgan,instance}.py (2026-11-30). None but `instance` reads the shoe set (its `train` and `val` shoes only), Quick, Draw! rows QUICKDRAW_EVAL_ROWS,
# TU-Berlin `test` sketches, or any Sketchy `test` photo or its sketches. Update this when a trainer changes.
SKETCHY_TRAIN = "Sketchy + sketchy_10class `train` photos and their sketches (`val` only to monitor)"
TRAINING_DATA = {
    "random": "nothing",
    "pretrained": "ImageNet only (no sketches)",
    "classifier": (f"{SKETCHY_TRAIN}, and edge maps of those photos; TU-Berlin `train` sketches (`val` to "
                   "monitor); Quick, Draw! bitmap rows 10-579 (580-599 to monitor) and simplified-stroke rows "
                   "10-24 (`sbir_core.data.splits`)"),
    "classifier_small": f"{SKETCHY_TRAIN}; Quick, Draw! bitmap rows 25-174 (`QUICKDRAW_TRAIN_ROWS`)",
    "triplet": f"{SKETCHY_TRAIN}, and edge maps of those photos",
    "triplet_noedge": SKETCHY_TRAIN,
    "cgan": f"{SKETCHY_TRAIN} as sketch-photo pairs; E2 is ImageNet-only",
    "instance": (f"{SKETCHY_TRAIN} as sketch-photo pairs, and edge maps of those photos; the `train` shoes of the "
                 "shoe set (sbir_core.data.splits.shoe_splits; `val` to choose) with their sketches and edge maps; "
                 "stage 1 is the `classifier` backend's model"),
    "context": ("no sketches and no labels: Sketchy + sketchy_10class `train` photos (their `val` photos to monitor), "
                "the bundled gallery and gallery_photos, each with its edge map (`sbir_core.train.context`)"),
}


def held_out_notes(names: Sequence[str]) -> dict[str, str]:
    """Per backend: what it was trained on (so a reader can see every set here is held out)."""
    return {n: TRAINING_DATA.get(n, "not checked: add it to TRAINING_DATA in sbir_core/heldout.py") for n in names}


def effective_dimension(features: np.ndarray) -> float:
    """Participation ratio (Σλ)²/Σλ² of the features' covariance spectrum: how many directions the
    data really uses. Compared with the synthetic vectors of the scaling test."""
    x = features.astype(np.float64) - features.mean(axis=0)
    lam = np.linalg.svd(x, compute_uv=False) ** 2
    return float(lam.sum() ** 2 / max((lam ** 2).sum(), 1e-30))


def score_set(backend: Any, s: EvalSet) -> dict[str, Any]:
    """One backend on one set: metrics from the full (queries × gallery) score matrix."""
    t0 = time.perf_counter()
    feats = s.gallery.features(backend)
    t1 = time.perf_counter()
    scores = backend.score_matrix(s.queries, s.gallery)                               # (Q, N)
    t2 = time.perf_counter()
    gl = s.gallery_truth
    pid = s.gallery_photo_ids if s.query_photo_ids is not None else None
    m = metrics(scores, s.query_labels, gl, s.query_photo_ids, pid)
    out: dict[str, Any] = {k: m[k] for k in REPORTED if k in m}
    out.update(queries=m["queries"], gallery=m["gallery"], index_seconds=round(t1 - t0, 2),
               query_seconds=round(t2 - t1, 2))
    if s.drawn_kinds and "hit@4" in m:          # every kind drawn here, one without photos counting as a miss
        out["hit@4_all_kinds"] = m["hit@4"] * len(set(s.query_labels)) / s.drawn_kinds
    if "classes" in getattr(backend, "meta", {}):                                    # backends that classify
        cq, cl = s.classified
        acc = classification_accuracy(backend, cq, cl)
        out.update(sketch_top1=acc["top1"], sketch_top5=acc["top5"], classified_queries=len(cq))
    if feats.ndim == 2 and feats.shape[1] > 1 and np.issubdtype(feats.dtype, np.floating) and len(feats) > 2:
        out.update(feature_dim=int(feats.shape[1]), effective_dim=round(effective_dimension(feats), 1))
    return out

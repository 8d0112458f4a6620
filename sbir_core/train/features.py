"""Cache the frozen trunk's features (EfficientNet-Lite0 up to its head conv, ImageNet weights) for every
training image once, so the trained backends only run their top layers on two CPU cores.

The trunk runs through ONNX Runtime (several times faster than torch eager here). Sketches get
several augmented views; photos and their edge maps an original and a mirrored view.
`python -m sbir_core.train.features` fills `.cache/features/`.
"""
from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np
from PIL import Image, ImageOps

from ..config import REPO_ROOT, data_dir
from ..data import readers
from ..data.preprocess import Preprocess, prepare_photo, prepare_sketch, to_tensor
from ..data.render import render_canvas
from ..data.splits import (QUICKDRAW_BITMAP_TRAIN_ROWS, QUICKDRAW_BITMAP_VAL_ROWS, QUICKDRAW_EVAL_ROWS,
                           QUICKDRAW_STROKE_TRAIN_ROWS, split_of, tuberlin_splits)
from .augment import augment_sketch, augment_strokes

CACHE = REPO_ROOT / ".cache" / "features"
PREPROCESS = Preprocess(size=192)   # 192 px keeps one-thread queries near 10 ms; 224 costs ~35% more


@dataclass
class Record:
    path: str
    label: str
    photo_id: str
    split: str
    source: str


def edge_map(photo: Image.Image, min_component: int = 40) -> Image.Image:
    """Canny edges of a photo as a sketch-like image: black lines on white. Thresholds follow the
    photo's own gradient statistics, and specks (texture) smaller than `min_component` px go."""
    import cv2
    g = np.asarray(prepare_photo(photo, 256).convert("L"))
    g = cv2.GaussianBlur(g, (0, 0), 2.0)
    mag = np.hypot(cv2.Sobel(g, cv2.CV_32F, 1, 0), cv2.Sobel(g, cv2.CV_32F, 0, 1))
    high = float(np.percentile(mag, 90))
    e = cv2.Canny(g, 0.5 * high, high, L2gradient=True)
    n, lab, stats, _ = cv2.connectedComponentsWithStats(e, connectivity=8)
    keep = np.zeros(n, bool)
    keep[1:] = stats[1:, cv2.CC_STAT_AREA] >= min_component
    return Image.fromarray(np.where(keep[lab], 0, 255).astype(np.uint8))


def trunk_session(size: int, end: int | None = None):
    """The frozen trunk (stem + blocks[:end], all of them by default) as an ONNX Runtime session
    (exported once into the cache folder)."""
    import onnxruntime as ort
    import torch
    from ..nets.backbone import Trunk, lite0
    path = CACHE / f"trunk_{size}{block_suffix(end)}.onnx"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        trunk = Trunk(lite0(), end).eval()
        torch.onnx.export(trunk, (torch.randn(1, 3, size, size),), str(path), input_names=["input"],
                          output_names=["output"], dynamic_axes={"input": {0: "b"}, "output": {0: "b"}},
                          opset_version=17, dynamo=False)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 2
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def block_suffix(end: int | None) -> str:
    """Cache-name suffix of features taken after blocks[:end]: "" for the whole trunk (None), else "_b<end>"."""
    return "" if end is None else f"_b{end}"


def sketch_trunk_end(config: dict) -> int | None:
    """Where the trunk that feeds a config's sketch network ends (blocks[:end]); None = the whole
    trunk. Names the cached sketch features and the served sketch trunk file."""
    from ..nets.backbone import TRUNK_BLOCKS
    start = config.get("sketch_from", TRUNK_BLOCKS)
    return None if start == TRUNK_BLOCKS else start


def run_trunk(sess, inputs: Iterable[np.ndarray], batch: int = 64) -> np.ndarray:
    """Stream of (3, S, S) inputs -> (N, C, h, w) float16 (the whole trunk: 320, S/32, S/32), a batch
    at a time (inputs are made lazily, so memory holds features, not images)."""
    out, buf = [], []
    for x in inputs:
        buf.append(x)
        if len(buf) == batch:
            out.append(sess.run(None, {"input": np.stack(buf)})[0].astype(np.float16))
            buf = []
    if buf:
        out.append(sess.run(None, {"input": np.stack(buf)})[0].astype(np.float16))
    return np.concatenate(out)


def sketch_records(root: Path) -> list[Record]:
    """Sketches of both Sketchy folders (deduplicated by file name), with their photo's split."""
    seen, recs = set(), []
    for sub in ("sketchy", "sketchy_10class"):
        _, sketches = readers.sketchy(root / sub)
        for it in sketches:
            if it.path.name in seen or it.label is None:
                continue
            seen.add(it.path.name)
            recs.append(Record(str(it.path), it.label, it.photo_id, split_of(it.photo_id) or "train", sub))
    return recs


def photo_records(root: Path) -> list[Record]:
    seen, recs = set(), []
    for sub in ("sketchy", "sketchy_10class"):
        photos, _ = readers.sketchy(root / sub)
        for it in photos:
            if it.photo_id in seen:
                continue
            seen.add(it.photo_id)
            recs.append(Record(str(it.path), it.label, it.photo_id, split_of(it.photo_id) or "train", sub))
    return recs


DEFAULT_PARTS = ("sketches", "photos", "edges", "quickdraw", "strokes", "tuberlin", "quickdraw_eval", "shoes",
                 "oriented")
PARTS = DEFAULT_PARTS + ("block_photos", "oriented_aug")   # on request; block_photos only with an end


def shoe_records(root: Path) -> tuple[list[Record], list[Record]]:
    """The shoe set's photos and sketches, split by shoe (`sbir_core.data.splits.shoe_splits`)."""
    from ..data.splits import shoe_splits
    photos, sketches = readers.shoes(root / "shoes")
    split = shoe_splits([p.photo_id for p in photos], {s.photo_id for s in sketches})
    return ([Record(str(p.path), "shoe", p.photo_id, split[p.photo_id], "shoes") for p in photos],
            [Record(str(s.path), "shoe", s.photo_id, split.get(s.photo_id, "train"), "shoes") for s in sketches])


def quickdraw_records(root: Path) -> list[Record]:
    """Quick, Draw! bitmap rows for training (split `train`) and monitoring (`val`), per mapped class."""
    recs = []
    for label, path in readers.quickdraw_classes(root / "quickdraw" / "numpy_bitmap", ".npy").items():
        n_rows = len(readers.quickdraw_bitmaps(path))
        for split, rows in (("train", QUICKDRAW_BITMAP_TRAIN_ROWS), ("val", QUICKDRAW_BITMAP_VAL_ROWS)):
            recs += [Record(f"{path}#{i}", label, "", split, "quickdraw") for i in rows if i < n_rows]
    return recs


def stroke_records(root: Path, rows: range, split: str) -> list[Record]:
    """Quick, Draw! simplified-stroke drawings (`<file>.ndjson#<line>`) of every mapped class."""
    recs = []
    for label, path in readers.quickdraw_classes(root / "quickdraw" / "simplified", ".ndjson").items():
        for n, _ in enumerate(readers.quickdraw_strokes(path, limit=rows.stop)):
            if n in rows:
                recs.append(Record(f"{path}#{n}", label, "", split, "strokes"))
    return recs


def tuberlin_records(root: Path) -> list[Record]:
    items = readers.tuberlin(root / "tuberlin")
    return [Record(str(it.path), it.label, "", split, "tuberlin")
            for it, split in zip(items, tuberlin_splits(items)) if it.label is not None]


def record_source(path: str) -> Any:
    """What a cached record's path points at, ready for `prepare_sketch`: a file path, a Quick, Draw!
    bitmap (`<file>.npy#<row>`) or a drawing's strokes (`<file>.ndjson#<line>`)."""
    if "#" not in path:
        return path
    f, row = path.rsplit("#", 1)
    if f.endswith(".npy"):
        return readers.quickdraw_bitmaps(f)[int(row)]
    return next(d for n, d in enumerate(readers.quickdraw_strokes(f, limit=int(row) + 1)) if n == int(row))["strokes"]


def sketch_image(path: str) -> Any:
    """A cached sketch record as something `prepare_sketch` reads (strokes drawn as on the canvas)."""
    src = record_source(path)
    return render_canvas(src) if isinstance(src, list) else src


def build(views: int = 4, seed: int = 0, end: int | None = None, parts: Iterable[str] = DEFAULT_PARTS) -> None:
    """Cache features after the trunk's blocks[:end] for the chosen parts (all by default):
    Sketchy sketches, photos and their edge maps, Quick, Draw! bitmaps and strokes, TU-Berlin
    sketches, and the held-out Quick, Draw! doodles (to report on, never to train on). With an `end`
    (a sketch branch that trains the trunk's last blocks) photos are skipped: the photo branch keeps
    the whole frozen trunk; `block_photos` (only with an `end`) caches Sketchy and shoe photos there
    (`photos_b<end>`, `shoe_photos_b<end>`: original, mirrored) for a photo branch that trains blocks too."""
    if "block_photos" in set(parts) and end is None:
        raise ValueError("block_photos needs --end (the whole trunk's photos are the `photos` part)")
    root = data_dir()
    CACHE.mkdir(parents=True, exist_ok=True)
    sess = trunk_session(PREPROCESS.size, end)
    suffix = block_suffix(end)
    rng = np.random.default_rng(seed)
    pp = PREPROCESS
    parts = set(parts)
    t0 = time.time()

    def save(name: str, recs: list[Record], feats: np.ndarray) -> None:
        nonlocal t0
        name += suffix
        np.save(CACHE / f"{name}.npy", feats)
        (CACHE / f"{name}.json").write_text(json.dumps([asdict(r) for r in recs]))
        print(f"{name}: {feats.shape} in {time.time() - t0:.0f}s", flush=True)
        t0 = time.time()

    def image_views(recs: list[Record], n_views: int) -> Iterator[np.ndarray]:
        """View 0 clean, the rest augmented as images."""
        for r in recs:
            base = prepare_sketch(sketch_image(r.path), pp.size, pp.margin)
            yield to_tensor(base, pp)
            for _ in range(n_views - 1):
                yield to_tensor(augment_sketch(base, rng), pp)

    def cache_views(name: str, recs: list[Record], views_iter: Iterator[np.ndarray], n_views: int) -> None:
        f = run_trunk(sess, views_iter)                                           # (N * V, 320, h, w)
        save(name, recs, f.reshape(len(recs), n_views, *f.shape[1:]))

    if "sketches" in parts:                                                       # (N, V, 320, 6, 6)
        recs = sketch_records(root)
        cache_views("sketches", recs, image_views(recs, views), views)

    precs = photo_records(root) if parts & {"photos", "edges"} else []

    def mirrored(r: Record) -> tuple[Image.Image, Image.Image]:
        im = Image.open(r.path).convert("RGB")
        return im, ImageOps.mirror(im)
    if "photos" in parts and not suffix:                                          # (N, 2, ...): original, mirrored
        cache_views("photos", precs, (to_tensor(prepare_photo(v, pp.size), pp) for r in precs for v in mirrored(r)), 2)
    if "block_photos" in parts:                    # photos after blocks[:end]: a photo branch that trains blocks too
        brecs = photo_records(root)
        cache_views("photos", brecs, (to_tensor(prepare_photo(v, pp.size), pp) for r in brecs for v in mirrored(r)), 2)
        shoe_photos, _ = shoe_records(root)
        cache_views("shoe_photos", shoe_photos, (to_tensor(prepare_photo(v, pp.size), pp)
                                                 for r in shoe_photos for v in mirrored(r)), 2)
    if "edges" in parts:
        cache_views("edges", precs, (to_tensor(prepare_sketch(edge_map(v), pp.size, pp.margin), pp)
                                     for r in precs for v in mirrored(r)), 2)

    if "quickdraw" in parts:                       # bitmaps (28 px, white on black): one view, half augmented
        qrecs = quickdraw_records(root)

        def bitmap_views() -> Iterator[np.ndarray]:
            for r in qrecs:
                base = prepare_sketch(sketch_image(r.path), pp.size, pp.margin)
                yield to_tensor(augment_sketch(base, rng) if r.split == "train" and rng.random() < 0.5 else base, pp)
        cache_views("quickdraw", qrecs, bitmap_views(), 1)

    if "strokes" in parts:                         # drawn like the canvas: view 0 as is, the rest stroke-augmented
        srecs = stroke_records(root, QUICKDRAW_STROKE_TRAIN_ROWS, "train")

        def stroke_views() -> Iterator[np.ndarray]:
            for r in srecs:
                strokes = record_source(r.path)
                yield to_tensor(prepare_sketch(render_canvas(strokes), pp.size, pp.margin), pp)
                for _ in range(views - 1):
                    im = render_canvas(augment_strokes(strokes, rng), rng.uniform(2.0, 7.0))
                    yield to_tensor(prepare_sketch(im, pp.size, pp.margin), pp)
        cache_views("strokes", srecs, stroke_views(), views)

    if "tuberlin" in parts:
        trecs = tuberlin_records(root)
        cache_views("tuberlin", trecs, image_views(trecs, views), views)

    def oriented_views(recs: list[Record], augmented: bool) -> Iterator[np.ndarray]:
        """Instance-level pairs keep orientation: clean, mirrored, and (`augmented`) an augmented
        sketch that is never flipped, and that mirrored; even views pair with a photo's view 0,
        odd views with its mirrored view 1."""
        for r in recs:
            base = prepare_sketch(sketch_image(r.path), pp.size, pp.margin)
            ims = [base, ImageOps.mirror(base)]
            if augmented:
                aug = augment_sketch(base, rng, flip=False)
                ims += [aug, ImageOps.mirror(aug)]
            for im in ims:
                yield to_tensor(im, pp)

    if "shoes" in parts:                           # the instance backend's shoe pairs: shoe_{sketches,photos,edges}
        shoe_photos, shoe_sketches = shoe_records(root)
        cache_views("shoe_sketches", shoe_sketches, oriented_views(shoe_sketches, True), 4)
        if not suffix:
            cache_views("shoe_photos", shoe_photos, (to_tensor(prepare_photo(v, pp.size), pp)
                                                     for r in shoe_photos for v in mirrored(r)), 2)
        cache_views("shoe_edges", shoe_photos, (to_tensor(prepare_sketch(edge_map(v), pp.size, pp.margin), pp)
                                                for r in shoe_photos for v in mirrored(r)), 2)

    if "oriented" in parts:                        # Sketchy sketches for the instance backend: clean and mirrored
        recs = sketch_records(root)
        cache_views("sketches_oriented", recs, oriented_views(recs, False), 2)
    if "oriented_aug" in parts:                    # ... plus an augmented sketch (never flipped) and its mirror
        recs = sketch_records(root)
        cache_views("sketches_oriented_aug", recs, oriented_views(recs, True), 4)

    if "quickdraw_eval" in parts:                  # the benchmark's held-out doodles, for the trainers' reports
        erecs = stroke_records(root, QUICKDRAW_EVAL_ROWS, "test")
        cache_views("quickdraw_eval", erecs, (to_tensor(prepare_sketch(render_canvas(record_source(r.path)),
                                                                       pp.size, pp.margin), pp) for r in erecs), 1)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--views", type=int, default=4)
    ap.add_argument("--end", type=int, default=None,
                    help="features after the trunk's MBConv blocks[:END] (default: all 16 of them)")
    ap.add_argument("--parts", default=",".join(DEFAULT_PARTS), help=f"comma-separated subset of {','.join(PARTS)}")
    args = ap.parse_args()
    unknown = set(args.parts.split(",")) - set(PARTS)
    if unknown:
        ap.error(f"unknown parts {sorted(unknown)}; choose from {', '.join(PARTS)}")
    if "block_photos" in args.parts.split(",") and args.end is None:
        ap.error("--parts block_photos needs --end N (it writes photos_bN, shoe_photos_bN)")
    build(args.views, end=args.end, parts=args.parts.split(","))

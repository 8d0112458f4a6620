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
from typing import Iterable, Iterator

import numpy as np
from PIL import Image, ImageOps

from ..config import REPO_ROOT, data_dir
from ..data import readers
from ..data.preprocess import Preprocess, prepare_photo, prepare_sketch, to_tensor
from ..data.splits import split_of
from .augment import augment_sketch

CACHE = REPO_ROOT / ".cache" / "features"
PREPROCESS = Preprocess(size=192)   # 192 px keeps one-thread queries near 10 ms; 224 costs ~35% more
QUICKDRAW_TRAIN_ROWS = slice(25, 175)   # bitmap rows 0-24 are the stroke drawings kept for evaluation


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


def build(views: int = 4, seed: int = 0, end: int | None = None) -> None:
    """Cache sketches, photos, edge maps and Quick, Draw! features after the trunk's blocks[:end].
    With an `end` (a sketch branch that trains the trunk's last blocks) photos are skipped: the photo
    branch keeps the whole frozen trunk."""
    root = data_dir()
    CACHE.mkdir(parents=True, exist_ok=True)
    sess = trunk_session(PREPROCESS.size, end)
    suffix = block_suffix(end)
    rng = np.random.default_rng(seed)
    pp = PREPROCESS

    def save(name: str, recs: list[Record], feats: np.ndarray) -> None:
        name += suffix
        np.save(CACHE / f"{name}.npy", feats)
        (CACHE / f"{name}.json").write_text(json.dumps([asdict(r) for r in recs]))
        print(f"{name}: {feats.shape} in {time.time() - t0:.0f}s", flush=True)

    # Sketches: view 0 clean, the rest augmented.  -> (N, V, 320, 7, 7)
    t0 = time.time()
    recs = sketch_records(root)

    def sketch_views() -> Iterator[np.ndarray]:
        for r in recs:
            base = prepare_sketch(r.path, pp.size, pp.margin)
            yield to_tensor(base, pp)
            for _ in range(views - 1):
                yield to_tensor(augment_sketch(base, rng), pp)
    feats = run_trunk(sess, sketch_views())
    save("sketches", recs, feats.reshape(len(recs), views, *feats.shape[1:]))

    # Photos and their edge maps: original and mirrored.  -> (N, 2, 320, 7, 7)
    t0 = time.time()
    precs = photo_records(root)

    def mirrored(r: Record) -> tuple[Image.Image, Image.Image]:
        im = Image.open(r.path).convert("RGB")
        return im, ImageOps.mirror(im)
    if not suffix:
        f = run_trunk(sess, (to_tensor(prepare_photo(v, pp.size), pp) for r in precs for v in mirrored(r)))
        save("photos", precs, f.reshape(len(precs), 2, *f.shape[1:]))
        t0 = time.time()
    f = run_trunk(sess, (to_tensor(prepare_sketch(edge_map(v), pp.size, pp.margin), pp)
                         for r in precs for v in mirrored(r)))
    save("edges", precs, f.reshape(len(precs), 2, *f.shape[1:]))

    # Quick, Draw! bitmaps (white on black, 28 px) for the classifier's extra classes.  -> (N, 1, ...)
    t0 = time.time()
    qrecs: list[Record] = []

    def quickdraw_views() -> Iterator[np.ndarray]:
        for label, path in readers.quickdraw_classes(root / "quickdraw" / "numpy_bitmap", ".npy").items():
            bm = readers.quickdraw_bitmaps(path)[QUICKDRAW_TRAIN_ROWS]
            for n, a in enumerate(bm):
                try:
                    base = prepare_sketch(a, pp.size, pp.margin)
                except ValueError:
                    continue
                qrecs.append(Record(f"{path}#{QUICKDRAW_TRAIN_ROWS.start + n}", label, "", "train", "quickdraw"))
                yield to_tensor(augment_sketch(base, rng) if rng.random() < 0.5 else base, pp)
    f = run_trunk(sess, quickdraw_views())
    save("quickdraw", qrecs, f[:, None])


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--views", type=int, default=4)
    ap.add_argument("--end", type=int, default=None,
                    help="features after the trunk's MBConv blocks[:END] (default: all 16 of them)")
    args = ap.parse_args()
    build(args.views, end=args.end)

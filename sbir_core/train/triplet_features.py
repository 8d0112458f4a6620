"""Cache what the `triplet` joint embedding trains on: `python -m sbir_core.train.triplet_features` (~15 min, 2 cores).

The joint embedding sits on parts that stay frozen while it trains:
- sketches (and photo edge maps, the edge branch) go through the `classifier` backend's trained sketch
  trunk (ImageNet stem + blocks[:8], then its trained blocks 8-15 and head conv): the pooled feature
  (1280) and the grid before the head conv (320 x 6 x 6, kept only where sketch-photo pairs need it);
- photos go through the frozen ImageNet trunk: pooled (1280), grid (320 x 6 x 6) and the photo
  labeller's P(kind) (`classifier_photo_head.onnx`), the photo branch's prior over every kind.
Writes `.cache/features/joint_<set>.npz` (float16) + `.json` (one record per row).
"""
from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict
from typing import Iterator

import numpy as np
import torch
from PIL import Image, ImageOps
from torch import nn

from ..config import data_dir
from ..data.preprocess import prepare_photo, prepare_sketch, to_tensor
from ..data.render import render_canvas
from ..data.splits import QUICKDRAW_STROKE_TRAIN_ROWS
from ..nets.backbone import Top, Trunk, freeze, lite0
from .augment import augment_sketch, augment_strokes
from .features import (CACHE, PREPROCESS, Record, edge_map, photo_records, quickdraw_records, record_source,
                       shoe_records, sketch_image, sketch_records, stroke_records, tuberlin_records)

QUICKDRAW_ROWS_PER_KIND = 80    # of the classifier's bitmap training rows 10-579: enough to place a kind
SETS = ("sketches", "photos", "edges", "shoe_sketches", "shoe_photos", "shoe_edges", "tuberlin", "quickdraw",
        "strokes")


class SketchEncoder(nn.Module):
    """The classifier's sketch trunk, frozen: image -> (pooled (B, 1280), grid (B, 320, 6, 6))."""

    def __init__(self, ck: dict):
        super().__init__()
        from ..nets.heads import ClassifierHead
        start = ck["config"]["sketch_from"]
        head = ClassifierHead(len(ck["classes"]), start=start)
        head.load_state_dict({k: v.float() for k, v in ck["state_dict"].items()})
        self.trunk, self.top = Trunk(lite0(), start), head.top
        freeze(self)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        g = self.trunk(x)
        for b in self.top.blocks:
            g = b(g)
        pooled = self.top.act(self.top.bn1(self.top.conv_head(g))).mean(dim=(2, 3))
        return pooled, g


class PhotoEncoder(nn.Module):
    """The frozen ImageNet trunk and the photo labeller: image -> (pooled, grid, P(kind))."""

    def __init__(self, ck: dict):
        super().__init__()
        from . import photo_labeller
        net = lite0()
        self.trunk, self.top = Trunk(net), Top(net)
        self.labeller = photo_labeller.labeller(ck)
        freeze(self)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        g = self.trunk(x)
        return self.top(g), g, self.labeller(g)


def session(module: nn.Module, name: str, n_out: int):
    import onnxruntime as ort
    path = CACHE / f"joint_{name}.onnx"
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.onnx.export(module, (torch.randn(1, 3, PREPROCESS.size, PREPROCESS.size),), str(path),
                      input_names=["input"], output_names=[f"o{i}" for i in range(n_out)],
                      dynamic_axes={"input": {0: "b"}, **{f"o{i}": {0: "b"} for i in range(n_out)}},
                      opset_version=17, dynamo=False)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 2
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def run(sess, inputs: Iterator[np.ndarray], keep: tuple[int, ...], batch: int = 64) -> list[np.ndarray]:
    """Stream of (3, S, S) inputs -> the session's outputs `keep`, float16, concatenated."""
    outs: list[list[np.ndarray]] = [[] for _ in keep]
    buf: list[np.ndarray] = []

    def flush() -> None:
        res = sess.run(None, {"input": np.stack(buf)})
        for o, k in zip(outs, keep):
            o.append(res[k].astype(np.float16))
        buf.clear()
    for x in inputs:
        buf.append(x)
        if len(buf) == batch:
            flush()
    if buf:
        flush()
    return [np.concatenate(o) for o in outs]


def build(sets: tuple[str, ...] = SETS, seed: int = 0) -> None:
    root = data_dir()
    ck = torch.load("models/checkpoints/classifier.pt", map_location="cpu", weights_only=False)
    sketch_sess = session(SketchEncoder(ck).eval(), "sketch", 2)
    photo_sess = session(PhotoEncoder(ck).eval(), "photo", 3)
    rng = np.random.default_rng(seed)
    pp = PREPROCESS

    def save(name: str, recs: list[Record], views: int, **arrays: np.ndarray) -> None:
        arrays = {k: v.reshape(len(recs), views, *v.shape[1:]) for k, v in arrays.items()}
        np.savez(CACHE / f"joint_{name}.npz", **arrays)
        (CACHE / f"joint_{name}.json").write_text(json.dumps([asdict(r) for r in recs]))
        print(f"joint_{name}: {len(recs)} x {views} views {[a.shape for a in arrays.values()]} "
              f"({time.time() - t0:.0f} s)", flush=True)

    def sketch_views(recs: list[Record], views: int, mirror: bool) -> Iterator[np.ndarray]:
        """View 0 clean; with `mirror` view 1 mirrored (pairs keep orientation), the rest augmented."""
        for r in recs:
            base = prepare_sketch(sketch_image(r.path), pp.size, pp.margin)
            yield to_tensor(base, pp)
            for v in range(1, views):
                yield to_tensor(ImageOps.mirror(base) if mirror and v == 1 else augment_sketch(base, rng), pp)

    def photo_views(recs: list[Record], edges: bool) -> Iterator[np.ndarray]:
        for r in recs:
            im = Image.open(r.path).convert("RGB")
            for v in (im, ImageOps.mirror(im)):
                yield to_tensor(prepare_sketch(edge_map(v), pp.size, pp.margin) if edges else prepare_photo(v, pp.size), pp)

    t0 = time.time()
    shoe_photos, shoe_sketches = shoe_records(root)
    precs = [r for r in photo_records(root) if r.split != "test"]
    shoe_photos = [r for r in shoe_photos if r.split != "test"]
    for name, recs, edges in (("photos", precs, False), ("edges", precs, True),
                              ("shoe_photos", shoe_photos, False), ("shoe_edges", shoe_photos, True)):
        if name not in sets:
            continue
        if edges:
            pooled, grid = run(sketch_sess, photo_views(recs, True), (0, 1))
            save(name, recs, 2, pooled=pooled, grid=grid)
        else:
            pooled, grid, probs = run(photo_sess, photo_views(recs, False), (0, 1, 2))
            save(name, recs, 2, pooled=pooled, grid=grid, probs=probs)
    if "sketches" in sets:
        recs = [r for r in sketch_records(root) if r.split != "test"]
        pooled, grid = run(sketch_sess, sketch_views(recs, 3, True), (0, 1))
        save("sketches", recs, 3, pooled=pooled, grid=grid)
    if "shoe_sketches" in sets:
        recs = [r for r in shoe_sketches if r.split != "test"]
        pooled, grid = run(sketch_sess, sketch_views(recs, 3, True), (0, 1))
        save("shoe_sketches", recs, 3, pooled=pooled, grid=grid)
    if "tuberlin" in sets:
        recs = [r for r in tuberlin_records(root) if r.split != "test"]
        (pooled,) = run(sketch_sess, sketch_views(recs, 2, False), (0,))
        save("tuberlin", recs, 2, pooled=pooled)
    if "quickdraw" in sets:
        per_kind: dict[str, int] = {}
        recs = []
        for r in quickdraw_records(root):
            if r.split == "train" and per_kind.get(r.label, 0) < QUICKDRAW_ROWS_PER_KIND:
                per_kind[r.label] = per_kind.get(r.label, 0) + 1
                recs.append(r)
        (pooled,) = run(sketch_sess, sketch_views(recs, 2, False), (0,))
        save("quickdraw", recs, 2, pooled=pooled)
    if "strokes" in sets:
        recs = stroke_records(root, QUICKDRAW_STROKE_TRAIN_ROWS, "train")

        def stroke_views() -> Iterator[np.ndarray]:
            for r in recs:
                strokes = record_source(r.path)
                yield to_tensor(prepare_sketch(render_canvas(strokes), pp.size, pp.margin), pp)
                im = render_canvas(augment_strokes(strokes, rng), rng.uniform(2.0, 7.0))
                yield to_tensor(prepare_sketch(im, pp.size, pp.margin), pp)
        (pooled,) = run(sketch_sess, stroke_views(), (0,))
        save("strokes", recs, 2, pooled=pooled)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sets", default=",".join(SETS), help=f"comma-separated subset of {','.join(SETS)}")
    args = ap.parse_args()
    build(tuple(args.sets.split(",")))

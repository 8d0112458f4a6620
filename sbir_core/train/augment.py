"""Sketch augmentations used in training (numpy + Pillow): the reference system's scale, shear,
zoom and flip, plus what sketches need: stroke width, small rotations and missing strokes."""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
from PIL import Image, ImageFilter


def augment_sketch(im: Image.Image, rng: np.random.Generator, flip: bool = True) -> Image.Image:
    """A prepared grey sketch (ink on white, square) -> a random variant of the same size. `flip=False`
    keeps its orientation (instance-level pairs: a mirrored sketch must meet the mirrored photo)."""
    s = im.size[0]
    if rng.random() < 0.5 and flip:
        im = im.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    if rng.random() < 0.35:                                   # thicker strokes
        im = im.filter(ImageFilter.MinFilter(3))
    scale = rng.uniform(0.8, 1.1)
    angle = math.radians(rng.uniform(-12, 12))
    shear = rng.uniform(-0.2, 0.2)
    tx, ty = rng.uniform(-0.06, 0.06, size=2) * s
    # inverse affine map about the centre: rotation * shear * scale
    c, sn = math.cos(angle), math.sin(angle)
    m = np.array([[c, -sn], [sn, c]]) @ np.array([[1, shear], [0, 1]]) * scale
    inv = np.linalg.inv(m)
    cx = cy = s / 2
    off = np.array([cx, cy]) - inv @ np.array([cx + tx, cy + ty])
    im = im.transform(im.size, Image.Transform.AFFINE, (inv[0, 0], inv[0, 1], off[0], inv[1, 0], inv[1, 1], off[1]),
                      resample=Image.Resampling.BILINEAR, fillcolor=255)
    if rng.random() < 0.25:                                   # some strokes missing
        a = np.asarray(im).copy()
        for _ in range(rng.integers(1, 3)):
            w, h = (rng.uniform(0.15, 0.35, size=2) * s).astype(int)
            x, y = rng.integers(0, s - w), rng.integers(0, s - h)
            a[y:y + h, x:x + w] = 255
        im = Image.fromarray(a)
    return im


def augment_strokes(strokes: Sequence[tuple[np.ndarray, np.ndarray]], rng: np.random.Generator
                    ) -> list[tuple[np.ndarray, np.ndarray]]:
    """Stroke-level variants of a drawing (Quick, Draw! coordinates): drop a stroke, jitter the
    points, mirror, and a random affine (rotation, anisotropic scale, shear). Drawn afterwards with
    a random pen width, so the model meets the variety of a browser canvas, not one rendering."""
    strokes = [(np.asarray(x, float), np.asarray(y, float)) for x, y in strokes if len(x)]
    if len(strokes) > 2 and rng.random() < 0.3:
        del strokes[int(rng.integers(len(strokes)))]
    xs = np.concatenate([s[0] for s in strokes])
    ys = np.concatenate([s[1] for s in strokes])
    cx, cy = (xs.min() + xs.max()) / 2, (ys.min() + ys.max()) / 2
    extent = max(xs.max() - xs.min(), ys.max() - ys.min(), 1.0)
    a = math.radians(rng.uniform(-15, 15))
    m = (np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
         @ np.array([[1.0, rng.uniform(-0.2, 0.2)], [0.0, 1.0]])
         @ np.diag(rng.uniform(0.8, 1.2, size=2)))
    if rng.random() < 0.5:
        m = m @ np.diag([-1.0, 1.0])
    out = []
    for x, y in strokes:
        p = np.stack([x - cx, y - cy]) + rng.normal(0, 0.012 * extent, size=(2, len(x)))   # (2, n)
        q = m @ p
        out.append((q[0], q[1]))
    return out

"""Sketch augmentations used in training (numpy + Pillow): the reference system's scale, shear,
zoom and flip, plus what sketches need: stroke width, small rotations and missing strokes."""
from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageFilter


def augment_sketch(im: Image.Image, rng: np.random.Generator) -> Image.Image:
    """A prepared grey sketch (ink on white, square) -> a random variant of the same size."""
    s = im.size[0]
    if rng.random() < 0.5:
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

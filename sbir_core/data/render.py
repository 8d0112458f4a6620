"""Draw stroke data (Quick, Draw!, TU-Berlin) the way the browser canvas does: black anti-aliased
lines with round joins on white, at a chosen size and pen width."""
from __future__ import annotations

from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw

SUPERSAMPLE = 4
CANVAS_SIZE = 400          # px: the app's drawing canvas, where stroke data is drawn as a visitor would
CANVAS_LINE_WIDTH = 3.5    # px: the canvas pen (3-4 px)


def render_strokes(strokes: Sequence[tuple[np.ndarray, np.ndarray]], size: int = 256, line_width: float = 3.0,
                   box: tuple[float, float] | None = None, margin: float = 0.06,
                   keep_fraction: float = 1.0) -> Image.Image:
    """Strokes (xs, ys per stroke) -> grey 'L' image of side `size`.

    `box` is the drawing's coordinate extent (w, h); default: the strokes' own bounding box, so the
    drawing fills the frame. `keep_fraction` < 1 keeps only the first strokes (partial sketches).
    """
    strokes = [s for s in strokes if len(s[0])]
    if keep_fraction < 1.0 and strokes:
        strokes = strokes[: max(1, int(round(len(strokes) * keep_fraction)))]
    ss = SUPERSAMPLE
    img = Image.new("L", (size * ss, size * ss), 255)
    if not strokes:
        return img.resize((size, size), Image.Resampling.BOX)
    xs = np.concatenate([s[0] for s in strokes])
    ys = np.concatenate([s[1] for s in strokes])
    if box is None:
        x0, y0 = xs.min(), ys.min()
        w, h = max(xs.max() - x0, 1e-6), max(ys.max() - y0, 1e-6)
    else:
        x0, y0, (w, h) = 0.0, 0.0, box
    side = max(w, h)
    inner = size * ss * (1 - 2 * margin)
    scale = inner / side
    ox = size * ss * margin + (inner - w * scale) / 2
    oy = size * ss * margin + (inner - h * scale) / 2
    draw = ImageDraw.Draw(img)
    lw = max(1, int(round(line_width * ss)))
    r = lw / 2
    for sx, sy in strokes:
        pts = [(ox + (x - x0) * scale, oy + (y - y0) * scale) for x, y in zip(sx, sy)]
        if len(pts) > 1:
            draw.line(pts, fill=0, width=lw, joint="curve")
        for x, y in (pts[0], pts[-1]):           # round caps, as the canvas draws them
            draw.ellipse((x - r, y - r, x + r, y + r), fill=0)
    return img.resize((size, size), Image.Resampling.BOX)


def render_canvas(strokes: Sequence[tuple[np.ndarray, np.ndarray]], line_width: float = CANVAS_LINE_WIDTH) -> Image.Image:
    """Stroke data drawn as a visitor draws it on the app's canvas: what training and the benchmark's
    doodles both use, so the two never drift apart."""
    return render_strokes(strokes, size=CANVAS_SIZE, line_width=line_width)

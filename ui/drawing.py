"""The canvas's drawing (Fabric.js objects) as a sketch image: sizing the canvas to the screen, scaling
strokes between sizes, rendering. No Streamlit.
"""
from __future__ import annotations

import io
from typing import Any

import numpy as np
from PIL import Image, ImageDraw


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
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


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

"""The embedding map's colours, label placement and hover thumbnails. No Streamlit."""
from __future__ import annotations

import base64
import io
from typing import Any, Sequence

import numpy as np

from sbir_core.data.preprocess import ImageInputError, load_image


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


def map_thumbnail_url(emb: Any, i: int, size: int = 72) -> str:
    """A small data-URL preview of map point i for the hover tooltip ('' when its file is not here)."""
    source = emb.image(i)
    if source is None:
        return ""
    try:
        im = load_image(source).convert("RGB")
    except ImageInputError:
        return ""
    im.thumbnail((size, size))
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=70)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode()

"""The one preprocessing path for sketches and photos, shared by training and serving.

Everything here is numpy + Pillow, so serving never needs torch. Each model's JSON carries the
`Preprocess` settings it was trained with, and serving rebuilds them from there.
"""
from __future__ import annotations

import io
import warnings
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageChops, ImageFilter, ImageOps, UnidentifiedImageError
# Register exactly the decoders FORMATS names (Image.open(formats=...) needs them loaded).
from PIL import (BmpImagePlugin, GifImagePlugin, JpegImagePlugin, PngImagePlugin, TiffImagePlugin,  # noqa: F401
                 WebPImagePlugin)

MAX_PIXELS = 40_000_000      # larger images are refused before they are decoded
MAX_BYTES = 50 * 1024 * 1024
INK_THRESHOLD = 200          # grey value below which a pixel counts as ink (on white)
MIN_INK_FRACTION = 0.0002    # fewer ink pixels than this fraction of the image (and < 10) = blank
PAPER_WHITE = 250            # a sketch with half its pixels at least this light lies on a clean white ground
PAPER_LEVEL = 235            # after evening out the light, paper (and its grain) at or above this reads white
ALPHA_MODES = ("RGBA", "LA", "PA", "P")   # images that may carry transparency (the canvas sends RGBA)
SHEET_INSET = 4              # px of the 128-px light map cut off a sheet's edge (the light map spreads ~3 px)
# The formats the app documents (and the datasets use); Pillow's other decoders stay out of reach.
# (Phone JPEGs that Pillow opens as MPO come through the JPEG decoder.)
FORMATS = ("PNG", "JPEG", "WEBP", "BMP", "GIF", "TIFF")
FORMAT_NAMES = "PNG, JPEG, WebP, BMP, GIF or TIFF"
EXIF_ORIENTATION = 0x0112
# An upload that declares far more pixels than its bytes can plausibly hold is a decompression
# bomb in all but name (a 40 MP PNG of 13 KB); photos hold ~2-20 pixels per byte, line-art scans < ~100.
BOMB_MIN_PIXELS = 4_000_000
BOMB_PIXELS_PER_BYTE = 250


class ImageInputError(ValueError):
    """An image that cannot be used, with a message meant for the person who gave it."""


class BlankSketchError(ImageInputError):
    """The sketch has (almost) no strokes."""


@dataclass(frozen=True)
class Preprocess:
    """How a model's inputs are made; saved in the model's JSON and read back by serving."""
    size: int = 224
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)
    margin: float = 0.08          # white border around the sketch's ink, as a fraction of its side

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Preprocess":
        return cls(size=int(d["size"]), mean=tuple(d["mean"]), std=tuple(d["std"]),
                   margin=float(d.get("margin", 0.08)))


def load_image(source: Any) -> Image.Image:
    """Open an image from a path, bytes, a file object, a numpy array or a PIL image, safely.

    The one guarded entry for every image: refuses non-images, formats outside FORMATS, truncated
    files, decompression bombs (declared size checked before decoding) and unusable arrays with an
    ImageInputError; turns phone photos upright by their EXIF orientation.
    """
    if isinstance(source, Image.Image):
        _check_pixels(*source.size)
        return _upright(source)
    if isinstance(source, np.ndarray):
        return _from_array(source)
    data = _read_bytes(source)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(data), formats=FORMATS)
            _check_pixels(*im.size)
            im.load()
    except ImageInputError:
        raise
    except (UnidentifiedImageError, Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        if isinstance(e, UnidentifiedImageError):
            raise ImageInputError(f"this file is not an image in a supported format ({FORMAT_NAMES})") from None
        raise ImageInputError("the image is too large to open safely") from None
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        raise ImageInputError(f"the image is damaged or truncated ({e})") from None
    return _upright(im)


def probe_image(source: Any) -> tuple[int, int]:
    """Check an image without decoding its pixels: readable header, supported format, size within
    MAX_PIXELS, intact chunk structure where the format has one (PNG). Returns (width, height).
    Cheap enough for every uploaded file; the full decode happens once, when the photo is indexed."""
    data = _read_bytes(source)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(data), formats=FORMATS)
            size = im.size
            _check_pixels(*size)
            pixels = size[0] * size[1]
            if pixels > BOMB_MIN_PIXELS and pixels > BOMB_PIXELS_PER_BYTE * len(data):
                raise ImageInputError(f"refused: {size[0]}×{size[1]} pixels in only {len(data) // 1024} KB "
                                      f"(a decompression bomb, or an empty picture)")
            im.verify()
    except ImageInputError:
        raise
    except UnidentifiedImageError:
        raise ImageInputError(f"this file is not an image in a supported format ({FORMAT_NAMES})") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageInputError("the image is too large to open safely") from None
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        raise ImageInputError(f"the image is damaged or truncated ({e})") from None
    return size


def _read_bytes(source: Any) -> bytes:
    """A path, bytes or file object -> its bytes, refusing empty and oversized files."""
    if isinstance(source, (str, Path)):
        try:
            if Path(source).stat().st_size > MAX_BYTES:
                raise ImageInputError(f"the file is too large (at most {MAX_BYTES // 2**20} MB)")
            data = Path(source).read_bytes()
        except OSError as e:
            raise ImageInputError(f"cannot read {source}: {e.strerror or e}") from None
    elif isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
    elif hasattr(source, "read"):
        data = source.read(MAX_BYTES + 1)
        if not isinstance(data, (bytes, bytearray)):
            raise ImageInputError(f"expected a binary file, its read() gave {type(data).__name__}")
    else:
        raise ImageInputError(f"expected an image (PIL image, numpy array, bytes, path or file), "
                              f"got {type(source).__name__}")
    if not data:
        raise ImageInputError("the file is empty")
    if len(data) > MAX_BYTES:
        raise ImageInputError(f"the file is too large ({len(data) // 2**20} MB; at most {MAX_BYTES // 2**20} MB)")
    return bytes(data)


def _check_pixels(w: int, h: int) -> None:
    if w * h > MAX_PIXELS:
        raise ImageInputError(f"the image is too large ({w}×{h} pixels; at most {MAX_PIXELS // 10**6} megapixels)")
    if w < 1 or h < 1:
        raise ImageInputError(f"the image has no pixels ({w}×{h})")


def _upright(im: Image.Image) -> Image.Image:
    """Apply the EXIF orientation (phone photos are stored rotated); untouched when there is none."""
    try:
        orientation = im.getexif().get(EXIF_ORIENTATION, 1)
    except Exception:  # a malformed EXIF block must not make the image unusable
        return im
    if orientation in (2, 3, 4, 5, 6, 7, 8):
        return ImageOps.exif_transpose(im)
    return im


def _from_array(a: np.ndarray) -> Image.Image:
    """A numpy image -> PIL, after checking everything a caller can get wrong: shape, dtype, size,
    finite values and value range. (H, W) grey, (H, W, 1|2|3|4) grey / grey+alpha / RGB / RGBA;
    uint8 as is, bool as black/white, other integers and floats must lie in [0, 1] or [0, 255]."""
    if a.ndim not in (2, 3) or a.size == 0 or (a.ndim == 3 and a.shape[2] not in (1, 2, 3, 4)):
        hint = (": channels come first, transpose it to (H, W, C)" if a.ndim == 3 and a.shape[0] in (1, 2, 3, 4)
                and a.shape[2] > 4 else "")
        raise ImageInputError(f"expected an image array of shape (H, W) or (H, W, C) with C in 1-4, "
                              f"got shape {a.shape}{hint}")
    _check_pixels(a.shape[1], a.shape[0])
    if a.dtype == np.bool_:
        a = a.astype(np.uint8) * 255
    elif a.dtype == np.uint16:                                    # 16-bit images: full range
        a = (a // 257).astype(np.uint8)
    elif a.dtype != np.uint8:
        if not (np.issubdtype(a.dtype, np.integer) or np.issubdtype(a.dtype, np.floating)):
            raise ImageInputError(f"expected a numeric image array (uint8, integer or float), got dtype {a.dtype}")
        bad = np.size(a) - np.count_nonzero(np.isfinite(a)) if np.issubdtype(a.dtype, np.floating) else 0
        if bad:
            raise ImageInputError(f"the image array has {bad} NaN or infinite values")
        lo, hi = float(a.min()), float(a.max())
        if lo < 0 or hi > 255:
            raise ImageInputError(f"image array values must lie in [0, 1] or [0, 255], got [{lo:g}, {hi:g}]")
        scale = 255.0 if hi <= 1.0 and np.issubdtype(a.dtype, np.floating) else 1.0
        a = np.clip(np.rint(a.astype(np.float32) * scale), 0, 255).astype(np.uint8)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if a.ndim == 3 and a.shape[2] == 2:                          # grey + alpha
        a = np.concatenate([np.repeat(a[:, :, :1], 3, axis=2), a[:, :, 1:]], axis=2)
    return Image.fromarray(np.ascontiguousarray(a))


@lru_cache(maxsize=4)
def _white(size: tuple[int, int]) -> Image.Image:
    """An opaque white ground, kept: a fresh one per canvas query costs more than the compositing."""
    return Image.new("RGBA", size, (255, 255, 255, 255))


def _to_rgb_on_white(im: Image.Image) -> Image.Image:
    """Any mode (palette, 16-bit, float, CMYK, with or without alpha) -> RGB, transparency on white."""
    if im.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        a = np.asarray(im, dtype=np.float64)
        lo, hi = float(a.min()), float(a.max())
        a = (a - lo) / (hi - lo) * 255.0 if hi > lo else np.full_like(a, 255.0 if hi > 0 else 0.0)
        im = Image.fromarray(a.astype(np.uint8))
    if im.mode == "P":
        im = im.convert("RGBA")
    if im.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        return Image.alpha_composite(_white(im.size), im.convert("RGBA")).convert("RGB")
    return im.convert("RGB")


def _grey_on_white(im: Image.Image) -> np.ndarray:
    """Grey (H, W) of an image laid on white. An RGBA canvas is turned grey first and then laid on
    white (the same pixels as compositing in colour, up to rounding by 1 for coloured semi-transparent
    ink), ~8x faster: compositing was most of a canvas query's preprocessing. An opaque image keeps its
    darkest channel: ink in colour (a yellow marker, grey 226 by luminance) reads as dark as it is
    strong, and a grey image is unchanged."""
    if im.mode == "RGBA":
        ground = Image.new("L", im.size, 255)
        ground.paste(im.convert("L"), mask=im.getchannel("A"))
        return np.asarray(ground, dtype=np.uint8)
    if im.mode == "L":
        return np.asarray(im, dtype=np.uint8)
    r, g, b = _to_rgb_on_white(im).split()
    return np.asarray(ImageChops.darker(ImageChops.darker(r, g), b), dtype=np.uint8)


def sketch_grey(image: Any) -> np.ndarray:
    """Any sketch (canvas RGBA, upload, dataset file) -> uint8 (H, W), dark ink on white."""
    src = load_image(image)
    g = _grey_on_white(src)
    if src.mode in ALPHA_MODES and _is_blank(g):
        # Light ink on a transparent ground vanishes on white: the strokes are where the alpha is.
        alpha = np.asarray(src.convert("RGBA").getchannel("A"), dtype=np.uint8)
        if alpha.min() < 128 and not _is_blank(255 - alpha):
            return 255 - alpha
    # Light ink on a dark ground (Quick, Draw! bitmaps, chalkboard photos): flip it. (A dark border
    # around a mostly light image is a table around a sheet of paper, not a dark ground.)
    border = np.concatenate([g[0], g[-1], g[:, 0], g[:, -1]])
    if np.median(border) < 128 and np.median(g) < 128:
        g = 255 - g
    return g if src.mode in ALPHA_MODES else _whiten_paper(g)       # the canvas is drawn, not photographed


def _whiten_paper(g: np.ndarray) -> np.ndarray:
    """A photo of a drawing on paper -> ink on white. Grey paper and uneven light otherwise count as
    ink (the crop takes the whole photo, the model sees a grey sheet): divide by the paper's own
    brightness, estimated where the ink is not (a max filter at low resolution removes thin strokes).
    Drawings on a clean white ground (the canvas, the datasets, scans) come back unchanged."""
    if np.count_nonzero(g >= PAPER_WHITE) >= 0.5 * g.size or min(g.shape) < 32:
        return g
    scale = 128 / max(g.shape)
    small = Image.fromarray(g).resize((max(8, round(g.shape[1] * scale)), max(8, round(g.shape[0] * scale))),
                                      Image.Resampling.BOX)
    paper = np.asarray(small.filter(ImageFilter.MaxFilter(5)).filter(ImageFilter.GaussianBlur(3)), np.float32)
    h, w = paper.shape
    edge = np.median(np.concatenate([paper[0], paper[-1], paper[:, 0], paper[:, -1]]))
    centre = np.median(paper[h // 4:3 * h // 4, w // 4:3 * w // 4])
    if edge < 0.6 * centre:                        # a sheet on a darker table: keep the sheet (its edge would be ink)
        ys, xs = np.nonzero(paper >= (edge + centre) / 2)
        y0, y1 = ys.min() + SHEET_INSET, ys.max() + 1 - SHEET_INSET
        x0, x1 = xs.min() + SHEET_INSET, xs.max() + 1 - SHEET_INSET
        if y1 - y0 >= 8 and x1 - x0 >= 8:
            paper = paper[y0:y1, x0:x1]
            g = g[int(y0 / scale):int(y1 / scale), int(x0 / scale):int(x1 / scale)]
    paper = np.asarray(Image.fromarray(paper).resize((g.shape[1], g.shape[0]), Image.Resampling.BILINEAR))
    ratio = g.astype(np.float32) / np.maximum(paper, 1.0)                 # paper ~1, ink well below
    return np.clip(ratio * (255.0 * 255.0 / PAPER_LEVEL), 0, 255).astype(np.uint8)


def _is_blank(g: np.ndarray) -> bool:
    """(Almost) no ink on a grey (H, W) image of dark ink on white."""
    return np.count_nonzero(g < INK_THRESHOLD) < max(10, MIN_INK_FRACTION * g.size)


def prepare_sketch(image: Any, size: int = 224, margin: float = 0.08) -> Image.Image:
    """Crop a sketch to its ink with a margin, pad to a square and resize: grey 'L' image of side `size`.

    Raises BlankSketchError when there is (almost) nothing drawn.
    """
    g = sketch_grey(image)
    ink = g < INK_THRESHOLD
    if _is_blank(g):
        raise BlankSketchError("the sketch is blank: draw something (a few strokes are enough)")
    ys, xs = np.flatnonzero(ink.any(axis=1)), np.flatnonzero(ink.any(axis=0))
    y0, y1, x0, x1 = ys[0], ys[-1] + 1, xs[0], xs[-1] + 1
    crop = g[y0:y1, x0:x1]
    side = max(crop.shape)
    pad = int(round(side * margin)) + 1
    full = side + 2 * pad
    canvas = np.full((full, full), 255, dtype=np.uint8)
    oy, ox = (full - crop.shape[0]) // 2, (full - crop.shape[1]) // 2
    canvas[oy:oy + crop.shape[0], ox:ox + crop.shape[1]] = crop
    return Image.fromarray(canvas).resize((size, size), Image.Resampling.BOX if full > size else Image.Resampling.BILINEAR)


def prepare_photo(image: Any, size: int = 224) -> Image.Image:
    """A photo -> RGB square of side `size`: fitted inside, padded with white (nothing cut off)."""
    im = _to_rgb_on_white(load_image(image))
    im = ImageOps.pad(im, (size, size), method=Image.Resampling.BILINEAR, color=(255, 255, 255))
    return im


def to_tensor(im: Image.Image, pp: Preprocess) -> np.ndarray:
    """PIL image -> float32 (3, size, size), normalised with the model's mean/std."""
    lut = _normalise_lut(tuple(pp.mean), tuple(pp.std))                   # (3, 256): pixel value -> input
    if im.mode == "L":                                                    # sketches: one channel, looked up 3 times
        return lut[:, np.asarray(im)]
    a = np.asarray(im.convert("RGB"))
    return np.stack([lut[c][a[..., c]] for c in range(3)])                # (3, H, W)


@lru_cache(maxsize=8)
def _normalise_lut(mean: tuple[float, ...], std: tuple[float, ...]) -> np.ndarray:
    """(v / 255 - mean) / std for every 8-bit value, in float32 as the models see it."""
    v = np.arange(256, dtype=np.float32)[None, :] / np.float32(255.0)
    return (v - np.asarray(mean, np.float32)[:, None]) / np.asarray(std, np.float32)[:, None]


def sketch_input(image: Any, pp: Preprocess) -> np.ndarray:
    """Sketch -> model input (3, size, size). The function both training and serving call."""
    return to_tensor(prepare_sketch(image, pp.size, pp.margin), pp)


def photo_input(image: Any, pp: Preprocess) -> np.ndarray:
    """Photo -> model input (3, size, size). The function both training and serving call."""
    return to_tensor(prepare_photo(image, pp.size), pp)

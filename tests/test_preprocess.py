import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image, ImageFilter

from sbir_core.data.preprocess import (BlankSketchError, ImageInputError, Preprocess, load_image,
                                       photo_input, prepare_photo, prepare_sketch, sketch_grey, sketch_input)


def png_bytes(im: Image.Image) -> bytes:
    b = io.BytesIO()
    im.save(b, format="PNG")
    return b.getvalue()


def drawing(size=300, mode="L") -> Image.Image:
    im = Image.new("L", (size, size), 255)
    a = np.asarray(im).copy()
    a[100:104, 50:250] = 0          # a horizontal bar
    a[100:200, 50:54] = 0           # and a vertical one
    return Image.fromarray(a).convert(mode)


def test_crop_pad_resize_keeps_ink_centred_and_square():
    out = prepare_sketch(drawing(), size=64, margin=0.1)
    assert out.size == (64, 64) and out.mode == "L"
    a = np.asarray(out)
    ys, xs = np.nonzero(a < 200)
    # the 200 px wide drawing fills the width up to the margin, centred vertically
    assert xs.min() <= 8 and xs.max() >= 55
    assert abs((ys.min() + ys.max()) / 2 - 32) < 20


def test_canvas_rgba_transparent_background_becomes_white():
    a = np.zeros((200, 200, 4), np.uint8)          # the canvas: transparent everywhere ...
    a[50:150, 90:110] = (0, 0, 0, 255)             # ... but a black stroke
    g = np.asarray(prepare_sketch(a, size=64))
    assert g.max() == 255 and g.min() < 100 and (g == 255).mean() > 0.5


def test_white_on_black_quickdraw_style_is_inverted():
    a = np.zeros((28, 28), np.uint8)
    a[5:23, 13:15] = 255
    g = sketch_grey(a)
    assert g[0, 0] == 255 and g[10, 13] == 0


@pytest.mark.parametrize("im", [Image.new("L", (256, 256), 255), Image.new("RGBA", (256, 256), (0, 0, 0, 0))])
def test_blank_canvas_is_a_clear_error(im):
    with pytest.raises(BlankSketchError, match="blank"):
        prepare_sketch(im)


def test_all_black_image_is_blank_not_a_crash():
    with pytest.raises(BlankSketchError):
        prepare_sketch(Image.new("RGB", (100, 100), (0, 0, 0)))


def test_non_image_upload():
    with pytest.raises(ImageInputError, match="not an image"):
        load_image(b"%PDF-1.4 this is not an image")


def test_empty_file():
    with pytest.raises(ImageInputError, match="empty"):
        load_image(b"")


def test_truncated_png():
    data = png_bytes(Image.fromarray(np.random.default_rng(0).integers(0, 255, (200, 200, 3), dtype=np.uint8)))
    with pytest.raises(ImageInputError, match="damaged or truncated"):
        load_image(data[: len(data) // 2])


def huge_png(w: int, h: int) -> bytes:
    """A valid PNG header announcing w x h pixels, without the memory to decode it."""
    def chunk(t, d):
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xFFFFFFFF)
    ihdr = struct.pack(">IIBBBBB", w, h, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00")) + chunk(b"IEND", b"")


def test_decompression_bomb_is_refused_before_decoding():
    with pytest.raises(ImageInputError, match="too large"):
        load_image(huge_png(50_000, 50_000))


@pytest.mark.parametrize("mode", ["RGBA", "P", "LA", "1", "CMYK", "I;16", "I", "F"])
def test_every_image_mode_works(mode):
    im = drawing(mode="RGB")
    if mode == "I;16":
        im = Image.fromarray((np.asarray(im.convert("L")).astype(np.uint16) * 257))
        assert im.mode in ("I;16", "I")
    else:
        im = im.convert(mode)
    x = sketch_input(png_bytes(im) if mode not in ("F", "I;16", "I", "CMYK") else im, Preprocess(size=48))
    assert x.shape == (3, 48, 48) and x.dtype == np.float32 and np.isfinite(x).all()


def test_palette_with_transparency_composites_on_white():
    im = Image.new("P", (64, 64), 0)
    im.putpalette([0, 0, 0] + [255, 0, 0] * 255)
    im.info["transparency"] = 0                    # index 0 (black) is transparent
    im.paste(1, (10, 10, 54, 20))
    g = sketch_grey(png_bytes(im))
    assert g[0, 0] == 255 and g[15, 30] < 128


def test_photo_is_padded_not_cropped():
    im = Image.new("RGB", (400, 100), (255, 0, 0))
    out = np.asarray(prepare_photo(im, 64))
    assert out.shape == (64, 64, 3)
    assert (out[32, 32] == (255, 0, 0)).all() and (out[2, 32] == 255).all()
    x = photo_input(im, Preprocess(size=64))
    assert x.shape == (3, 64, 64) and x.min() >= -1.0 and x.max() <= 1.0


def test_canvas_rgba_grey_matches_compositing_in_colour():
    """The fast grey path for canvas RGBA images gives the pixels of laying the colour image on white
    and then turning it grey (to rounding): training saw the latter."""
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (120, 90, 4), dtype=np.uint8)
    a[:40, :, 3] = 0                                             # transparent ground
    a[40:60, :, :3], a[40:60, :, 3] = 0, 255                     # opaque black ink
    im = Image.fromarray(a, "RGBA")
    reference = np.asarray(Image.alpha_composite(Image.new("RGBA", im.size, "white"), im).convert("L"), dtype=int)
    fast = sketch_grey(im).astype(int)
    assert fast.shape == (120, 90)
    assert np.abs(fast - reference).max() <= 1
    assert (fast[:40] == 255).all() and (fast[40:60] == 0).all()


def paper_photo(clean: Image.Image, light: str, seed: int = 0) -> Image.Image:
    """`clean` (ink on white) as a phone photo of paper: grey sheet, uneven light, grain, a bit of blur;
    `light="table"`: the sheet filling the middle of a darker table."""
    rng = np.random.default_rng(seed)
    g = np.asarray(clean.convert("L"), np.float32) / 255
    h, w = g.shape
    xx = np.mgrid[0:h, 0:w][1] / w
    sheet = {"flat": 0.9, "gradient": 0.55 + 0.4 * xx, "table": 0.8}[light]
    a = sheet * g + 0.16 * (1 - g)
    if light == "table":
        full = np.full((h * 4 // 3, w * 4 // 3), 0.3, np.float32)
        full[h // 6:h // 6 + h, w // 6:w // 6 + w] = a
        a = full
    a = np.clip(a + rng.normal(0, 0.02, a.shape), 0, 1)
    return Image.fromarray((a * 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(1)).convert("RGB")


def test_clean_drawings_are_not_touched_by_the_paper_step():
    """The canvas, the datasets and scans lie on a clean white ground: evening out paper light leaves them be."""
    from sbir_core.data.preprocess import _grey_on_white
    for im in (drawing(), drawing(mode="RGB")):
        assert np.array_equal(sketch_grey(im), _grey_on_white(im))


@pytest.mark.parametrize("light", ["flat", "gradient", "table"])
def test_a_photo_of_a_drawing_on_paper_is_prepared_like_the_drawing(light):
    """Grey paper, light falling off across the sheet, a table around it: prepared, the photo is ink on
    white cropped to the drawing, as the clean drawing is (before: the sheet's grey counted as ink, the
    crop took the whole photo, and the table flipped the image)."""
    clean = drawing(400)
    want = np.asarray(prepare_sketch(clean, size=64), np.float32)
    got = np.asarray(prepare_sketch(paper_photo(clean, light), size=64), np.float32)
    assert (got >= 250).mean() > 0.85                       # white ground
    assert np.abs(got - want).mean() < 12, np.abs(got - want).mean()   # the same crop of the same strokes


def test_a_drawing_photographed_on_a_table_reads_as_what_it_is():
    """End to end through the shipped classifier: a cat face drawn on paper, photographed on a table."""
    import math
    from sbir_core.backends import load_backend
    from sbir_core.data.render import render_canvas

    def circle(cx, cy, r, n=20):
        return [(cx + r * math.cos(2 * math.pi * i / n), cy + r * math.sin(2 * math.pi * i / n)) for i in range(n + 1)]
    cat = [circle(.5, .55, .25), [(.32, .37), (.34, .15), (.44, .33)], [(.56, .33), (.66, .15), (.68, .37)],
           circle(.42, .5, .03), circle(.58, .5, .03), [(.47, .62), (.5, .65), (.53, .62)],
           [(.3, .6), (.12, .56)], [(.3, .65), (.12, .7)], [(.7, .6), (.88, .56)], [(.7, .65), (.88, .7)]]
    clean = render_canvas([(np.array([p[0] for p in s]) * 400, np.array([p[1] for p in s]) * 400) for s in cat])
    backend = load_backend("classifier", threads=1)
    _, extras = backend.encode_sketches(sketch_input(paper_photo(clean, "table"), backend.preprocess)[None])
    assert extras["top_classes"][0][0] == "cat", extras["top_classes"]


@pytest.mark.parametrize("ink", [(250, 220, 0), (255, 140, 0), (90, 170, 255), (220, 30, 30)])
def test_coloured_ink_is_ink(ink):
    """A drawing in yellow marker (grey 226 by luminance: it read as a blank sketch), orange, light blue or
    red is prepared like the same drawing in black."""
    g = np.asarray(drawing(400), np.float32) / 255
    coloured = Image.fromarray(np.stack([g * 255 + (1 - g) * c for c in ink], -1).astype(np.uint8))
    want = np.asarray(prepare_sketch(drawing(400), size=64), np.float32)
    got = np.asarray(prepare_sketch(coloured, size=64), np.float32)
    assert np.abs(got - want).mean() < 12, np.abs(got - want).mean()

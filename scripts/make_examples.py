"""Rasterise a few OpenMoji black outline emoji (CC BY-SA 4.0) into the example sketches that ship
in `assets/examples/`, for visitors who won't draw and for when ../shared/data is absent.

    npm pack openmoji && tar xzf openmoji-*.tgz      # the package from the npm registry
    python scripts/make_examples.py package/         # needs `pip install cairosvg` (offline tool only)
"""
from __future__ import annotations

import argparse
import io
import json
from pathlib import Path

from PIL import Image

# Vocabulary class -> OpenMoji code point (file name in black/svg/).
# Only classes the bundled gallery has at least 2 photos of (tests/test_gallery.py checks), and that
# Sketchy has too (the app shows real Sketchy sketches of the same classes when the data is present).
EXAMPLES = {
    "apple": "1F34E", "airplane": "2708", "car_(sedan)": "1F697", "cat": "1F408",
    "butterfly": "1F98B", "fish": "1F41F", "guitar": "1F3B8", "tree": "1F333",
}
OUT = Path(__file__).resolve().parent.parent / "assets" / "examples"


def rasterise(svg: Path, size: int = 256) -> Image.Image:
    """SVG outline -> grey PNG on white, the way a sketch looks."""
    import cairosvg
    png = cairosvg.svg2png(url=str(svg), output_width=size, output_height=size)
    im = Image.open(io.BytesIO(png)).convert("RGBA")
    white = Image.new("RGBA", im.size, (255, 255, 255, 255))
    return Image.alpha_composite(white, im).convert("L")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("package", type=Path, help="the unpacked openmoji npm package folder")
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--only", default="", help="comma-separated classes (default: all of EXAMPLES)")
    a = ap.parse_args(argv)
    version = json.loads((a.package / "package.json").read_text())["version"]
    a.out.mkdir(parents=True, exist_ok=True)
    chosen = a.only.split(",") if a.only else list(EXAMPLES)
    for label in chosen:
        code = EXAMPLES[label]
        rasterise(a.package / "black" / "svg" / f"{code}.svg").save(a.out / f"{label}.png", optimize=True)
    lines = ["label\tfile\tsource\tlicence"]
    lines += [f"{c}\t{c}.png\tOpenMoji {version} black/svg/{EXAMPLES[c]}.svg (https://openmoji.org)\tCC BY-SA 4.0"
              for c in chosen]
    (a.out / "examples.tsv").write_text("\n".join(lines) + "\n")
    print(f"wrote {len(chosen)} examples to {a.out}")


if __name__ == "__main__":
    main()

"""The committed bundled gallery against its own files and its guarantees (every photo labelled with a
class or shown by a caption-only name, every source credited), its build helpers, and galleries made
from folders."""
from __future__ import annotations

import csv
import struct
import zlib
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from galleries import build_bundled, notice, sources
from sbir_core import available_backends
from sbir_core.backends import load_backend
from sbir_core.config import REPO_ROOT, data_dir
from sbir_core.data.classes import VOCABULARY, display
from sbir_core.data.preprocess import load_image
from sbir_core.gallery import BUNDLED_DIR, METADATA_COLUMNS, Gallery

ROWS = list(csv.DictReader(open(BUNDLED_DIR / "metadata.csv", newline="", encoding="utf-8")))
LABELS = Counter(r["label"] for r in ROWS if r["label"])
EXAMPLES_TSV = REPO_ROOT / "assets" / "examples" / "examples.tsv"
NOTICE = (BUNDLED_DIR / "NOTICE").read_text(encoding="utf-8")


def test_metadata_has_the_gallery_columns_then_author_and_display():
    with open(BUNDLED_DIR / "metadata.csv", newline="", encoding="utf-8") as f:
        assert tuple(next(csv.reader(f))) == METADATA_COLUMNS + build_bundled.EXTRA_COLUMNS


def test_every_photo_file_exists_and_is_a_small_rgb_thumbnail():
    for r in ROWS:
        path = BUNDLED_DIR / r["file"]
        assert path.is_file() and path.suffix == ".jpg", r["file"]
        im = load_image(path)
        assert im.mode == "RGB" and max(im.size) <= 256 and min(im.size) >= 16, (r["file"], im.mode, im.size)


def test_no_image_file_is_left_out_of_the_metadata():
    listed = {r["file"] for r in ROWS}
    on_disk = {p.relative_to(BUNDLED_DIR).as_posix() for p in (BUNDLED_DIR / "images").iterdir()}
    assert on_disk == listed


def test_every_photo_has_a_class_label_or_a_caption_only_name():
    ids = [r["id"] for r in ROWS]
    assert len(set(ids)) == len(ids)
    for r in ROWS:
        assert r["caption"].strip(), r["id"]
        if r["label"]:
            assert r["label"] in VOCABULARY, (r["id"], r["label"])
            assert r["display"] == display(r["label"]), r["id"]
        else:                                  # caption-only: the app shows `display`, never "unlabelled"
            assert r["display"].strip() and r["display"].lower() != "unlabelled", r["id"]


def test_every_row_names_its_source_licence_and_author():
    for r in ROWS:
        assert r["source"].strip() and r["licence"].strip() and r["author"].strip(), r["id"]


def test_size_and_class_coverage():
    assert len(ROWS) >= 500
    assert sum(LABELS.values()) >= 400
    assert len(LABELS) >= 110
    for c in ("tree", "flower", "fish", "cat", "dog", "bird", "airplane", "apple", "cup", "guitar", "sun",
              "cloud", "moon", "house", "car_(sedan)", "chair", "clock", "sailboat"):
        assert LABELS[c] >= 1, c


def test_every_example_sketch_class_has_at_least_two_photos():
    with open(EXAMPLES_TSV, newline="", encoding="utf-8") as f:
        examples = list(csv.DictReader(f, delimiter="\t"))
    assert len(examples) >= 6
    for e in examples:
        assert (EXAMPLES_TSV.parent / e["file"]).is_file(), e["file"]
        assert LABELS[e["label"]] >= 2, (e["label"], LABELS[e["label"]])


def test_reviewed_list_matches_the_gallery():
    rows = sources.read_sources()
    photos = [r for r in rows if r.status == "photo"]
    assert [sources.photo_id(r) for r in photos] == [r["id"] for r in ROWS]
    assert [r.label for r in photos] == [r["label"] for r in ROWS]
    assert all(r.note for r in rows), "every row says how its label (or exclusion) was decided"


def test_notice_lists_every_source_and_every_credited_author():
    for name in ("tuxpaint-stamps-default", "tuxpaint-data", "gcompris-qt-data", "scikit-image", "gallery_photos",
                 "package scratch", "jigzo-data", "lomiri-wallpapers-16.04", "plasma-workspace-wallpapers", "sunpy"):
        assert name in NOTICE, name
    for r in ROWS:
        if r["id"].startswith(("shared-", "gcompris-", "tuxpaint-data-", "scratch-", "jigzo-", "lomiri-", "plasma-",
                               "sunpy-")):
            where = r["source"].split(": ", 1)[1]
            assert where in NOTICE, r["id"]
        if r["id"].startswith(("shared-", "gcompris-", "jigzo-", "lomiri-", "plasma-", "sunpy-")):
            assert f"{r['licence']}; {r['author']}" in NOTICE, r["id"]
    assert (BUNDLED_DIR / "LICENSES" / "GPL-2").is_file()
    if any(r["licence"].startswith("GPL-3") for r in ROWS):
        assert (BUNDLED_DIR / "LICENSES" / "GPL-3").is_file()
    top = (REPO_ROOT / "NOTICE").read_text(encoding="utf-8")
    assert NOTICE in top
    assert "OpenMoji" in top and "CC BY-SA 4.0" in top          # the example sketches


def test_bundled_loads_as_a_gallery():
    g = Gallery.bundled()
    assert len(g) == len(ROWS)
    assert g.labels.count(None) == sum(1 for r in ROWS if not r["label"])


@pytest.mark.parametrize("name", available_backends(include_baselines=True))
def test_committed_embeddings_match_a_fresh_encoding(name):
    """Every backend's committed bundled-gallery embeddings exist under its current feature key and
    equal a fresh encoding of a few photos: a retrain or a changed photo model that forgets
    `python -m galleries.build_bundled --index` fails here (serving would recompute and write them)."""
    backend = load_backend(name)
    path = BUNDLED_DIR / "embeddings" / f"{backend.feature_key}.npy"
    assert path.is_file(), f"missing {path}: run python -m galleries.build_bundled --index"
    feats = np.load(path)
    assert feats.shape[0] == len(ROWS) and np.isfinite(feats).all()
    g = Gallery.bundled()
    pick = [0, len(g) // 3, 2 * len(g) // 3, len(g) - 1]
    fresh = backend.index_photos([g.sources[i] for i in pick])
    assert fresh.shape == feats[pick].shape and np.abs(fresh - feats[pick]).max() < 2e-3, name


def test_sketchy_photos_are_offered_as_a_second_gallery_when_present():
    from ui.catalogue import gallery_sources
    keys = [s.key for s in gallery_sources()]
    assert keys[0] == "bundled"
    if (data_dir() / "sketchy" / "photo").is_dir():
        assert "sketchy" in keys


# -- the build's helpers, on made-up input ---------------------------------------------------------
def _tsv(tmp_path: Path, line: str) -> Path:
    p = tmp_path / "sources.tsv"
    p.write_text("# comment\nsource\tstatus\tlabel\tname\tcaption\tlicence\tauthor\torigin\tnote\tcrop\n" + line + "\n",
                 encoding="utf-8")
    return p


@pytest.mark.parametrize("line, message", [
    ("tuxpaint:a.png\tphoto\tnot_a_class\t\t\t\t\t\tn", "not in the class vocabulary"),
    ("ftp:a.png\tphoto\tcat\t\t\t\t\t\tn", "kind one of"),
    ("tuxpaint:a.png\tmaybe\tcat\t\t\t\t\t\tn", "status must be"),
    ("tuxpaint:a.png\tphoto\t\t\t\t\t\t\tn", "needs a name"),
    ("scratch:a.png\tphoto\tcat\t\t\t\t\t\tn\t10,10,5,20", "crop must be"),
    ("scratch:a.png\tphoto\tcat\t\t\t\t\t\tn\t1,2,3", "crop must be"),
])
def test_read_sources_refuses_bad_rows_with_a_message(tmp_path, line, message):
    with pytest.raises(sources.BuildError, match=message):
        sources.read_sources(_tsv(tmp_path, line))


def test_missing_packages_exit_with_the_install_command(tmp_path, monkeypatch):
    monkeypatch.delenv("TUXPAINT_STAMPS_DIR", raising=False)
    monkeypatch.delenv("SBIR_WHEELS_DIR", raising=False)
    before = (BUNDLED_DIR / "metadata.csv").read_bytes()
    with pytest.raises(SystemExit) as e:        # checked before anything is written
        build_bundled.main(["--no-index", "--packages-root", str(tmp_path / "empty")])
    assert "apt-get install -y" in str(e.value) and "gcompris-qt-data" in str(e.value)
    assert "scratch" in str(e.value) and "pip download sunpy==" in str(e.value)
    assert (BUNDLED_DIR / "metadata.csv").read_bytes() == before


def _jpeg(im: Image.Image) -> bytes:
    import io
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=95)
    return buf.getvalue()


def test_pzl_image_cuts_the_photo_out_of_the_colour_texture(tmp_path):
    """A jigzo puzzle: header with the `image` region, thumbnail, alpha mask, colour texture."""
    import io
    texture = Image.new("RGB", (64, 64), (0, 0, 255))
    texture.paste((255, 0, 0), (8, 16, 8 + 24, 16 + 32))           # the photo: a red 24x32 block
    mask = io.BytesIO()
    Image.new("LA", (64, 64), (255, 255)).save(mask, "PNG")
    parts = [("p-t.jpg", _jpeg(Image.new("RGB", (12, 16), (0, 255, 0)))), ("p.png", mask.getvalue()),
             ("p.jpg", _jpeg(texture))]
    head = b"PzlF\n0.1\np\nhttp://example.org/\np.map\n1\n#texture map data\ncrop000 0 0 8 8 0 0 0 0 0 0\n"
    head += b"image 8 16 24 32 1 1    \n"
    path = tmp_path / "p.pzl"
    path.write_bytes(head + b"".join(n.encode() + b"\n" + str(len(b)).encode() + b"\n" + b for n, b in parts))
    im = sources.pzl_image(path)
    assert im.size == (24, 32)
    r, g, b = np.asarray(im.convert("RGB")).reshape(-1, 3).mean(axis=0)
    assert r > 200 and g < 60 and b < 60                             # the red photo, not the thumbnail or mask
    (tmp_path / "bad.pzl").write_bytes(b"not a puzzle")
    with pytest.raises(sources.BuildError, match="jigzo"):
        sources.pzl_image(tmp_path / "bad.pzl")


def test_a_row_with_a_crop_box_gets_only_that_part(tmp_path):
    folder = tmp_path / sources.KINDS["scratch"].folder
    folder.mkdir(parents=True)
    im = Image.new("RGB", (40, 30), (255, 255, 255))
    im.paste((0, 0, 0), (10, 5, 30, 25))
    im.save(folder / "a.png")
    row = sources.SourceRow("scratch:a.png", "photo", "cat", "", "", "", "", "", "n", crop="10,5,30,25")
    out = sources.open_source(row, tmp_path)
    assert out.size == (20, 20) and np.asarray(out.convert("L")).max() == 0
    assert "(cropped to 10,5,30,25)" in sources.describe(row, tmp_path, {"scratch": "1"}, {})["source"]
    with pytest.raises(sources.BuildError, match="outside"):
        sources.open_source(sources.SourceRow("scratch:a.png", "photo", "cat", "", "", "", "", "", "n", crop="0,0,50,30"),
                       tmp_path)


def _rcc(files: dict[str, bytes]) -> bytes:
    """A minimal Qt resource file (format 2): one root folder holding `files`, the first zlib-packed."""
    names, data, nodes = b"", b"", []
    def name(s: str) -> int:
        nonlocal names
        off = len(names)
        names += struct.pack(">HI", len(s), 0) + s.encode("utf-16-be")
        return off
    root_name = name("")
    entries = []
    for n, (fname, content) in enumerate(files.items()):
        flags, payload = (1, struct.pack(">I", len(content)) + zlib.compress(content)) if n == 0 else (0, content)
        entries.append((name(fname), flags, len(data)))
        data += struct.pack(">I", len(payload)) + payload
    nodes.append(struct.pack(">IHII", root_name, 2, len(files), 1) + b"\0" * 8)
    nodes += [struct.pack(">IHHHI", n_off, flags, 0, 0, d_off) + b"\0" * 8 for n_off, flags, d_off in entries]
    tree = b"".join(nodes)
    head = 20
    return b"qres" + struct.pack(">IIII", 2, head, head + len(tree), head + len(tree) + len(data)) + tree + data + names


def test_read_rcc_unpacks_plain_and_zlib_entries(tmp_path):
    p = tmp_path / "x.rcc"
    p.write_bytes(_rcc({"a.txt": b"hello " * 50, "b.bin": b"\x00\x01raw"}))
    assert sources.rcc_file(p, "a.txt") == b"hello " * 50
    assert sources.rcc_file(p, "b.bin") == b"\x00\x01raw"
    with pytest.raises(sources.BuildError):
        sources.rcc_file(p, "missing.png")
    (tmp_path / "bad.rcc").write_bytes(b"not a resource file")
    with pytest.raises(sources.BuildError):
        sources.read_rcc(tmp_path / "bad.rcc")


def test_licence_urls():
    assert notice.licence_url("CC-BY-SA-2.0-DE") == "https://creativecommons.org/licenses/by-sa/2.0/de/"
    assert notice.licence_url("CC-BY-4.0") == "https://creativecommons.org/licenses/by/4.0/"
    assert notice.licence_url("GPL-2.0-or-later") == "LICENSES/GPL-2"


# -- galleries from folders ----------------------------------------------------------------------
def _tiny(path: Path, colour: tuple[int, int, int]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (32, 24), colour).save(path)


def test_from_folder_labelled(tmp_path):
    _tiny(tmp_path / "dog" / "a.png", (200, 10, 10))
    _tiny(tmp_path / "dog" / "b.jpg", (10, 200, 10))
    _tiny(tmp_path / "Hot Air Balloon" / "c.png", (10, 10, 200))
    _tiny(tmp_path / "not_a_class" / "d.png", (50, 50, 50))
    g = Gallery.from_folder(tmp_path)
    assert len(g) == 4
    assert sorted(g.labels, key=str) == sorted(["dog", "dog", "hot-air_balloon", None], key=str)
    assert len(set(g.ids)) == 4
    assert g.image(0).size == (32, 24)


def test_from_folder_flat_is_unlabelled(tmp_path):
    for n in range(3):
        _tiny(tmp_path / f"p{n}.png", (n * 60, 0, 0))
    (tmp_path / "notes.txt").write_text("not an image")
    g = Gallery.from_folder(tmp_path)
    assert len(g) == 3 and g.labels == [None, None, None]


def test_every_bundled_photo_has_a_display_label():
    from sbir_core import Gallery
    g = Gallery.bundled()
    names = [g.display_label(i) for i in range(len(g))]
    assert all(n and n.lower() != "unlabelled" for n in names)
    seahorse = g.ids.index("tuxpaint-animals-fish-seahorse")
    assert g.labels[seahorse] is None and names[seahorse] == "seahorse"       # caption-only: its display name
    car = g.labels.index("car_(sedan)")
    assert names[car] == "car (sedan)"                                          # a class, in words

"""The bundled gallery's reviewed list (`galleries/bundled_sources.tsv`) and reading each listed
photo out of the package, wheel or folder it ships in, with the source, licence and author that
metadata.csv and NOTICE record. Nothing here writes: `galleries.build_bundled` does.

Which files go in, their labels and how each label was decided is the reviewed list; nothing is
chosen automatically. Kinds of source: Debian packages (read from PACKAGES_ROOT: / when installed,
or a `dpkg -x` folder), scikit-image's sample photos, sunpy's wheel, the shared data's gallery_photos.
"""
from __future__ import annotations

import csv
import gzip
import os
import re
import struct
import subprocess
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from PIL import Image

from sbir_core.config import GALLERIES_DIR, data_dir
from sbir_core.data.classes import VOCABULARY, display

SOURCES_TSV = GALLERIES_DIR / "bundled_sources.tsv"
PACKAGES_ROOT = Path(os.environ.get("SBIR_PACKAGES_ROOT", "/"))

@dataclass(frozen=True)
class Kind:
    """One source of photos: where its files live under the packages root (or elsewhere), and defaults."""
    package: str                 # Debian package, "" for a Python package / the shared data
    folder: str                  # path under the packages root that source paths are relative to
    licence: str                 # default licence of its rows
    author: str                  # default author of its rows


KINDS: dict[str, Kind] = {
    "tuxpaint": Kind("tuxpaint-stamps-default", "usr/share/tuxpaint/stamps", "GPL-2.0-or-later",
                     "Tux Paint stamps contributors (Debian copyright: 2002-2022 Bill Kendrick)"),
    "tuxpaint-data": Kind("tuxpaint-data", "usr/share/tuxpaint", "GPL-2.0-or-later", "Bill Kendrick"),
    "gcompris": Kind("gcompris-qt-data", "usr/share/gcompris-qt/rcc", "", ""),
    "skimage": Kind("", "", "", "scikit-image sample data"),
    "shared": Kind("", "", "", ""),
    # Scratch 1.4's media library (debian/copyright: "Files: Help/* Media/* Projects", MIT, CC-BY-SA-3.0)
    "scratch": Kind("scratch", "usr/share/scratch/Media", "CC-BY-SA-3.0",
                    "Massachusetts Institute of Technology (Scratch 1.4 media library)"),
    # jigzo's puzzles: a .pzl file holds the photo inside a texture (read by pzl_image)
    "jigzo": Kind("jigzo-data", "usr/share/games/jigzo/puzzles/00_default", "GPL-2.0-or-later",
                  "Maarten de Boer (jigzo; debian/copyright)"),
    # Ubuntu Touch 16.04 wallpapers: licence and photographer per file in debian/copyright (given per row)
    "lomiri": Kind("lomiri-wallpapers-16.04", "usr/share/backgrounds", "", ""),
    # KDE Plasma's wallpapers (debian/copyright: "Files: *", GPL-2+; photographer in each metadata.json)
    "plasma": Kind("plasma-workspace-wallpapers", "usr/share/wallpapers", "GPL-2.0-or-later", ""),
    # solar images in sunpy's test data, read from its wheel (no install: sunpy would pull in astropy)
    "sunpy": Kind("", "sunpy/data/test", "public domain (NASA)", "NASA/SDO and the AIA and HMI science teams"),
    # Photos in other Debian packages' data and documentation (a 2026-12 search for kinds people draw
    # that had no photo): licence and author from each package's debian/copyright, per row where it
    # names the file or its folder. Paths under usr/share/doc need `dpkg -x` (or a full install).
    "scribus": Kind("scribus-template", "usr/share/scribus/templates", "", ""),
    "kphotoalbum": Kind("kphotoalbum", "usr/share/kphotoalbum/demo", "GPL-2.0-or-later",
                        "Jesper K. Pedersen (KPhotoAlbum's demo album; debian/copyright)"),
    "gimp-help": Kind("gimp-help-en", "usr/share/gimp/2.0/help/en/images", "GFDL-1.2-or-later",
                      "The GIMP Documentation Team (gimp-help-common's debian/copyright)"),
    "forensics": Kind("forensics-samples-files", "usr/share/forensics-samples/original-files", "CC-BY-SA-4.0",
                      "Joao Eriberto Mota Filho (debian/copyright: original-files/*)"),
    "nip2": Kind("nip2", "usr/share/doc/nip2/examples", "GPL-2.0-or-later",
                 "Imperial College London and others (nip2's debian/copyright)"),
    "mate": Kind("mate-backgrounds", "usr/share/backgrounds/mate", "GPL-2.0-or-later", ""),
    "imagemagick": Kind("imagemagick-6-doc", "usr/share/doc/imagemagick-6-common/html/images", "ImageMagick",
                        "ImageMagick Studio LLC (imagemagick-6-common's debian/copyright)"),
}
SUNPY = ("sunpy", "7.0.5")     # the wheel `pip download sunpy==7.0.5 --no-deps` fetches
APT_PACKAGES = tuple(k.package for k in KINDS.values() if k.package)


class BuildError(Exception):
    """A problem with the sources or the list: reported as one message, never as a traceback."""


@dataclass(frozen=True)
class SourceRow:
    """One reviewed line of bundled_sources.tsv (see its header for the columns)."""
    source: str
    status: str          # "photo" (goes in) or "excluded"
    label: str           # a VOCABULARY class, or "" = caption-only
    name: str            # short display name; required when label is ""
    caption: str         # "" = the stamp's own description
    licence: str         # "" = the kind's default
    author: str          # "" = the kind's default
    origin: str          # the original (e.g. a Wikimedia Commons page), when known
    note: str            # how the label was decided
    crop: str = ""       # "left,top,right,bottom" in source pixels: the part of the photo that shows the object

    @property
    def kind(self) -> str:
        return self.source.split(":", 1)[0]

    @property
    def path(self) -> str:
        return self.source.split(":", 1)[1]

    @property
    def display(self) -> str:
        """What the app shows for this photo: the class as people read it, or the short name."""
        return display(self.label) if self.label else self.name


def read_sources(path: Path = SOURCES_TSV) -> list[SourceRow]:
    """The reviewed allow/deny list. Refuses labels outside the vocabulary, unknown kinds/statuses,
    caption-only photos without a name, and duplicates."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise BuildError(f"cannot read {path}: {e}") from None
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]
    rows, seen = [], set()
    for n, rec in enumerate(csv.DictReader(lines, delimiter="\t"), start=1):
        row = SourceRow(**{k: (rec.get(k) or "").strip() for k in SourceRow.__dataclass_fields__})
        where = f"{path.name} row {n} ({row.source or 'no source'})"
        if ":" not in row.source or row.kind not in KINDS:
            raise BuildError(f"{where}: source must be <kind>:<path> with kind one of {', '.join(KINDS)}")
        if row.status not in ("photo", "excluded"):
            raise BuildError(f"{where}: status must be photo or excluded, not {row.status!r}")
        if row.label and row.label not in VOCABULARY:
            raise BuildError(f"{where}: label {row.label!r} is not in the class vocabulary")
        if row.status == "photo" and not row.label and not row.name:
            raise BuildError(f"{where}: a photo without a class label needs a name to show")
        if row.crop and parse_crop(row.crop) is None:
            raise BuildError(f"{where}: crop must be left,top,right,bottom in pixels (left<right, top<bottom), "
                             f"not {row.crop!r}")
        if row.source in seen:
            raise BuildError(f"{where}: listed twice")
        seen.add(row.source)
        rows.append(row)
    return rows


def parse_crop(text: str) -> tuple[int, int, int, int] | None:
    """A crop box `left,top,right,bottom` (source pixels), or None when it is not one."""
    try:
        box = tuple(int(v) for v in text.split(","))
    except ValueError:
        return None
    if len(box) != 4 or min(box) < 0 or box[0] >= box[2] or box[1] >= box[3]:
        return None
    return box  # type: ignore[return-value]


# -- where the files are ---------------------------------------------------------------------
def skimage_data_dir() -> Path:
    """Where the installed scikit-image keeps its sample photos."""
    import skimage
    return Path(skimage.__file__).resolve().parent / "data"


def shared_dir() -> Path:
    """The shared data's redistributable photos (each credited in its SOURCES.tsv)."""
    return data_dir() / "gallery_photos"


def wheels_dir(root: Path) -> Path:
    """Where downloaded PyPI wheels are read from: SBIR_WHEELS_DIR, else `wheels/` in the packages root."""
    return Path(os.environ.get("SBIR_WHEELS_DIR") or root / "wheels")


def sunpy_wheel(root: Path) -> Path | None:
    """The downloaded sunpy wheel the solar images are read from, or None."""
    name, version = SUNPY
    found = sorted(wheels_dir(root).glob(f"{name}-{version}-*.whl"))
    return found[0] if found else None


def wheel_member(row: SourceRow, root: Path) -> bytes | None:
    """A file of the sunpy wheel (a zip), or None when the wheel or the file is not there."""
    import zipfile
    wheel = sunpy_wheel(root)
    if wheel is None:
        return None
    with zipfile.ZipFile(wheel) as z:
        try:
            return z.read(f"{KINDS[row.kind].folder}/{row.path}")
        except KeyError:
            return None


def kind_dir(kind: str, root: Path) -> Path:
    """The folder a kind's source paths are relative to."""
    if kind == "skimage":
        return skimage_data_dir()
    if kind == "shared":
        return shared_dir()
    if kind == "tuxpaint" and os.environ.get("TUXPAINT_STAMPS_DIR"):
        return Path(os.environ["TUXPAINT_STAMPS_DIR"])
    return root / KINDS[kind].folder


def read_rcc(path: Path) -> dict[str, tuple[int, bytes]]:
    """{path: (flags, raw bytes)} of every file in a Qt resource (.rcc) file, formats 1-3.

    gcompris-qt-data keeps each activity's images inside one .rcc; this reads them without Qt."""
    b = path.read_bytes()
    if b[:4] != b"qres":
        raise BuildError(f"{path} is not a Qt resource file")
    version, tree, data, names = struct.unpack(">IIII", b[4:20])
    node = 14 if version == 1 else 22

    def name(off: int) -> str:
        n = struct.unpack(">H", b[names + off:names + off + 2])[0]
        return b[names + off + 6:names + off + 6 + 2 * n].decode("utf-16-be")

    out: dict[str, tuple[int, bytes]] = {}
    stack = [(0, "")]
    while stack:
        i, prefix = stack.pop()
        o = tree + i * node
        name_off, flags = struct.unpack(">IH", b[o:o + 6])
        here = f"{prefix}{name(name_off)}" if i else ""
        if flags & 2:                                           # directory
            count, first = struct.unpack(">II", b[o + 6:o + 14])
            stack += [(first + c, f"{here}/" if i else "") for c in range(count)]
        else:
            off = data + struct.unpack(">I", b[o + 10:o + 14])[0]
            size = struct.unpack(">I", b[off:off + 4])[0]
            out[here] = (flags, b[off + 4:off + 4 + size])
    return out


def rcc_file(rcc: Path, inner: str) -> bytes:
    """One file's bytes from a .rcc (zlib-compressed entries are unpacked)."""
    entries = read_rcc(rcc)
    if inner not in entries:
        raise BuildError(f"{inner} not found in {rcc}")
    flags, raw = entries[inner]
    if flags & 4:
        raise BuildError(f"{inner} in {rcc} is zstd-compressed, which this reader does not unpack")
    return zlib.decompress(raw[4:]) if flags & 1 else raw


def pzl_image(path: Path) -> Image.Image:
    """The photo inside a jigzo puzzle (.pzl): a text header whose `image x y w h` line says where the
    whole photo lies in the texture, then files as `name, size, bytes`: a thumbnail JPEG, the pieces'
    alpha mask (PNG) and the colour texture (JPEG) that holds the photo at full size."""
    import io
    data = path.read_bytes()
    m = re.search(rb"\nimage (\d+) (\d+) (\d+) (\d+)[^\n]*\n", data) if data.startswith(b"PzlF\n") else None
    if not m:
        raise BuildError(f"{path} is not a jigzo puzzle file with an `image` region")
    x, y, w, h = (int(v) for v in m.groups())
    files, pos = [], m.end()
    while (f := re.compile(rb"([^\n]+)\n(\d+)\n").match(data, pos)) is not None:
        size = int(f.group(2))
        files.append((f.group(1).decode("utf-8", "replace"), data[f.end():f.end() + size]))
        pos = f.end() + size
    jpegs = [blob for name, blob in files[1:] if name.lower().endswith((".jpg", ".jpeg"))]
    if not jpegs:
        raise BuildError(f"{path}: no colour texture after the thumbnail")
    texture = Image.open(io.BytesIO(jpegs[0]))
    texture.load()
    return texture.crop((x, y, x + w, y + h))


def open_source(row: SourceRow, root: Path) -> Image.Image:
    """The source image of a row, loaded, and cut to the row's crop box when it has one."""
    import io
    base = kind_dir(row.kind, root)
    if row.kind == "gcompris":
        rcc, inner = row.path.split("!", 1)
        data = rcc_file(base / f"{rcc}.rcc", inner)
        im = Image.open(io.BytesIO(data))
    elif row.kind == "jigzo":
        im = pzl_image(base / row.path)
    elif row.kind == "sunpy":
        im = Image.open(io.BytesIO(wheel_member(row, root) or b""))
    else:
        im = Image.open(base / row.path)
    im.load()
    box = parse_crop(row.crop) if row.crop else None
    if box:
        if box[2] > im.width or box[3] > im.height:
            raise BuildError(f"{row.source}: crop {row.crop} lies outside the {im.width}x{im.height} image")
        im = im.crop(box)
    return im


def source_exists(row: SourceRow, root: Path) -> bool:
    """Whether a row's file is there (checked for every row before anything is written)."""
    base = kind_dir(row.kind, root)
    if row.kind == "gcompris":
        return (base / f"{row.path.split('!', 1)[0]}.rcc").is_file()
    if row.kind == "sunpy":
        return wheel_member(row, root) is not None
    return (base / row.path).is_file()


def package_version(name: str, root: Path) -> str:
    """The Debian version of a package: from its changelog under `root` (works for `dpkg -x` too), else dpkg."""
    for log in (root / f"usr/share/doc/{name}/changelog.Debian.gz",):
        try:
            with gzip.open(log, "rt", encoding="utf-8", errors="replace") as f:
                m = re.match(r"\S+ \(([^)]+)\)", f.readline())
            if m:
                return m.group(1)
        except OSError:
            pass
    try:
        out = subprocess.run(["dpkg-query", "-W", "-f=${Version}", name], capture_output=True, text=True, check=False)
        return out.stdout.strip() or "unknown"
    except OSError:
        return "unknown"


def shared_sources() -> dict[str, dict[str, str]]:
    """gallery_photos/SOURCES.tsv by file: class, source, licence, author."""
    path = shared_dir() / "SOURCES.tsv"
    try:
        with open(path, newline="", encoding="utf-8") as f:
            return {r["file"]: r for r in csv.DictReader(f, delimiter="\t")}
    except OSError as e:
        raise BuildError(f"cannot read {path} ({e}); set SBIR_DATA_DIR to the shared data folder") from None


def photo_id(row: SourceRow) -> str:
    """Stable, readable id: `tuxpaint-animals-mammals-dogs-dog`, `skimage-chelsea`, `shared-cat-npc-cat`."""
    path = row.path.split("!", 1)[1].replace("gcompris/src/activities/", "") if row.kind == "gcompris" else row.path
    stem = Path(path).with_suffix("").as_posix()
    return f"{row.kind}-" + re.sub(r"[^a-z0-9]+", "-", stem.lower()).strip("-")


def stamp_caption(png: Path) -> str:
    """A stamp's English description: the first line of its `.txt` (Tux Paint reads the same file)."""
    txt = png.with_suffix(".txt")
    if txt.is_file():
        first = txt.read_text(encoding="utf-8", errors="replace").splitlines()
        if first and first[0].strip():
            return first[0].strip()
    return png.stem.replace("_", " ").replace("-", " ")


def describe(row: SourceRow, root: Path, versions: dict[str, str], shared: dict[str, dict[str, str]]) -> dict[str, str]:
    """caption, source, licence and author of one photo, as metadata.csv records them."""
    kind = KINDS[row.kind]
    base = kind_dir(row.kind, root)
    caption, licence, author = row.caption, row.licence or kind.licence, row.author or kind.author
    if row.kind == "tuxpaint":
        caption = caption or stamp_caption(base / row.path)
        source = f"{kind.package} {versions[kind.package]}: /usr/share/tuxpaint/stamps/{row.path}"
    elif kind.package:                                      # tuxpaint-data, gcompris, scratch, jigzo, lomiri
        source = f"{kind.package} {versions[kind.package]}: /{kind.folder}/{row.path.replace('!', '.rcc!', 1) if row.kind == 'gcompris' else row.path}"
    elif row.kind == "skimage":
        import skimage
        source = f"scikit-image {skimage.__version__}: skimage/data/{row.path}"
    elif row.kind == "sunpy":
        source = f"sunpy {SUNPY[1]} (PyPI wheel): {kind.folder}/{row.path}"
    else:
        rec = shared.get(row.path)
        if rec is None:
            raise BuildError(f"{row.source}: not listed in {shared_dir() / 'SOURCES.tsv'}")
        source = f"gallery_photos/{row.path}: {rec['source']}"
        licence, author = row.licence or rec["licence"], row.author or rec["author"]
    if row.origin:
        source += f" (original: {row.origin})"
    if row.crop:
        source += f" (cropped to {row.crop})"
    caption = caption or row.display
    if not licence:
        raise BuildError(f"{row.source}: no licence stated; a photo whose licence cannot be stated stays out")
    return {"caption": caption, "source": source, "licence": licence, "author": author}


def missing_message(missing: Sequence[SourceRow], root: Path) -> str:
    """What to install to get the missing sources: the build stops with this, not a traceback."""
    kinds = sorted({r.kind for r in missing})
    pk = sorted({KINDS[k].package for k in kinds if KINDS[k].package})
    lines = [f"{len(missing)} listed source files are missing (e.g. {', '.join(r.source for r in missing[:3])})."]
    if pk:
        lines += [f"Debian packages needed under {root}: {' '.join(pk)}. Either",
                  f"    apt-get install -y {' '.join(pk)}",
                  f"or  apt-get download {' '.join(pk)} && for d in *.deb; do dpkg -x $d pkgroot; done",
                  "    SBIR_PACKAGES_ROOT=$PWD/pkgroot python -m galleries.build_bundled"]
    if "shared" in kinds:
        lines.append(f"Shared photos are read from {shared_dir()} (set SBIR_DATA_DIR).")
    if "skimage" in kinds:
        lines.append("scikit-image's sample photos come with `pip install scikit-image`.")
    if "sunpy" in kinds:
        lines.append(f"sunpy's solar images are read from its wheel, without installing it:\n"
                     f"    pip download {SUNPY[0]}=={SUNPY[1]} --no-deps -d {wheels_dir(root)}   (or set SBIR_WHEELS_DIR)")
    return "\n".join(lines)

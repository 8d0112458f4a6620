"""Build the bundled demo gallery (`galleries/bundled`) from redistributable photos, and index it.

The demo must search real photos on a fresh machine with no data download, and Sketchy's photos may
not be committed. So the gallery is made only of photos whose licence lets us redistribute them:
Debian packages (`tuxpaint-stamps-default`, `tuxpaint-data`, `gcompris-qt-data`, `scratch`, `jigzo-data`,
`lomiri-wallpapers-16.04`, `plasma-workspace-wallpapers`, and a few photos from `scribus-template`,
`kphotoalbum`, `gimp-help-en`, `forensics-samples-files`, `nip2`, `mate-backgrounds`, `imagemagick-6-doc`),
the CC0/public-domain
photos inside scikit-image, NASA's images of the Sun in sunpy's test data (read from its wheel), and
`gallery_photos/` of the shared data (each photo with its own
licence and author in its SOURCES.tsv). Which files go in, their labels and how each label was decided
is the reviewed list `galleries/bundled_sources.tsv` (read by `galleries/sources.py`); nothing is
chosen automatically. From the repository root:

    apt-get download tuxpaint-stamps-default tuxpaint-data gcompris-qt-data scratch jigzo-data lomiri-wallpapers-16.04 \
        plasma-workspace-wallpapers scribus-template kphotoalbum gimp-help-en forensics-samples-files nip2 \
        mate-backgrounds imagemagick-6-doc
    for d in *.deb; do dpkg -x $d pkgroot; done && export SBIR_PACKAGES_ROOT=$PWD/pkgroot   # (dpkg -x keeps
                                                   # /usr/share/doc, which minimal installs drop)
    pip download sunpy==7.0.5 --no-deps -d wheels && export SBIR_WHEELS_DIR=$PWD/wheels
    python -m galleries.build_bundled              # images + metadata.csv + NOTICE, then --index
    python -m galleries.build_bundled --index      # only (re)compute embeddings for every backend

Measuring it: `python -m sbir_core.bench.gallery`; any folder into a vector store:
`python -m sbir_core.store.build FOLDER --store URI`.

`SBIR_PACKAGES_ROOT` (or `--packages-root`) may also be / after `apt-get install` of the same
packages, where /usr/share/doc is kept; its `wheels/` is where the sunpy wheel is looked for when
SBIR_WHEELS_DIR is not set.
"""
from __future__ import annotations

import argparse
import csv
import shutil
import sys
from pathlib import Path
from typing import Sequence

from PIL import Image

from sbir_core.config import REPO_ROOT
from sbir_core.gallery import BUNDLED_DIR, METADATA_COLUMNS, Gallery

from .notice import write_notice
from .sources import (APT_PACKAGES, PACKAGES_ROOT, BuildError, describe, missing_message, open_source,
                      package_version, photo_id, read_sources, shared_sources, source_exists)

EXTRA_COLUMNS = ("author", "display")            # metadata.csv columns after Gallery's own
MAX_SIDE = 256          # thumbnails: longest side at most this many pixels
JPEG_QUALITY = 85


def on_white(im: Image.Image) -> Image.Image:
    """Transparent cut-out photo -> RGB on white (a JPEG has no alpha; black behind would mislead)."""
    if im.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        im = im.convert("L")   # only scikit-image's greyscale photos; they are 8-bit already
    im = im.convert("RGBA")
    white = Image.new("RGBA", im.size, (255, 255, 255, 255))
    return Image.alpha_composite(white, im).convert("RGB")


def thumbnail(im: Image.Image) -> Image.Image:
    """Composited onto white and shrunk so the longest side is at most MAX_SIDE (never enlarged)."""
    im = on_white(im)
    im.thumbnail((MAX_SIDE, MAX_SIDE), Image.Resampling.LANCZOS)
    return im


def build(root: Path = PACKAGES_ROOT, out_dir: Path = BUNDLED_DIR) -> Gallery:
    """Write images/, metadata.csv, NOTICE and LICENSES/ into `out_dir` from the reviewed list."""
    rows = [r for r in read_sources() if r.status == "photo"]
    missing = [r for r in rows if not source_exists(r, root)]
    if missing:
        raise BuildError(missing_message(missing, root))
    versions = {p: package_version(p, root) for p in APT_PACKAGES}
    shared = shared_sources() if any(r.kind == "shared" for r in rows) else {}

    images, fresh = out_dir / "images", out_dir / ".images.new"
    before = images_digest(out_dir)
    if fresh.exists():
        shutil.rmtree(fresh)
    fresh.mkdir(parents=True)          # written aside: a failed build leaves the old gallery whole
    records: list[dict[str, str]] = []
    try:
        for row in rows:
            pid = photo_id(row)
            if any(r["id"] == pid for r in records):
                raise BuildError(f"duplicate photo id {pid}")
            try:
                im = thumbnail(open_source(row, root))
            except (OSError, ValueError) as e:
                raise BuildError(f"{row.source}: cannot read the image ({e})") from None
            im.save(fresh / f"{pid}.jpg", "JPEG", quality=JPEG_QUALITY, optimize=True, progressive=True)
            records.append({"id": pid, "file": f"images/{pid}.jpg", "label": row.label,
                            **describe(row, root, versions, shared), "display": row.display})
    except BaseException:
        shutil.rmtree(fresh, ignore_errors=True)
        raise
    if images.exists():
        shutil.rmtree(images)          # a rebuild must not leave photos that the list dropped
    fresh.rename(images)
    write_metadata(records, out_dir)
    emb = out_dir / "embeddings"
    if emb.exists() and (not before or images_digest(out_dir) != before):
        shutil.rmtree(emb)             # features of the old images are wrong for the new ones
    import skimage
    write_notice(records, out_dir, versions, skimage.__version__, MAX_SIDE)
    return Gallery.load(out_dir)


def images_digest(out_dir: Path) -> str:
    """One hash over every listed image's name and bytes, in metadata order (the order of the
    embedding rows): a rebuild that changes neither keeps the embeddings."""
    import hashlib
    h = hashlib.sha256()
    try:
        for r in read_metadata(out_dir):
            h.update(r["file"].encode() + b"\0" + (out_dir / r["file"]).read_bytes())
    except (OSError, KeyError, csv.Error):
        return ""
    return h.hexdigest()


def write_metadata(records: Sequence[dict[str, str]], out_dir: Path) -> None:
    """metadata.csv: Gallery's columns, then `author` and `display` (the label the app should show:
    the class as people read it, or the caption-only photo's short name)."""
    with open(out_dir / "metadata.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=METADATA_COLUMNS + EXTRA_COLUMNS)
        w.writeheader()
        for r in records:
            w.writerow({k: r.get(k, "") for k in METADATA_COLUMNS + EXTRA_COLUMNS})


def read_metadata(out_dir: Path = BUNDLED_DIR) -> list[dict[str, str]]:
    """metadata.csv's rows as written (every column, labels as strings)."""
    with open(out_dir / "metadata.csv", newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def index(out_dir: Path = BUNDLED_DIR) -> dict[str, Path]:
    """Compute and save every available backend's features for the gallery; drop stale ones.

    Recomputes even when a file exists: a same-length file from older images would pass as valid.
    """
    from sbir_core.backends import available_backends, load_backend
    gallery = Gallery.load(out_dir)
    emb = out_dir / "embeddings"
    emb.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    for name in available_backends(include_baselines=True):    # random's features too: the app would write them
        backend = load_backend(name)
        path = emb / f"{backend.feature_key}.npy"
        path.unlink(missing_ok=True)
        feats = gallery.features(backend, progress=lambda d, n: print(f"\r{name}: {d}/{n}", end="", flush=True))
        print(f"\r{name}: {feats.shape} -> {path.relative_to(REPO_ROOT) if path.is_relative_to(REPO_ROOT) else path}")
        written[backend.feature_key] = path
    for stale in emb.glob("*.npy"):
        if stale.stem not in written:
            print(f"removing stale {stale.name}")
            stale.unlink()
    return written


def summary(out_dir: Path = BUNDLED_DIR) -> str:
    """One line on the built gallery: photos, labelled classes, caption-only photos, size."""
    rows = read_metadata(out_dir)
    labelled = {r["label"] for r in rows if r["label"]}
    size = sum(p.stat().st_size for p in (out_dir / "images").iterdir())
    return (f"{len(rows)} photos, {sum(1 for r in rows if r['label'])} labelled in {len(labelled)} classes, "
            f"{sum(1 for r in rows if not r['label'])} caption-only, {size / 2**20:.1f} MB of images")




def main(argv: list[str] | None = None) -> None:
    """The command line; a BuildError or a missing file is one message and exit status 1."""
    ap = argparse.ArgumentParser(prog="python -m galleries.build_bundled", description=__doc__.split("\n\n")[0])
    ap.add_argument("--index", action="store_true", help="only (re)compute embeddings of the existing gallery")
    ap.add_argument("--no-index", action="store_true", help="build images/metadata/NOTICE but do not index")
    ap.add_argument("--gallery", type=Path, default=BUNDLED_DIR, help="gallery folder for --index")
    ap.add_argument("--packages-root", type=Path, default=PACKAGES_ROOT,
                    help="where the Debian packages' files are: / when installed, or a `dpkg -x` folder")
    a = ap.parse_args(argv)
    try:
        if not a.index:
            build(a.packages_root)
            print(summary())
        if a.index or not a.no_index:
            index(a.gallery)
    except BuildError as e:
        sys.exit(f"build_bundled: {e}")
    except OSError as e:          # e.g. --gallery names a folder without a metadata.csv
        sys.exit(f"build_bundled: {e.strerror or e}: {e.filename or ''}")


if __name__ == "__main__":
    main()

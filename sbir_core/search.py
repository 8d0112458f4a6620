"""Search from the command line, for scripts: one sketch in, ranked photo ids, labels and scores out.

    python -m sbir_core.search SKETCH --gallery FOLDER_OR_STORE --backend NAME --k 10 [--json]

`--gallery` is `bundled` (the default, or $SBIR_STORE when that names a Milvus store), a gallery
folder (with metadata.csv), any folder of photos (`<class>/<image>` or flat; indexed on first use
and cached), or a store filled by `python -m sbir_core.store.build FOLDER --store URI`:
`./photos.db` (Milvus Lite) or `http://host:19530` (a Milvus server).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from .backends import ModelFileError, available_backends, load_backend
from .data.preprocess import ImageInputError
from .gallery import Gallery
from .store import StoreError, is_memory, is_store_uri, store_uri


def open_gallery(spec: str | None = None) -> Gallery:
    """The gallery `spec` names (see the module docstring); default: $SBIR_STORE's store, else bundled."""
    if spec is None:
        spec = "bundled" if is_memory() else store_uri()
    if spec == "bundled":
        return Gallery.bundled()
    if is_store_uri(spec):
        if is_memory(spec):
            raise StoreError("'memory' holds nothing between runs: name a gallery folder, 'bundled', or a Milvus store")
        return Gallery.from_store(spec)
    path = Path(spec).expanduser()
    if (path / "metadata.csv").is_file():
        return Gallery.load(path)
    if path.is_dir():
        return Gallery.from_folder(path)
    raise StoreError(f"--gallery {spec!r} is neither 'bundled', a folder, a .db file nor a Milvus server URL")


def search(sketch: str, gallery: Gallery, backend_name: str, k: int = 10,
           threshold: float | None = None) -> dict[str, Any]:
    """Ranked results as plain data: what `--json` prints."""
    backend = load_backend(backend_name)
    if threshold is not None:
        if backend.default_threshold is None:
            raise ValueError(f"--threshold needs a backend that ranks by similarity, not {backend_name}")
        r = backend.search_within(sketch, gallery, threshold)
        r.ids, r.scores, r.labels, r.indices = r.ids[:k], r.scores[:k], r.labels[:k], r.indices[:k]
    else:
        r = backend.search(sketch, gallery, k)
    out: dict[str, Any] = {
        "backend": backend_name, "gallery": gallery.name, "photos": len(gallery),
        "store": gallery.store.uri if gallery.store is not None else None,
        "results": [{"rank": n + 1, "id": pid, "label": gallery.display_label(int(i)), "class": lab,
                     "score": round(float(s), 6), "file": str(gallery.sources[int(i)]) if isinstance(
                         gallery.sources[int(i)], (str, Path)) else None}
                    for n, (pid, lab, s, i) in enumerate(zip(r.ids, r.labels, r.scores, r.indices))],
        "timings_ms": {a: round(b, 2) for a, b in r.extras.get("timings_ms", {}).items()}}
    if "top_classes" in r.extras:
        out["top_classes"] = [[c, round(p, 4)] for c, p in r.extras["top_classes"]]
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("sketch", help="the sketch: an image file (PNG, JPEG, ...)")
    ap.add_argument("--gallery", default=None, help="bundled, a folder, ./photos.db or http://host:19530 "
                    "(default: $SBIR_STORE when it names a store, else bundled)")
    ap.add_argument("--backend", default="triplet", help="one of: " + ", ".join(available_backends(True)))
    ap.add_argument("--k", type=int, default=10, help="how many results")
    ap.add_argument("--threshold", type=float, default=None,
                    help="every photo at least this similar instead (embedding backends; at most --k shown)")
    ap.add_argument("--json", action="store_true", help="print JSON instead of a table")
    a = ap.parse_args(argv)
    try:
        if not Path(a.sketch).is_file():
            raise ImageInputError(f"no such sketch file: {a.sketch}")
        out = search(a.sketch, open_gallery(a.gallery), a.backend, a.k, a.threshold)
    except (ImageInputError, ModelFileError, StoreError, ValueError, TypeError, OSError) as e:
        sys.exit(f"search: {e}")
    if a.json:
        print(json.dumps(out, indent=1))
        return
    where = out["store"] or out["gallery"]
    print(f"{a.backend} on {where} ({out['photos']} photos), {out['timings_ms'].get('total', 0):.1f} ms")
    if "top_classes" in out:
        print("sketch read as: " + ", ".join(f"{c} {p:.0%}" for c, p in out["top_classes"][:3]))
    for r in out["results"]:
        print(f"{r['rank']:>4}  {r['score']:.4f}  {r['id']}  {r['label']}")
    if not out["results"]:
        print("no photo scores above the threshold" if a.threshold is not None else "no results")


if __name__ == "__main__":
    main()

"""What a visitor gets from a saved gallery (the bundled one by default): its size, its labelled
classes, how many Quick, Draw! classes it covers, and per backend hit@4/P@4 of held-out doodles.

    python -m sbir_core.bench.gallery [--gallery DIR] [--backends classifier,triplet] [--classes-of DIR] [--out F.json]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Iterable, Sequence

from ..config import data_dir
from ..data.classes import canonical
from ..gallery import BUNDLED_DIR, Gallery


def quickdraw_classes() -> set[str]:
    """Canonical classes with Quick, Draw! drawings in the shared data (bitmaps and strokes)."""
    qd = data_dir() / "quickdraw"
    names = [p.name[:-4] for p in (qd / "numpy_bitmap").glob("*.npy")]
    names += [p.name[:-7] for p in (qd / "simplified").glob("*.ndjson")]
    return {c for c in (canonical(n) for n in names) if c}


def measure(out_dir: Path = BUNDLED_DIR, backends: Sequence[str] | None = None, per_class: int = 10,
            only_classes: Iterable[str] | None = None) -> dict[str, Any]:
    """What a visitor gets from this gallery: its size, labelled classes, how many Quick, Draw! classes
    it covers, and per backend hit@4/P@4 of held-out Quick, Draw! doodles (the benchmark's own query
    set: `sbir_core.heldout.quickdraw_canvas`, rows 0-9 of each class), optionally restricted to
    `only_classes` (to compare two galleries on the classes both have)."""
    from ..backends import available_backends, load_backend
    from ..evaluate import metrics
    from ..heldout import quickdraw_canvas
    gallery = Gallery.load(out_dir)
    labelled = sorted({lab for lab in gallery.labels if lab})
    qd = quickdraw_classes()
    out: dict[str, Any] = {
        "gallery": str(out_dir), "photos": len(gallery), "labelled_photos": sum(1 for lab in gallery.labels if lab),
        "labelled_classes": len(labelled), "quickdraw_classes": len(qd),
        "quickdraw_classes_covered": len(qd & set(labelled)), "backends": {}}
    s = quickdraw_canvas(gallery, per_class=per_class)
    queries, labels = s.queries, s.query_labels
    if only_classes is not None:
        keep = set(only_classes)
        pairs = [(q, lab) for q, lab in zip(queries, labels) if lab in keep]
        queries, labels = [q for q, _ in pairs], [lab for _, lab in pairs]
    gl = [lab or "" for lab in gallery.labels]
    for name in backends or available_backends(include_baselines=True):
        try:
            backend = load_backend(name)
            scores = backend.score_matrix(queries, gallery)                            # (Q, N)
            m = metrics(scores, labels, gl)
            out["backends"][name] = {k: m[k] for k in ("hit@4", "P@4")} | {
                "queries": len(labels), "classes": len(set(labels))}
        except Exception as e:   # one broken backend is a row in the report, not a crash
            out["backends"][name] = {"error": f"{type(e).__name__}: {e}"}
        print(f"  {name}: {out['backends'][name]}", file=sys.stderr, flush=True)
    return out


def main(argv: list[str] | None = None) -> None:
    """The command line: the figures as JSON on stdout (and in --out)."""
    ap = argparse.ArgumentParser(prog="python -m sbir_core.bench.gallery", description=__doc__.split("\n\n")[0])
    ap.add_argument("--gallery", type=Path, default=BUNDLED_DIR, help="saved gallery folder (default: the bundled one)")
    ap.add_argument("--backends", default="", help="comma-separated backends (default: all)")
    ap.add_argument("--classes-of", type=Path, default=None,
                    help="only the Quick, Draw! classes this other gallery folder also has")
    ap.add_argument("--out", type=Path, default=None, help="also write the figures as JSON here")
    a = ap.parse_args(argv)
    try:
        only = None
        if a.classes_of:
            only = {lab for lab in Gallery.load(a.classes_of).labels if lab}
        res = measure(a.gallery, [b for b in a.backends.split(",") if b] or None, only_classes=only)
    except OSError as e:          # e.g. --gallery names a folder without a metadata.csv
        sys.exit(f"bench.gallery: {e.strerror or e}: {e.filename or ''}")
    text = json.dumps(res, indent=1)
    print(text)
    if a.out:
        a.out.write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()

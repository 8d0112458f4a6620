"""Choose the `classifier` backend's first-row hedge on validation sketches (never on the benchmark's
held-out doodles):

    python -m sbir_core.train.first_row            # the sweep, on the served model
    python -m sbir_core.train.first_row --write    # and store the chosen share in models/classifier.json

Validation queries: the Quick, Draw! bitmap rows 580-599 and the TU-Berlin `val` sketches of the
classes the bundled gallery has (both only pick epochs in training), against the bundled gallery,
as the app searches it. The hedge trades P@4 and mAP@all (a second class's photo takes a first-row
place from the first class's) for hit@4 (a right photo in the first row when the reading is split).
Rule: the smallest share whose P@4 and mAP@all each fall by at most MAX_LOSS from the plain order.
"""
from __future__ import annotations

import argparse
import json

SHARES = (0.0, 0.9, 0.7, 0.5, 0.35, 0.25)
MAX_LOSS = 0.005


def validation_queries() -> tuple[list, list[str]]:
    """(sketch sources for `sketch_input`, labels) of the validation rows, gallery classes only."""
    from ..config import data_dir
    from ..gallery import Gallery
    from .features import quickdraw_records, sketch_image, tuberlin_records
    have = {c for c in Gallery.bundled().labels if c}
    root = data_dir()
    recs = [r for r in quickdraw_records(root) + tuberlin_records(root) if r.split == "val" and r.label in have]
    return [sketch_image(r.path) for r in recs], [r.label for r in recs]


def sweep(shares=SHARES) -> dict[str, dict[str, float]]:
    """{share: hit@4, P@4, mAP@all} of the served classifier on the validation queries."""
    from ..backends import load_backend
    from ..evaluate import metrics
    from ..gallery import Gallery
    backend = load_backend("classifier", threads=1)
    gallery = Gallery.bundled()
    sketches, labels = validation_queries()
    out = {}
    for share in shares:
        backend.meta["first_row_hedge"] = share
        m = metrics(backend.score_matrix(sketches, gallery), labels, gallery.labels)
        out[str(share)] = {k: round(m[k], 4) for k in ("hit@4", "P@4", "mAP@all")} | {"queries": len(labels)}
        print(share, out[str(share)], flush=True)
    return out


def choose(res: dict[str, dict[str, float]]) -> float:
    """The smallest share within MAX_LOSS of the plain order's P@4 and mAP@all (0 if none is)."""
    plain = res["0.0"]
    ok = [float(s) for s, m in res.items() if float(s) > 0
          and all(plain[k] - m[k] <= MAX_LOSS for k in ("P@4", "mAP@all"))]
    return min(ok, default=0.0)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m sbir_core.train.first_row", description=__doc__.split("\n\n")[0])
    ap.add_argument("--write", action="store_true", help="store the chosen share in models/classifier.json")
    a = ap.parse_args(argv)
    res = sweep()
    share = choose(res)
    print(f"chosen first_row_hedge: {share} ({res[str(share)]})")
    if a.write:
        from ..config import MODELS_DIR
        path = MODELS_DIR / "classifier.json"
        meta = json.loads(path.read_text())
        meta["first_row_hedge"] = share
        meta["first_row_hedge_val"] = res
        path.write_text(json.dumps(meta, indent=1) + "\n")


if __name__ == "__main__":
    main()

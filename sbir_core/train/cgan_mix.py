"""Choose the `cgan` backend's `class_mix` on the Sketchy `val` split (never on `test`).

Score of a photo = cosine(E2(imaginary photo), E2(photo)) + class_mix x P(sketch is of the photo's
class) from the sketch classifier (labelled photos). class_mix = 0 is retrieval by the imaginary
photo alone. The weight with the best val mAP@all is written into `models/cgan.json` with the
figures of every weight tried, so the served setting says where it came from.

    python -m sbir_core.train.cgan_mix [--models-dir DIR] [--attach-classifier] [--write]   # choose on val
    python -m sbir_core.train.cgan_mix --split test --weights 0,0.3        # report the chosen one on test
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

WEIGHTS = (0.0, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0, 2.0, 5.0, 10.0, 100.0)


def sweep(split: str = "val", weights=WEIGHTS, models_dir: Path | None = None) -> dict[str, dict[str, float]]:
    """{weight: metrics} for the v2 backend's queries of `split` against every Sketchy photo."""
    from ..backends.cgan import CGANBackend
    from ..config import data_dir
    from ..data.preprocess import sketch_input
    from ..data.readers import image_folder
    from ..evaluate import metrics, select_queries
    from ..gallery import Gallery

    root = data_dir() / "sketchy"
    gallery = Gallery.from_folder(root / "photo")
    queries = select_queries(image_folder(root / "sketch", sketches=True), split)
    backend = CGANBackend(threads=1, models_dir=models_dir)
    if backend.class_model is None:
        raise SystemExit("class_mix needs the sketch classifier: cgan.json has no 'class_model' (see attach_classifier)")
    backend.class_mix = 1.0                                   # queries carry the posterior
    out = {}
    ql, gl = [q.label for q in queries], list(gallery.labels)
    feats = gallery.features(backend)
    rows = [backend.encode_sketches(np.stack([sketch_input(q.path, backend.preprocess) for q in queries[i:i + 32]]))[0]
            for i in range(0, len(queries), 32)]
    q = np.concatenate(rows)
    for w in weights:
        backend.class_mix = w
        s = backend.score(q, feats, gl) if w > 0 else q[:, :feats.shape[1]] @ feats.T
        m = metrics(s, ql, gl, [x.photo_id for x in queries], [Path(str(p)).stem for p in gallery.sources])
        out[str(w)] = {k: round(m[k], 4) for k in ("mAP@all", "P@20", "acc@10")}
        print(w, out[str(w)], flush=True)
    return out


def attach_classifier(meta: dict) -> dict:
    """A version-1 model's metadata with the sketch classifier's chain named (version 2 names it
    already): serving then prepares the sketch at the classifier's side and shrinks it for G."""
    from ..backends.onnx_model import read_meta
    cls = read_meta("classifier")
    return {**meta, "class_model": list(cls["sketch_model"]), "class_preprocess": cls["preprocess"]}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m sbir_core.train.cgan_mix", description=__doc__.split("\n\n")[0])
    ap.add_argument("--write", action="store_true", help="store the best weight in models/cgan.json")
    ap.add_argument("--models-dir", type=Path, help="a models folder with cgan.json (default: models/)")
    ap.add_argument("--split", default="val", choices=["val", "test"], help="choose on val; test only reports")
    ap.add_argument("--weights", help="comma-separated class_mix values (default: a sweep)")
    ap.add_argument("--out", type=Path, help="also write the figures here (JSON)")
    ap.add_argument("--attach-classifier", action="store_true",
                    help="first name the sketch classifier's files in a version-1 cgan.json (see attach_classifier)")
    a = ap.parse_args(argv)
    if a.attach_classifier:
        from ..config import MODELS_DIR
        path = (a.models_dir or MODELS_DIR) / "cgan.json"
        path.write_text(json.dumps(attach_classifier(json.loads(path.read_text())), indent=1) + "\n")
    weights = tuple(float(w) for w in a.weights.split(",")) if a.weights else WEIGHTS
    res = sweep(a.split, weights, models_dir=a.models_dir)
    if a.out:
        a.out.write_text(json.dumps({"split": a.split, "models_dir": str(a.models_dir or "models"), "by_weight": res}, indent=1) + "\n")
    best = max(res, key=lambda w: res[w]["mAP@all"])
    print(f"best class_mix on {a.split}: {best} ({res[best]})")
    if a.write and a.split != "val":
        raise SystemExit("--write chooses on val only")
    if a.write:
        from ..config import MODELS_DIR
        path = (a.models_dir or MODELS_DIR) / "cgan.json"
        meta = json.loads(path.read_text())
        meta["class_mix"] = float(best)
        meta["class_mix_val"] = res
        # the picker and Compare say what ranks the photos
        meta["title"] = "cGAN (imaginary photo + class reading)" if float(best) > 0 else "cGAN (imaginary photo)"
        path.write_text(json.dumps(meta, indent=1) + "\n")


if __name__ == "__main__":
    main()

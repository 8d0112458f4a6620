"""`python -m sbir_core.tsne_map`, as a developer runs it: a small real map (20 Sketchy photos and 8
held-out sketches) written where `--out` says, loadable by the app, and a new sketch placed among its
own kind; a backend that does not embed gets a one-line error."""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
from PIL import Image

from sbir_core import load_backend
from sbir_core.config import REPO_ROOT
from sbir_core.data.readers import sketchy
from sbir_core.data.splits import split_of
from sbir_core.tsne_map import EmbeddingMap, map_path, sketch_vector


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sbir_core.tsne_map", *args], cwd=REPO_ROOT, capture_output=True,
                          text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=300)


def test_a_map_is_built_loaded_and_places_a_new_sketch_among_its_kind(tmp_path, sketchy_dir, small_photo_dir):
    _, sketches = sketchy(sketchy_dir)
    held = {c: [s for s in sketches if s.label == c and split_of(s.photo_id) == "test"]
            for c in ("airplane", "cat", "shoe", "teapot")}
    for c, items in held.items():
        (tmp_path / "sketches" / c).mkdir(parents=True)
        for s in items[:2]:
            (tmp_path / "sketches" / c / s.path.name).symlink_to(s.path)
    out = tmp_path / "models" / map_path("triplet").name
    r = run("--backend", "triplet", "--photos", str(small_photo_dir), "--sketches", str(tmp_path / "sketches"),
            "--per-class", "2", "--perplexity", "5", "--out", str(out))
    assert r.returncode == 0 and r.stdout.strip() == f"wrote {out}", r.stderr
    m = EmbeddingMap.load("triplet", tmp_path / "models")
    assert m.coords.shape == (36, 2) and np.isfinite(m.coords).all()
    assert list(m.domains).count("photo") == 20 and list(m.domains).count("sketch") == 8 + 8   # + 2 doodles a kind
    doodle = int(np.flatnonzero(np.char.find(m.sources.astype(str), "quickdraw") >= 0)[0])
    assert m.image(doodle).size == (400, 400)                    # a held-out doodle, drawn as on the canvas
    assert m.feature_key == load_backend("triplet").feature_key
    new = held["cat"][2]                                         # a sketch the map was not built with
    _, near = m.place(sketch_vector(load_backend("triplet"), Image.open(new.path)))
    assert list(m.labels[near]).count("cat") >= len(near) // 2, list(m.labels[near])


def test_a_backend_that_does_not_embed_gets_a_message(tmp_path, small_photo_dir):
    r = run("--backend", "random", "--photos", str(small_photo_dir), "--out", str(tmp_path / "m.npz"))
    assert r.returncode == 2 and r.stderr.startswith("error: ") and "Traceback" not in r.stderr, r.stderr

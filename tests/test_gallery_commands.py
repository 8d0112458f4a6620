"""`python -m galleries.build_bundled --index` and `python -m sbir_core.bench.gallery` on a small saved
gallery (a copy of a few bundled photos in a temporary folder), as a maintainer runs them after a retrain."""
from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys

import numpy as np

from sbir_core import available_backends, load_backend
from sbir_core.config import REPO_ROOT
from sbir_core.gallery import BUNDLED_DIR, Gallery

KINDS = ("apple", "cat", "guitar")


def run(module: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", module, *args], cwd=REPO_ROOT, capture_output=True,
                          text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=600)


def small_gallery(folder):
    """Two bundled photos of each of KINDS, saved as a gallery folder (metadata.csv + images/)."""
    with open(BUNDLED_DIR / "metadata.csv", newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        fields, rows = reader.fieldnames, [r for r in reader if r["label"] in KINDS]
    rows = [r for k in KINDS for r in [x for x in rows if x["label"] == k][:2]]
    (folder / "images").mkdir(parents=True)
    for r in rows:
        shutil.copyfile(BUNDLED_DIR / r["file"], folder / r["file"])
    with open(folder / "metadata.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        w.writerows(rows)
    return folder


def test_index_writes_every_backends_embeddings_and_drops_stale_ones(tmp_path):
    g = small_gallery(tmp_path / "g")
    (g / "embeddings").mkdir()
    np.save(g / "embeddings" / "triplet-oldmodel.npy", np.zeros((6, 3), np.float32))      # a retired model's file
    r = run("galleries.build_bundled", "--index", "--gallery", str(g))
    assert r.returncode == 0, r.stderr
    assert "removing stale triplet-oldmodel.npy" in r.stdout and not (g / "embeddings" / "triplet-oldmodel.npy").exists()
    gallery = Gallery.load(g)
    for name in available_backends(include_baselines=True):
        backend = load_backend(name)
        feats = np.load(g / "embeddings" / f"{backend.feature_key}.npy")
        assert feats.shape[0] == 6, name
        assert np.abs(feats - backend.index_photos(gallery.sources)).max() < 2e-3, name


def test_measure_reports_hit_at_4_per_backend_as_json(tmp_path):
    g = small_gallery(tmp_path / "g")
    out = tmp_path / "measure.json"
    r = run("sbir_core.bench.gallery", "--gallery", str(g), "--backends", "classifier,random", "--out", str(out))
    assert r.returncode == 0, r.stderr
    res = json.loads(out.read_text())
    assert res["photos"] == 6 and res["labelled_classes"] == 3 and res["quickdraw_classes_covered"] == 3
    assert res["backends"]["classifier"]["queries"] == 30 and res["backends"]["classifier"]["classes"] == 3
    assert res["backends"]["classifier"]["hit@4"] > res["backends"]["random"]["hit@4"]
    assert json.loads(r.stdout) == res


def test_a_folder_without_metadata_is_a_message(tmp_path):
    r = run("galleries.build_bundled", "--index", "--gallery", str(tmp_path))
    assert r.returncode != 0 and r.stderr.startswith("build_bundled: ") and "Traceback" not in r.stderr, r.stderr

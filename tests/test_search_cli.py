"""`python -m sbir_core.search`, as a script runs it: the default gallery, a folder, retrieval by
similarity threshold, the table and JSON outputs, and bad input as a one-line message."""
from __future__ import annotations

import json
import os
import subprocess
import sys

from sbir_core.config import REPO_ROOT

APPLE = REPO_ROOT / "assets" / "examples" / "apple.png"


def search(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("SBIR_STORE", None)
    return subprocess.run([sys.executable, "-m", "sbir_core.search", *args], cwd=REPO_ROOT, capture_output=True,
                          text=True, env=env, timeout=300)


def test_default_gallery_table_names_the_reading_and_ranks_apples_first():
    r = search(str(APPLE), "--backend", "classifier", "--k", "4")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    from sbir_core import Gallery
    assert lines[0].startswith(f"classifier on bundled ({len(Gallery.bundled())} photos), ") and lines[0].endswith(" ms")
    assert lines[1].startswith("sketch read as: apple ")
    rows = lines[2:]
    assert [row.split()[0] for row in rows] == ["1", "2", "3", "4"]
    assert all(row.split()[-1] == "apple" for row in rows), rows


def test_a_folder_gallery_as_json(small_photo_dir):
    r = search(str(APPLE), "--gallery", str(small_photo_dir), "--backend", "triplet", "--k", "5", "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["photos"] == 20 and out["store"] is None and len(out["results"]) == 5
    assert [x["rank"] for x in out["results"]] == [1, 2, 3, 4, 5]
    scores = [x["score"] for x in out["results"]]
    assert scores == sorted(scores, reverse=True) and out["results"][0]["class"] in {"cat", "airplane", "shoe", "teapot"}


def test_threshold_returns_every_photo_at_least_that_similar(small_photo_dir):
    full = json.loads(search(str(APPLE), "--gallery", str(small_photo_dir), "--backend", "triplet", "--k", "20",
                             "--json").stdout)["results"]
    t = full[6]["score"] - 1e-6                            # scores are printed to 6 decimals
    r = search(str(APPLE), "--gallery", str(small_photo_dir), "--backend", "triplet", "--k", "20", "--json",
               "--threshold", str(t))
    within = json.loads(r.stdout)["results"]
    assert all(x["score"] >= t - 1e-6 for x in within) and [x["id"] for x in within] == [x["id"] for x in full[:len(within)]]
    assert len(within) >= 7
    none = search(str(APPLE), "--gallery", str(small_photo_dir), "--backend", "triplet", "--threshold", "1.01")
    assert none.returncode == 0 and none.stdout.splitlines()[-1] == "no photo scores above the threshold"


def test_bad_input_is_one_line_not_a_traceback(tmp_path):
    for args, says in [(["nowhere.png"], "no such sketch file"),
                       ([str(APPLE), "--backend", "nope"], "nope"),
                       ([str(APPLE), "--gallery", str(tmp_path / "missing")], "neither 'bundled', a folder"),
                       ([str(APPLE), "--backend", "classifier", "--threshold", "0.5"], "--threshold needs")]:
        r = search(*args)
        assert r.returncode != 0 and "Traceback" not in r.stderr, (args, r.stderr)
        assert r.stderr.strip().startswith("search: ") and says in r.stderr, (args, r.stderr)

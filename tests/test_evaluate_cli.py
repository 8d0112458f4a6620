"""The evaluation CLI end to end on a small real gallery."""
import json

import numpy as np

from sbir_core.evaluate import main, metrics


def test_cli_writes_metrics_and_a_dump_that_recomputes(tmp_path, small_photo_dir, sketchy_dir):
    sk = tmp_path / "sketches"
    for c in ("airplane", "cat"):
        (sk / c).mkdir(parents=True)
        for p in sorted((sketchy_dir / "sketch" / c).iterdir())[:3]:
            (sk / c / p.name).symlink_to(p)
    out, dump = tmp_path / "m.json", tmp_path / "s.npz"
    rc = main(["--backends", "pretrained,random", "--photos", str(small_photo_dir), "--sketches", str(sk),
               "--split", "all", "--out", str(out), "--dump", str(dump)])
    assert rc == 0
    report = json.loads(out.read_text())
    assert report["queries"] == 6 and report["gallery"] == 20
    d = np.load(dump)
    for name in ("pretrained", "random"):
        s = d[f"scores_{name}"]
        assert s.shape == (6, 20)
        again = metrics(s, d["query_labels"], d["gallery_labels"], d["query_photo_ids"], d["gallery_ids"])
        assert again["mAP@all"] == report["backends"][name]["mAP@all"]


def test_cli_reports_bad_folders(tmp_path, capsys):
    rc = main(["--backends", "random", "--photos", str(tmp_path / "none"), "--sketches", str(tmp_path), "--out", str(tmp_path / "m.json")])
    assert rc == 2 and "no such folder" in capsys.readouterr().err

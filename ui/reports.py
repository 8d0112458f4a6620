"""The shipped evaluation (models/metrics_sketchy.json), the benchmark's figures (bench.json) and
training curves, as tables the pages show. No Streamlit.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sbir_core.backends import ModelFileError
from sbir_core.backends.onnx_model import read_meta
from sbir_core.config import MODELS_DIR, REPO_ROOT
from sbir_core.data.classes import display

METRICS_FILE = MODELS_DIR / "metrics_sketchy.json"


BENCH_FILE = REPO_ROOT / "bench.json"


def load_report(path: Path | None = None) -> dict[str, Any] | None:
    """The evaluation CLI's JSON (models/metrics_sketchy.json), or None when absent or unreadable."""
    path = Path(path or METRICS_FILE)
    try:
        report = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return report if isinstance(report, dict) and isinstance(report.get("backends"), dict) else None


def first_row_hits(path: Path | None = None) -> dict[str, float]:
    """{backend: doodles -> bundled gallery hit@4} from the benchmark's JSON (bench.json): how often
    a visitor's quick drawing finds a right photo in the first row. Empty when absent or unreadable."""
    try:
        results = json.loads(Path(path or BENCH_FILE).read_text())["quality"]["results"]
        hits = {n: r["sets"]["quickdraw"]["hit@4"] for n, r in results.items()}
    except (OSError, json.JSONDecodeError, KeyError, TypeError, AttributeError):
        return {}
    return {n: float(h) for n, h in hits.items() if isinstance(h, (int, float))}


METRIC_COLUMNS = ("mAP@all", "P@20", "acc@1", "acc@5", "acc@10")


def metrics_rows(report: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per backend: the headline metrics and the mean latency per query in ms."""
    rows = []
    for name, m in report["backends"].items():
        row: dict[str, Any] = {"backend": name}
        for c in METRIC_COLUMNS:
            if c in m:
                row[c] = m[c]
        q = m.get("queries") or report.get("queries")
        if m.get("query_seconds") is not None and q:
            row["ms/query"] = 1e3 * float(m["query_seconds"]) / float(q)
        if "latency_ms_p50" in m:
            row["ms/query"] = m["latency_ms_p50"]
        rows.append(row)
    return sorted(rows, key=lambda r: -r.get("mAP@all", 0.0))


def per_class_rows(report: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per class: its mAP@all under each backend."""
    classes = sorted({c for m in report["backends"].values() for c in (m.get("per_class_mAP") or {})})
    return [{"class": display(c), **{n: (m.get("per_class_mAP") or {}).get(c) for n, m in report["backends"].items()}}
            for c in classes]


def load_curves(name: str) -> list[dict[str, Any]] | None:
    """A backend's training curves, per epoch or step (`models/<name>_curves.json`, or the file its
    metadata names), or None when it has none."""
    candidates = [MODELS_DIR / f"{name}_curves.json"]
    try:
        meta = read_meta(name)
        if meta.get("curves"):
            candidates.insert(0, MODELS_DIR / str(meta["curves"]))
    except ModelFileError:
        pass
    for p in candidates:
        try:
            rows = json.loads(p.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        if isinstance(rows, dict):
            rows = rows.get("epochs") or rows.get("curves") or []
        if not isinstance(rows, list):
            continue
        rows = [r for r in rows if isinstance(r, dict) and ("epoch" in r or "step" in r)]
        if rows:
            return rows
    return None


QUALITY_MARKS = ("acc", "top1", "top5", "mAP", "P@")


NOT_PLOTTED = {"epoch", "step", "seconds", "minutes"}


def curve_series(rows: list[dict[str, Any]]) -> tuple[str, list[str], list[str]]:
    """Split a curves file's numeric columns into losses and quality figures (accuracy, mAP, P@K),
    so each trainer may log its own names; the x axis is `step` where the trainer logged one."""
    columns = list(dict.fromkeys(k for r in rows for k, v in r.items()
                                 if isinstance(v, (int, float)) and not isinstance(v, bool)))
    x = "step" if "step" in columns else "epoch"
    plotted = [c for c in columns if c not in NOT_PLOTTED]
    quality = [c for c in plotted if any(m in c for m in QUALITY_MARKS)]
    return x, [c for c in plotted if c not in quality], quality

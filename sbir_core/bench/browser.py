"""Browser benchmark: the Search page's feedback loop as a visitor feels it, in headless Chromium.

    python -m sbir_core.bench.browser [--sessions 1,10,20] [--app-dir DIR] [--max-minutes 12] [--out F.json]
    python -m sbir_core.bench --sections browser          # the same, as a section of the whole benchmark

Starts the real app (`streamlit run app.py`, loopback only) and drives it with Debian's Chromium
through Playwright, with real mouse strokes on the canvas: the same drawings every run (DRAWINGS,
in fractions of the canvas). In the page, a small script timestamps the pen lift (`pointerup`), every
DOM change and every image load; from these:

- **pen lift -> first changed result**: until the result cards' text (names and scores) first differs
  from what it was before the stroke;
- **pen lift -> settled**: until the last DOM change or image load before the page stays quiet for
  `QUIET_MS`, with no stale (greyed) element and every image loaded;
- the same from the click for a **backend switch**, **Undo** and **Clear**;
- with 1, 10 and 20 **concurrent browser sessions** (one Chromium, one context each, all drawing at
  once; they share the machine's cores with the server);
- **lost strokes**: a drawing drawn fast (the next stroke starts before the previous answer) must end
  on the same photos as the same strokes drawn slowly, one answer at a time.

Driving Chromium (the drawings, the in-page probe, one visitor's actions): `browser_visitor`.
`--app-dir` drives another checkout's app (e.g. the main branch, for a before/after comparison with
one method). Bounded: a time limit for the whole run and for every wait.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any, Sequence

from ..config import REPO_ROOT
from .browser_visitor import (CHROMIUM, DRAWINGS, FLAGS, LOOPBACK, QUIET_MS, THINK_MS, VIEWPORT, WAIT_MS, Visitor,
                              free_port)
from .env import load_average
from .load import start_server, stop_server

SERVER_PID: dict[str, int] = {}        # the app server's, for the CPU seconds it spends


def _proc_table() -> dict[int, tuple[int, float]]:
    """pid -> (parent pid, CPU seconds incl. reaped children) for every process (Linux /proc)."""
    tick = os.sysconf("SC_CLK_TCK")
    out = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat", encoding="utf-8") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        out[int(d)] = (int(fields[1]), sum(int(x) for x in fields[11:15]) / tick)
    return out


def cpu_seconds(server_pid: int | None) -> dict[str, float]:
    """CPU seconds so far of the app server and of this process's browsers (every descendant but the
    server): where a concurrent run's time goes on a machine they share."""
    table = _proc_table()
    kids: dict[int, list[int]] = {}
    for pid, (ppid, _) in table.items():
        kids.setdefault(ppid, []).append(pid)
    todo, browsers = [os.getpid()], 0.0
    while todo:
        for c in kids.get(todo.pop(), []):
            if c != server_pid:
                browsers += table[c][1]
                todo.append(c)
    return {"server": table.get(server_pid, (0, 0.0))[1] if server_pid else 0.0, "browsers": browsers}


def pct(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (0-100), linear between samples; None without samples."""
    v = sorted(values)
    if not v:
        return None
    pos = (len(v) - 1) * q / 100
    lo, hi = int(pos), min(int(pos) + 1, len(v) - 1)
    return round(v[lo] + (v[hi] - v[lo]) * (pos - lo), 1)


def summary(samples: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """p50/p90 of 'first' (first changed result) and 'settled' over samples, and how many timed out."""
    first = [s["first"] for s in samples if s.get("first") is not None]
    settled = [s["settled"] for s in samples if s.get("settled") is not None]
    return {"n": len(samples), "first_p50": pct(first, 50), "first_p90": pct(first, 90),
            "settled_p50": pct(settled, 50), "settled_p90": pct(settled, 90),
            "unchanged": sum(1 for s in samples if s.get("first") is None and not s.get("timeout")),
            "settled_by": Counter(s["settled_by"] for s in samples if s.get("settled_by")).most_common(3),
            "timeouts": sum(1 for s in samples if s.get("timeout"))}


async def one_visitor(browser: Any, url: str, rounds: int) -> dict[str, Any]:
    """A single visitor: strokes, backend switches, Undo and Clear; then the lost-stroke check."""
    v = Visitor(browser, url)
    await v.open()
    strokes, backends, undos, clears = [], [], [], []
    await v.draw_all(["cup"])                      # warm-up: first searches index and load the backends
    for _ in range(rounds):
        for name in DRAWINGS:
            for stroke in DRAWINGS[name]:
                strokes.append(await v.draw_stroke_measured(stroke))
                await asyncio.sleep(THINK_MS / 1000)
            undos.append(await v.click_measured(".st-key-undo button:visible", "undo"))
            await asyncio.sleep(THINK_MS / 1000)
            clears.append(await v.click_measured(".st-key-clear button:visible", "clear"))
            await asyncio.sleep(THINK_MS / 1000)
    # backend switches with a drawing on the canvas (every backend in the list, then back to the first)
    for stroke in DRAWINGS["cup"]:
        await v.draw_stroke_measured(stroke)
    await v.page.locator("[data-testid='stSidebar'] [data-testid='stSelectbox']").first.click()
    n_backends = await v.page.locator("[role='option']").count()
    await v.page.keyboard.press("Escape")
    await asyncio.sleep(0.3)
    for r in range(rounds):
        for i in list(range(1, n_backends)) + [0]:
            backends.append(await v.switch_backend(i))
            await asyncio.sleep(THINK_MS / 1000)
    await v.close()
    lost = await lost_strokes(browser, url)
    return {"stroke": summary(strokes), "backend": summary(backends), "undo": summary(undos),
            "clear": summary(clears), "lost_strokes": lost,
            "samples": {"stroke": strokes, "backend": backends, "undo": undos, "clear": clears}}


async def lost_strokes(browser: Any, url: str, gap_ms: int = 60) -> dict[str, Any]:
    """Each drawing drawn fast (next stroke `gap_ms` after the pen lifts, long before the answer), then
    the same strokes drawn slowly in a fresh session: the final result cards must be the same."""
    out = {"drawings": 0, "mismatches": [], "gap_ms": gap_ms}
    for name in DRAWINGS:
        fast, slow = Visitor(browser, url), Visitor(browser, url)
        await fast.open()
        for stroke in DRAWINGS[name]:
            await fast.stroke(stroke)
            await asyncio.sleep(gap_ms / 1000)
        t0 = await fast.now()
        await fast.page.evaluate("([t0, q, lim]) => window.__bench.settle(t0, q, lim, false)", [t0, 1500, WAIT_MS])
        got = await fast.cards()
        await fast.close()
        await slow.open()
        for stroke in DRAWINGS[name]:
            await slow.draw_stroke_measured(stroke)
        want = await slow.cards()
        await slow.close()
        out["drawings"] += 1
        if got != want or not want:
            out["mismatches"].append({"drawing": name, "fast": got[:200], "slow": want[:200]})
    out["lost"] = len(out["mismatches"])
    return out


async def concurrent(browser: Any, url: str, n: int, drawings: Sequence[str]) -> dict[str, Any]:
    """n visitors drawing at once (each waits for its own answer before the next stroke)."""
    visitors = [Visitor(browser, url) for _ in range(n)]
    opened = await asyncio.gather(*(v.open() for v in visitors), return_exceptions=True)
    errors = [f"{type(e).__name__}: {e}" for e in opened if isinstance(e, BaseException)]
    live = [v for v, e in zip(visitors, opened) if not isinstance(e, BaseException)]

    async def run(i: int, v: Visitor) -> list[dict[str, Any]]:
        await asyncio.sleep(0.05 * i)          # not all on the same millisecond
        order = list(drawings[i % len(drawings):]) + list(drawings[:i % len(drawings)])
        return await v.draw_all(order)
    t0, cpu0 = time.perf_counter(), cpu_seconds(SERVER_PID.get("pid"))
    results = await asyncio.gather(*(run(i, v) for i, v in enumerate(live)), return_exceptions=True)
    wall, cpu1 = time.perf_counter() - t0, cpu_seconds(SERVER_PID.get("pid"))
    samples = [s for r in results if not isinstance(r, BaseException) for s in r if s["kind"] == "stroke"]
    errors += [f"{type(r).__name__}: {r}" for r in results if isinstance(r, BaseException)]
    await asyncio.gather(*(v.close() for v in visitors), return_exceptions=True)
    return {"sessions": n, "opened": len(live), "errors": errors[:5], "n_errors": len(errors),
            "wall_s": round(wall, 1), "cpu_s": {k: round(cpu1[k] - cpu0[k], 1) for k in cpu0},
            "stroke": summary(samples), "samples": samples}


async def run_all(url: str, sessions: Sequence[int], rounds: int, deadline: float,
                  out: dict[str, Any], save: Any = None) -> dict[str, Any]:
    """The single visitor, then each concurrent count; `out` filled (and `save`d) part by part."""
    from playwright.async_api import async_playwright
    out.setdefault("concurrent", {})
    save = save or (lambda: None)
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        try:
            if 1 in sessions:
                out["one"] = await asyncio.wait_for(one_visitor(browser, url, rounds), max(30, deadline - time.time()))
                print(f"  browser 1 visitor: {_line(out['one']['stroke'])}; lost strokes {out['one']['lost_strokes']['lost']}",
                      file=sys.stderr, flush=True)
                save()
            for n in sessions:
                if n == 1:
                    continue
                if time.time() > deadline - 30:
                    out["concurrent"][str(n)] = {"sessions": n, "skipped": "time limit"}
                    continue
                out["concurrent"][str(n)] = await asyncio.wait_for(
                    concurrent(browser, url, n, list(DRAWINGS)), max(30, deadline - time.time()))
                print(f"  browser {n} visitors: {_line(out['concurrent'][str(n)]['stroke'])}", file=sys.stderr, flush=True)
                save()
        finally:
            await browser.close()
    return out


def _line(s: dict[str, Any]) -> str:
    return (f"first p50/p90 {s['first_p50']}/{s['first_p90']} ms, settled {s['settled_p50']}/{s['settled_p90']} ms "
            f"(n={s['n']}, unchanged {s['unchanged']}, timeouts {s['timeouts']})")


def browser_bench(app_dir: Path | None = None, sessions: Sequence[int] = (1, 10, 20), rounds: int = 2,
                  max_minutes: float = 12.0, log_dir: Path | None = None, out: Path | None = None) -> dict[str, Any]:
    """The whole browser section: start the app, measure, stop it. Never raises: failures are reported.
    With `out`, the JSON report is written after every part (a run stopped early keeps what it measured)."""
    app_dir = Path(app_dir or REPO_ROOT).resolve()
    if not Path(CHROMIUM).exists():
        return {"error": f"{CHROMIUM} is not installed (apt-get install chromium)"}
    try:
        import playwright  # noqa: F401
    except ImportError:
        return {"error": "playwright is not installed (requirements-test.txt)"}
    t_start = time.time()
    port = free_port()
    log_dir = Path(log_dir or REPO_ROOT / "runs")
    log_dir.mkdir(parents=True, exist_ok=True)
    rev = subprocess.run(["git", "-C", str(app_dir), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    dirty = subprocess.run(["git", "-C", str(app_dir), "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True).stdout.strip()
    report: dict[str, Any] = {"app_dir": str(app_dir), "commit": rev.stdout.strip() + (" (modified)" if dirty else ""),
                              "viewport": VIEWPORT, "quiet_ms": QUIET_MS, "think_ms": THINK_MS,
                              "drawings": {k: len(v) for k, v in DRAWINGS.items()}, "rounds": rounds,
                              "load_average_at_start": load_average(), "cpus": os.cpu_count()}

    def save() -> None:
        if out is not None:
            Path(out).parent.mkdir(parents=True, exist_ok=True)
            Path(out).write_text(json.dumps({**report, "load_average_now": load_average()}, indent=1) + "\n")
    proc = start_server(port, app_dir, log_dir / "bench-browser-streamlit.log")
    SERVER_PID["pid"] = proc.pid
    try:
        asyncio.run(run_all(f"http://{LOOPBACK}:{port}", sessions, rounds, t_start + 60 * max_minutes, report, save))
    except Exception as e:      # a failed run is a result to report, not a crash of the benchmark
        report["error"] = f"{type(e).__name__}: {e}"
    finally:
        stop_server(proc)
    report["load_average_at_end"] = load_average()
    report["seconds"] = round(time.time() - t_start, 1)
    save()
    return report


def markdown(r: dict[str, Any], before: dict[str, Any] | None = None) -> str:
    """The browser section's table (with a BEFORE column set when given)."""
    def cell(s: dict[str, Any] | None, key: str) -> str:
        if not s or s.get(f"{key}_p50") is None:
            return "–"
        return f"{s[f'{key}_p50']:.0f} / {s[f'{key}_p90']:.0f}"

    rows = []
    for label, get in (("1 visitor: pen lift", lambda x: (x.get("one") or {}).get("stroke")),
                       ("1 visitor: backend switch", lambda x: (x.get("one") or {}).get("backend")),
                       ("1 visitor: Undo", lambda x: (x.get("one") or {}).get("undo")),
                       ("1 visitor: Clear", lambda x: (x.get("one") or {}).get("clear")),
                       *((f"{n} visitors at once: pen lift", (lambda n: lambda x: (x.get("concurrent", {}).get(n)
                                                                                  or {}).get("stroke"))(n))
                         for n in sorted({*r.get("concurrent", {}), *((before or {}).get("concurrent") or {})},
                                         key=int))):
        a, b = get(r), get(before) if before else None
        if a is None and b is None:
            continue
        row = [label]
        if before is not None:
            row += [cell(b, "first"), cell(b, "settled")]
        row += [cell(a, "first"), cell(a, "settled"), f"{(a or {}).get('n', 0)} ({(a or {}).get('timeouts', 0)} timeouts"
                + (f"; before {(b or {}).get('timeouts', 0)})" if before is not None else ")")]
        rows.append(row)
    head = ["action"] + (["before: first change p50 / p90 (ms)", "before: settled p50 / p90"] if before is not None else []) + \
           ["first change p50 / p90 (ms)", "settled p50 / p90 (ms)", "samples"]
    out = "| " + " | ".join(head) + " |\n|" + "---|" * len(head) + "\n"
    out += "".join("| " + " | ".join(row) + " |\n" for row in rows)
    lost = (r.get("one") or {}).get("lost_strokes") or {}
    lost_before = ((before or {}).get("one") or {}).get("lost_strokes") or {}
    if lost:
        out += (f"\nLost strokes: {lost['lost']} of {lost['drawings']} drawings drawn fast (next stroke "
                f"{lost['gap_ms']} ms after the pen lifts) ended on other photos than the same strokes drawn slowly"
                + (f" (before: {lost_before['lost']})" if lost_before else "") + ".\n")
    ends = [f"{label}: " + ", ".join(f"{w} ({n})" for w, n in s["settled_by"])
            for label, s in (("pen lift", (r.get("one") or {}).get("stroke")), ("Undo", (r.get("one") or {}).get("undo")),
                             ("Clear", (r.get("one") or {}).get("clear"))) if s and s.get("settled_by")]
    if ends:
        out += "\nWhat ended *settled* (the last DOM change or image load, one visitor; times seen): " + "; ".join(ends) + ".\n"
    return out


def section(r: dict[str, Any], before: dict[str, Any] | None = None) -> str:
    """The browser section of BENCHMARKS.md: how it was measured, the table, the machine's load."""
    if r.get("error") and not r.get("one"):
        return f"The browser benchmark did not run: {r['error']}\n"
    out = (f"Headless Debian Chromium (Playwright) drives the real app on 127.0.0.1 at {r['viewport']['width']}x"
           f"{r['viewport']['height']}: mouse strokes on the canvas, the same {sum(r['drawings'].values())} strokes of "
           f"{len(r['drawings'])} drawings every run, each stroke's answer awaited ({r['think_ms']} ms pause after it). "
           f"*First change*: pen lift (or click) to the result cards' first different text; *settled*: to the last "
           f"DOM change or image load before {r['quiet_ms']} ms of quiet. Backend switch: every backend in turn "
           f"with a drawing on the canvas. N visitors: N browser contexts drawing at once in one Chromium; the "
           f"browsers, the app server and the model share the machine's {r['cpus']} cores (a real visitor brings "
           f"their own). App `{r['commit']}`; load average {r['load_average_at_start']} at start, "
           f"{r.get('load_average_at_end')} at end; {r['seconds']:.0f} s.\n\n")
    out += markdown(r, before)
    for n, c in sorted((r.get("concurrent") or {}).items(), key=lambda kv: int(kv[0])):
        b = ((before or {}).get("concurrent") or {}).get(n) or {}
        out += (f"\n{n} visitors drew their {c['stroke']['n']} strokes in {c['wall_s']:.0f} s"
                + (f" (before: {b['wall_s']:.0f} s)" if b.get("wall_s") else "") + ".")
        if c.get("cpu_s"):
            out += (f" CPU seconds meanwhile: app server "
                    f"{c['cpu_s']['server']:.0f}, Chromium {c['cpu_s']['browsers']:.0f} (of {c['wall_s'] * r['cpus']:.0f} "
                    f"the {r['cpus']} cores had)" + (f"; before: {b['cpu_s']['server']:.0f} and {b['cpu_s']['browsers']:.0f}"
                                                  if b.get("cpu_s") else "") + ".")
        out += "\n"
        if c.get("skipped") or c.get("n_errors"):
            out += f"\n{n} visitors: {c.get('skipped') or str(c['n_errors']) + ' sessions failed: ' + '; '.join(c['errors'])}\n"
    if r.get("error"):
        out += f"\nStopped early: {r['error']}\n"
    return out


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m sbir_core.bench.browser", description=__doc__.split("\n\n")[0])
    ap.add_argument("--app-dir", help="the checkout whose app.py to drive (default: this one)")
    ap.add_argument("--sessions", default="1,10,20", help="comma-separated visitor counts (1 = the single-visitor part)")
    ap.add_argument("--rounds", type=int, default=2, help="single visitor: times through the drawings")
    ap.add_argument("--max-minutes", type=float, default=12.0)
    ap.add_argument("--out", help="write the JSON report here")
    ap.add_argument("--before", help="a JSON report of an earlier run, shown as the 'before' columns")
    a = ap.parse_args(argv)
    r = browser_bench(Path(a.app_dir) if a.app_dir else None, [int(x) for x in a.sessions.split(",") if x],
                      a.rounds, a.max_minutes, out=Path(a.out) if a.out else None)
    before = json.loads(Path(a.before).read_text()) if a.before else None
    print(section(r, before))
    if r.get("error"):
        print(r["error"], file=sys.stderr)
    return 0 if not r.get("error") else 1


if __name__ == "__main__":
    sys.exit(main())

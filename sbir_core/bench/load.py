"""Load test: many visitors at once on one app server, and the first search on a new big gallery.

`server_load` starts the real app (`streamlit run app.py`) on 127.0.0.1 only and drives it the way
a browser does, over Streamlit's websocket protocol: each session picks the example sketches one
after another at several result counts, and the time from the request to the end of the page's
run is its latency. One session alone gives the baseline; then N sessions run at once. Every
answer is checked against the one-session answer for the same sketch and k (the same photos,
labels and scores in the same order), so a lost, mixed-up or failed result is counted, not hidden.
Bounded: a fixed number of searches, a time limit, loopback only.

`cold_folder_gallery` times the first search on a folder gallery nobody has indexed yet (every
photo decoded and encoded once), alone and with N sessions asking at the same moment (the
per-gallery lock makes that one indexing pass, not N).
"""
from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from ..config import REPO_ROOT
from .env import pinned_env
from .speed import percentiles

LOOPBACK = "127.0.0.1"
# The widgets a session uses, by their Streamlit keys (app.py, ui/).
MODE_KEY, K_KEY, EXAMPLE_KEY = "input_mode", "k", "example-"
EXAMPLES_OPTION = "Examples"


@dataclass
class Page:
    """What one run of the page sent: widget ids by key, result cards, errors, and how long it took."""
    ms: float
    widgets: dict[str, Any] = field(default_factory=dict)     # key -> proto of the widget
    cards: list[str] = field(default_factory=list)            # result captions, in order
    errors: list[str] = field(default_factory=list)


def free_port() -> int:
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


def start_server(port: int, app_dir: Path = REPO_ROOT, log_path: Path | None = None,
                 timeout_s: float = 90.0, wrapper: Sequence[str] = ()) -> subprocess.Popen:
    """The app in `app_dir` on 127.0.0.1:port (headless, no usage statistics), ready to answer; its
    output goes to `log_path` (else the end of it is in the error when it dies). `wrapper`: a module
    of this repository that runs streamlit under it (`-m sbir_core.bench.pysample OUT`)."""
    cmd = [sys.executable, *wrapper, "-m", "streamlit", "run", str(app_dir / "app.py"), "--server.port", str(port),
           "--server.address", LOOPBACK, "--server.headless", "true", "--browser.gatherUsageStats", "false",
           "--server.fileWatcherType", "none"]
    out = open(log_path, "wb") if log_path else subprocess.PIPE
    path = f"{app_dir}:{REPO_ROOT}" if wrapper else str(app_dir)
    proc = subprocess.Popen(cmd, cwd=app_dir, env={**pinned_env(), "PYTHONPATH": path}, stdout=out,
                            stderr=subprocess.STDOUT)
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        if proc.poll() is not None:
            said = log_path if log_path else proc.stdout.read()[-2000:].decode(errors="replace")
            raise RuntimeError(f"the app server exited (code {proc.returncode}): {said}")
        try:
            with urllib.request.urlopen(f"http://{LOOPBACK}:{port}/_stcore/health", timeout=2) as r:
                if r.status == 200:
                    return proc
        except OSError:
            time.sleep(0.3)
    proc.kill()
    raise RuntimeError(f"the app server did not answer within {timeout_s:.0f} s")


def stop_server(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


class Session:
    """One visitor: a websocket to the server, sending what the browser sends on each rerun."""

    def __init__(self, port: int):
        self.port = port
        self.ws: Any = None
        self.widgets: dict[str, Any] = {}

    async def __aenter__(self) -> "Session":
        import websockets
        self.ws = await websockets.connect(f"ws://{LOOPBACK}:{self.port}/_stcore/stream",
                                           subprotocols=["streamlit"], max_size=None)
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.ws.close()

    async def rerun(self, values: dict[str, Any], trigger: str | None = None, timeout_s: float = 120.0) -> Page:
        """Run the page with these widget values (by key) and, optionally, a button press."""
        from streamlit.proto.BackMsg_pb2 import BackMsg
        msg = BackMsg()
        msg.rerun_script.query_string = ""
        msg.rerun_script.page_script_hash = ""
        for key, value in values.items():
            w = msg.rerun_script.widget_states.widgets.add()
            w.id = self.widgets[key].id
            if isinstance(value, list) and value and isinstance(value[0], str):
                w.string_array_value.data.extend(value)
            elif isinstance(value, list):
                w.double_array_value.data.extend(value)
        if trigger is not None:
            w = msg.rerun_script.widget_states.widgets.add()
            w.id = self.widgets[trigger].id
            w.trigger_value = True
        t0 = time.perf_counter()
        await self.ws.send(msg.SerializeToString())
        page = await asyncio.wait_for(self._read_run(), timeout_s)
        page.ms = 1e3 * (time.perf_counter() - t0)
        self.widgets.update(page.widgets)
        return page

    async def _read_run(self) -> Page:
        from streamlit.proto.ForwardMsg_pb2 import ForwardMsg
        page = Page(0.0)
        while True:
            fm = ForwardMsg()
            fm.ParseFromString(await self.ws.recv())
            kind = fm.WhichOneof("type")
            if kind == "script_finished":
                if fm.script_finished not in (0, 3):          # FINISHED_SUCCESSFULLY, FINISHED_FRAGMENT_RUN_SUCCESSFULLY
                    page.errors.append(f"page run ended with status {fm.script_finished}")
                return page
            if kind != "delta" or fm.delta.WhichOneof("type") != "new_element":
                continue
            el = fm.delta.new_element
            name = el.WhichOneof("type")
            sub = getattr(el, name)
            wid = getattr(sub, "id", "")
            if wid and "-" in wid:
                key = wid.split("-", 2)[-1] if wid.startswith("$$ID-") else wid
                page.widgets[key] = sub
            if name == "exception":
                page.errors.append(f"exception: {sub.type}: {sub.message}"[:300])
            elif name == "alert" and sub.format == 1:      # st.error
                page.errors.append(f"error: {sub.body}"[:300])
            elif name == "markdown" and "score" in sub.body:
                page.cards.extend(_cards(sub.body))


def _cards(body: str) -> list[str]:
    """The result cards in one markdown element: a card each, or every card of the grid (the Search
    page sends its whole result grid as one block of HTML, `ui.results.result_grid`)."""
    marker = "<div class='result-card"
    return [marker + part for part in body.split(marker)[1:]] if marker in body else [body]


def _option(control: Any, text: str) -> str | None:
    """The wire value of a segmented control's option: its label as written (Streamlit shows a
    leading emoji as the option's icon)."""
    for o in control.options:
        if text in o.content:
            return f"{o.content_icon} {o.content}" if o.content_icon else o.content
    return None


def _plan(n_examples: int, k_values: Sequence[int], searches: int, offset: int) -> list[tuple[int, int]]:
    """`searches` (example, k) pairs, each session starting elsewhere in the same cycle, so no two
    consecutive searches of a session repeat (no result memo hit)."""
    pairs = [(e, k) for k in k_values for e in range(n_examples)]
    return [pairs[(offset + i) % len(pairs)] for i in range(searches)]


class Gate:
    """Holds every session back until all of them have opened the page, then lets them go at once."""

    def __init__(self) -> None:
        self.ready = 0
        self.go = asyncio.Event()

    async def wait(self) -> None:
        self.ready += 1
        await self.go.wait()


async def _visitor(port: int, plan: list[tuple[int, int]], gate: Gate | None) -> list[dict[str, Any]]:
    """One session: open the page, switch to the examples, then search the plan in order."""
    out: list[dict[str, Any]] = []
    async with Session(port) as s:
        await s.rerun({})
        mode = s.widgets.get(MODE_KEY)
        if mode is None:
            raise RuntimeError(f"the Search page has no widget with key {MODE_KEY!r}")
        option = _option(mode, EXAMPLES_OPTION)
        if option is None:
            raise RuntimeError(f"the {MODE_KEY!r} control has no {EXAMPLES_OPTION!r} option")
        await s.rerun({MODE_KEY: [option]})
        if gate is not None:
            await gate.wait()
        for example, k in plan:
            key = f"{EXAMPLE_KEY}{example}"
            if key not in s.widgets or K_KEY not in s.widgets:
                raise RuntimeError(f"the Search page has no widget with key {key!r} or {K_KEY!r}")
            page = await s.rerun({MODE_KEY: [option], K_KEY: [float(k)]}, trigger=key)
            out.append({"example": example, "k": k, "ms": page.ms, "cards": page.cards, "errors": page.errors})
    return out


def _examples_on_page(port: int) -> int:
    async def count() -> int:
        async with Session(port) as s:
            await s.rerun({})
            mode = s.widgets[MODE_KEY]
            option = _option(mode, EXAMPLES_OPTION)
            await s.rerun({MODE_KEY: [option]})
            return sum(1 for k in s.widgets if k.startswith(EXAMPLE_KEY))
    return asyncio.run(count())


def server_load(sessions: int = 20, searches: int = 10, baseline_searches: int = 20,
                k_values: Sequence[int] = (8, 12, 16), time_limit_s: float = 600.0) -> dict[str, Any]:
    """p50/p90 latency of one session alone and of `sessions` at once on one app server, errors,
    and answers that differ from the one-session answer (lost or mixed up)."""
    port = free_port()
    proc = start_server(port)
    t_start = time.perf_counter()
    try:
        n_examples = _examples_on_page(port)
        if n_examples == 0:
            raise RuntimeError("the Search page shows no example sketches")
        # Reference answers (and warm caches: ONNX sessions, gallery features, thumbnails).
        every = _plan(n_examples, k_values, n_examples * len(k_values), 0)
        reference = {(r["example"], r["k"]): r["cards"] for r in asyncio.run(_visitor(port, every, None))}
        alone = asyncio.run(_visitor(port, _plan(n_examples, k_values, baseline_searches, 1), None))

        async def crowd() -> tuple[list[Any], float]:
            gate = Gate()
            tasks = [asyncio.create_task(_visitor(port, _plan(n_examples, k_values, searches, 3 * i), gate))
                     for i in range(sessions)]
            while gate.ready + sum(t.done() for t in tasks) < sessions:
                await asyncio.sleep(0.05)
            t0 = time.perf_counter()
            gate.go.set()
            results = await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True),
                                             max(10.0, time_limit_s - (time.perf_counter() - t_start)))
            return results, time.perf_counter() - t0

        together, seconds = asyncio.run(crowd())
    finally:
        stop_server(proc)

    def summary(runs: list[dict[str, Any]], failed_sessions: int = 0) -> dict[str, Any]:
        wrong = sum(1 for r in runs if r["cards"] != reference.get((r["example"], r["k"])))
        return {"searches": len(runs), "latency_ms": percentiles([r["ms"] for r in runs]),
                "errors": sum(1 for r in runs if r["errors"]) + failed_sessions,
                "empty": sum(1 for r in runs if not r["cards"]), "differs_from_reference": wrong,
                "short": sum(1 for r in runs if len(r["cards"]) < r["k"]),
                "error_examples": [e for r in runs for e in r["errors"]][:3]}

    crashed = [repr(r)[:300] for r in together if isinstance(r, BaseException)]
    runs = [r for rs in together if not isinstance(rs, BaseException) for r in rs]
    many = summary(runs, len(crashed))
    many.update(sessions=sessions, expected_searches=sessions * searches, seconds=round(seconds, 1),
                searches_per_s=round(len(runs) / max(seconds, 1e-9), 2), session_failures=crashed[:3])
    one = summary(alone)
    return {"server": f"streamlit run app.py on {LOOPBACK} (one process, SBIR_THREADS=1)",
            "examples": n_examples, "k_values": list(k_values), "reference_answers": len(reference),
            "one_session": one, "concurrent": many,
            "p50_ratio": round(many["latency_ms"]["p50"] / one["latency_ms"]["p50"], 2) if runs else None,
            "p90_ratio": round(many["latency_ms"]["p90"] / one["latency_ms"]["p90"], 2) if runs else None}


# -- the first search on a new folder gallery --------------------------------------------------------
COLD_CODE = """
import json, sys, threading, time
from pathlib import Path
t0 = time.perf_counter()
import sbir_core.gallery as G
from sbir_core import Gallery, load_backend
G.CACHE_ROOT = Path(sys.argv[3])
backend = load_backend(sys.argv[1], threads=1)
passes = []
index = backend.index_photos
def counted(*a, **k):
    passes.append(1)
    return index(*a, **k)
backend.index_photos = counted
sessions = int(sys.argv[4])
t1 = time.perf_counter()
gallery = Gallery.from_folder(sys.argv[2])
times, results = [0.0] * sessions, [None] * sessions
barrier = threading.Barrier(sessions)
def first_search(i):
    barrier.wait()
    s = time.perf_counter()
    results[i] = backend.search(sys.argv[5], gallery, k=20).ids
    times[i] = time.perf_counter() - s
threads = [threading.Thread(target=first_search, args=(i,)) for i in range(sessions)]
[t.start() for t in threads]
[t.join() for t in threads]
print(json.dumps({"photos": len(gallery), "startup_s": t1 - t0, "first_search_s": max(times),
                  "index_passes": len(passes), "same_results": all(r == results[0] for r in results)}))
"""


def cold_folder_gallery(folder: Path, backend: str, sketch: Path, sessions: Sequence[int] = (1, 20),
                        timeout_s: float = 900.0) -> dict[str, Any]:
    """Seconds from nothing to the first result on a folder gallery with no cached features: once
    for one session, once for `sessions` at once (each in a fresh process with an empty cache)."""
    out: dict[str, Any] = {"backend": backend, "folder": folder.name}
    for n in sessions:
        cache = Path(tempfile.mkdtemp(prefix="sbir-cold-"))
        try:
            p = subprocess.run([sys.executable, "-c", COLD_CODE, backend, str(folder), str(cache), str(n), str(sketch)],
                               cwd=REPO_ROOT, env=pinned_env(), capture_output=True, text=True, timeout=timeout_s)
            if p.returncode != 0:
                out[f"sessions_{n}"] = {"error": (p.stderr.strip().splitlines() or [f"exit {p.returncode}"])[-1]}
                continue
            r = json.loads(p.stdout.strip().splitlines()[-1])
            r["photos_per_s"] = round(r["photos"] / r["first_search_s"], 1)
            out[f"sessions_{n}"] = {k: round(v, 2) if isinstance(v, float) else v for k, v in r.items()}
        finally:
            shutil.rmtree(cache, ignore_errors=True)
    return out


def cold_gallery_run(photos: Path, backend: str, sketch: Path, quick: bool, sessions: int = 20) -> dict[str, Any]:
    """`cold_folder_gallery` on all of `photos` (a quick run: its first three classes, linked)."""
    if not quick:
        return cold_folder_gallery(photos, backend, sketch, sessions=(1, sessions))
    tmp = Path(tempfile.mkdtemp(prefix="sbir-cold-photos-"))
    try:
        for c in sorted(p for p in photos.iterdir() if p.is_dir())[:3]:
            os.symlink(c, tmp / c.name)
        return cold_folder_gallery(tmp, backend, sketch, sessions=(1, sessions))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

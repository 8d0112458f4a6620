"""Where a pen lift's CPU goes: a profile of the Search page in headless Chromium and in the app server.

    python -m sbir_core.bench.browser_profile [--sessions 1] [--app-dir DIR] [--trace] [--out F.json]

The same visitors and drawings as `sbir_core.bench.browser` (N visitors drawing at once, each stroke's
answer awaited), but instead of timing the answers it counts, per stroke:

- CPU seconds of each Chromium process type (browser, renderer, GPU, utility) and of the app server;
- per page (Chrome DevTools `Performance.getMetrics`): script, style, layout and task time, layouts,
  style recalculations, DOM nodes alive;
- DOM mutations the page saw (records, nodes added/removed, attribute changes);
- websocket bytes the page received from the server (the protobuf deltas);
- with `--trace`: the renderer's trace events by name (parse, script, style, layout, paint, image
  decodes, raster), summed, for the first visitor.

A diagnostic for docs/live_search.md, not part of BENCHMARKS.md.
"""
from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any, Sequence

from ..config import REPO_ROOT
from .browser import SERVER_PID
from .browser_visitor import CHROMIUM, DRAWINGS, FLAGS, LOOPBACK, PROBE_JS, Visitor, free_port
from .env import load_average
from .load import stop_server
from .load import start_server as _start_server


def start_server(port: int, app_dir: Path, log_path: Path, sampled_to: Path | None = None):
    """`bench.load.start_server`, or with `sampled_to` the same command under the stack sampler."""
    wrapper = ("-m", "sbir_core.bench.pysample", str(sampled_to)) if sampled_to is not None else ()
    return _start_server(port, app_dir, log_path, wrapper=wrapper)


MUTATIONS_JS = r"""
(() => {
  const m = window.__muts = {records: 0, added: 0, removed: 0, attrs: 0, text: 0, imgs: 0};
  const start = () => new MutationObserver(rs => {
    for (const r of rs) {
      m.records++;
      if (r.type === 'attributes') m.attrs++;
      else if (r.type === 'characterData') m.text++;
      else { m.added += r.addedNodes.length; m.removed += r.removedNodes.length;
             for (const n of r.addedNodes) if (n.querySelectorAll) m.imgs += (n.tagName === 'IMG') + n.querySelectorAll('img').length; }
    }
  }).observe(document.documentElement, {subtree: true, childList: true, attributes: true, characterData: true});
  if (document.documentElement) start(); else document.addEventListener('DOMContentLoaded', start);
})();
"""
SAMPLED_TO: dict[str, Path | None] = {}
METRICS = ("TaskDuration", "ScriptDuration", "RecalcStyleDuration", "LayoutDuration", "LayoutCount",
           "RecalcStyleCount", "Nodes", "JSHeapUsedSize")


def chromium_cpu() -> dict[str, float]:
    """CPU seconds so far of this process's Chromium descendants, by process type (--type=...)."""
    tick = os.sysconf("SC_CLK_TCK")
    me, table = os.getpid(), {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                stat = open(f"/proc/{d}/stat").read().rsplit(")", 1)[1].split()
                cmd = open(f"/proc/{d}/cmdline", "rb").read().replace(b"\0", b" ").split()   # zygote children: one string
            except OSError:
                continue
            table[int(d)] = (int(stat[1]), sum(int(x) for x in stat[11:15]) / tick, cmd)
    kids: dict[int, list[int]] = defaultdict(list)
    for pid, (ppid, _, _) in table.items():
        kids[ppid].append(pid)
    out: Counter = Counter()
    todo = [me]
    while todo:
        for c in kids.get(todo.pop(), []):
            todo.append(c)
            if c == SERVER_PID.get("pid"):
                out["server"] += table[c][1]
                continue
            cmd = table[c][2]
            if cmd and b"node" in cmd[0]:
                out["playwright driver"] += table[c][1]
                continue
            if not cmd or b"chrom" not in cmd[0]:
                continue
            kind = next((a.split(b"=", 1)[1].decode() for a in cmd if a.startswith(b"--type=")), "browser")
            if kind == "utility":
                sub = next((a.split(b"=", 1)[1].decode() for a in cmd if a.startswith(b"--utility-sub-type=")), "")
                kind = "utility:" + sub.rsplit(".", 1)[-1]
            out[kind] += table[c][1]
    return dict(out)


class Profiled(Visitor):
    """A visitor with a DevTools session: page metrics and the websocket bytes it receives."""

    async def open(self) -> None:
        self.ctx = await self.browser.new_context(viewport={"width": 1280, "height": 800}, device_scale_factor=1)
        await self.ctx.add_init_script(PROBE_JS)
        await self.ctx.add_init_script(MUTATIONS_JS)
        self.page = await self.ctx.new_page()
        self.cdp = await self.ctx.new_cdp_session(self.page)
        await self.cdp.send("Performance.enable")
        await self.cdp.send("Network.enable")
        self.ws = Counter()
        self.frames: list[bytes] | None = None        # kept while a list
        self.cdp.on("Network.webSocketFrameReceived", self._frame)
        await self.page.goto(self.url + "/", timeout=120_000)
        self.box = await self.settled_canvas()
        await self.page.evaluate("(q) => window.__bench.settle(performance.now(), q, 20000, false)", 600)
        self.box = await self.settled_canvas()

    def _frame(self, ev: dict[str, Any]) -> None:
        r = ev["response"]
        raw = base64.b64decode(r["payloadData"]) if r.get("opcode") == 2 else r["payloadData"].encode()
        n = len(raw)
        if self.frames is not None:
            self.frames.append(raw)
        self.ws["bytes"] += n
        self.ws["frames"] += 1
        self.ws["max"] = max(self.ws["max"], n)

    async def snapshot(self) -> dict[str, float]:
        m = {x["name"]: x["value"] for x in (await self.cdp.send("Performance.getMetrics"))["metrics"]}
        muts = await self.page.evaluate("window.__muts")
        return {**{k: m.get(k, 0.0) for k in METRICS}, **{f"mut_{k}": v for k, v in muts.items()},
                "ws_bytes": self.ws["bytes"], "ws_frames": self.ws["frames"]}


def diff(a: dict[str, float], b: dict[str, float], n: int) -> dict[str, float]:
    return {k: round((b[k] - a[k]) / max(n, 1), 4 if k.endswith("Duration") else 1) for k in a}


async def profile(url: str, n: int, trace: Path | None) -> dict[str, Any]:
    from playwright.async_api import async_playwright
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        try:
            vs = [Profiled(browser, url) for _ in range(n)]
            await asyncio.gather(*(v.open() for v in vs))
            await asyncio.gather(*(v.draw_all(["cup"]) for v in vs))      # warm-up, as the benchmark does
            if trace:
                await browser.start_tracing(page=vs[0].page, path=str(trace), categories=[
                    "devtools.timeline", "disabled-by-default-devtools.timeline", "blink", "cc", "v8"])
            v0 = vs[0]
            await v0.cdp.send("Profiler.enable")
            await v0.cdp.send("Profiler.setSamplingInterval", {"interval": 500})
            await v0.cdp.send("Profiler.start")
            v0.frames = []
            if SAMPLED_TO.get("path"):
                Path(str(SAMPLED_TO["path"]) + ".reset").touch()
            snaps0 = [await v.snapshot() for v in vs]
            cpu0, t0 = chromium_cpu(), time.perf_counter()

            async def run(i: int, v: Profiled) -> list[dict[str, Any]]:
                await asyncio.sleep(0.05 * i)
                order = list(DRAWINGS)[i % 3:] + list(DRAWINGS)[:i % 3]
                return await v.draw_all(order)
            res = await asyncio.gather(*(run(i, v) for i, v in enumerate(vs)))
            wall, cpu1 = time.perf_counter() - t0, chromium_cpu()
            snaps1 = [await v.snapshot() for v in vs]
            prof = (await v0.cdp.send("Profiler.stop"))["profile"]
            frames, v0.frames = v0.frames, None
            if trace:
                await browser.stop_tracing()
            strokes = sum(1 for r in res for s in r if s["kind"] == "stroke")
            actions = sum(len(r) for r in res)
            per_page = [diff(a, b, actions // n) for a, b in zip(snaps0, snaps1)]
            mean = {k: round(sum(p[k] for p in per_page) / n, 4) for k in per_page[0]}
            for v in vs:
                await v.close()
        finally:
            await browser.close()
    return {"sessions": n, "strokes": strokes, "actions (strokes + clears)": actions, "wall_s": round(wall, 1),
            "cpu_s_per_action": {k: round((cpu1.get(k, 0) - cpu0.get(k, 0)) / actions, 4) for k in cpu1},
            "per_page_per_action": mean, "js_self_ms_per_action": js_summary(prof, actions // n),
            "deltas_per_action": frames_summary(frames, actions // n)}


def js_summary(prof: dict[str, Any], actions: int, top: int = 30) -> dict[str, Any]:
    """Self time of the first visitor's JavaScript (V8 sampling profile) by script and by function, ms per action."""
    nodes = {n["id"]: n for n in prof["nodes"]}
    self_us: Counter = Counter()
    for sid, dt in zip(prof["samples"], prof["timeDeltas"]):
        self_us[sid] += dt
    by_url, by_fn = Counter(), Counter()
    for sid, us in self_us.items():
        cf = nodes[sid]["callFrame"]
        url = cf.get("url", "").rsplit("/", 1)[-1] or "(" + cf.get("functionName", "") + ")"
        by_url[url] += us / 1000 / actions
        by_fn[f"{cf.get('functionName') or '(anonymous)'} @ {url}:{cf.get('lineNumber', 0)}:{cf.get('columnNumber', 0)}"] += us / 1000 / actions
    return {"by_script": [(k, round(v, 2)) for k, v in by_url.most_common(top)],
            "by_function": [(k, round(v, 2)) for k, v in by_fn.most_common(top)]}


def frames_summary(frames: list[bytes], actions: int) -> dict[str, Any]:
    """The server's messages to the first visitor (Streamlit ForwardMsg protobufs), per action: how many, of
    which kind, how many bytes, and for element deltas which element types."""
    from streamlit.proto.ForwardMsg_pb2 import ForwardMsg
    kinds, size, elements, el_bytes = Counter(), Counter(), Counter(), Counter()
    for raw in frames:
        m = ForwardMsg()
        try:
            m.ParseFromString(raw)
        except Exception:
            kinds["(not a ForwardMsg)"] += 1
            continue
        k = m.WhichOneof("type")
        kinds[k] += 1
        size[k] += len(raw)
        if k == "delta":
            d = m.delta
            dk = d.WhichOneof("type")
            name = d.new_element.WhichOneof("type") if dk == "new_element" else dk
            if dk == "add_block":
                name = "block:" + (d.add_block.WhichOneof("type") or "vertical")
            elements[name] += 1
            el_bytes[name] += len(raw)
    per = lambda c: {k: round(v / actions, 1) for k, v in c.most_common()}
    return {"messages": per(kinds), "bytes": per(size), "deltas": per(elements), "delta_bytes": per(el_bytes)}


def trace_summary(path: Path, top: int = 25) -> list[tuple[str, float, int]]:
    """Trace events of the renderer's main thread and raster threads by name: total ms, count."""
    data = json.loads(path.read_text())
    events = data["traceEvents"] if isinstance(data, dict) else data
    names = {(e["pid"], e["tid"]): e["args"]["name"] for e in events if e.get("name") == "thread_name"}
    tot, cnt = Counter(), Counter()
    for e in events:
        if e.get("ph") == "X" and "dur" in e:
            th = names.get((e["pid"], e["tid"]), "?")
            key = f"{th}: {e['name']}"
            tot[key] += e["dur"] / 1000
            cnt[key] += 1
    return [(k, round(v, 1), cnt[k]) for k, v in tot.most_common(top)]


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m sbir_core.bench.browser_profile", description=__doc__.split("\n\n")[0])
    ap.add_argument("--app-dir")
    ap.add_argument("--sessions", type=int, default=1)
    ap.add_argument("--trace", action="store_true", help="also a DevTools trace of the first visitor")
    ap.add_argument("--server-profile", action="store_true",
                    help="run the app server under sbir_core.bench.pysample (its Python stacks, sampled)")
    ap.add_argument("--out")
    a = ap.parse_args(argv)
    app_dir = Path(a.app_dir or REPO_ROOT).resolve()
    port = free_port()
    log_dir = REPO_ROOT / "runs"
    log_dir.mkdir(exist_ok=True)
    trace = log_dir / f"trace-{port}.json" if a.trace else None
    server_prof = log_dir / f"server-profile-{port}.json" if a.server_profile else None
    SAMPLED_TO["path"] = server_prof
    proc = start_server(port, app_dir, log_dir / "bench-profile-streamlit.log", sampled_to=server_prof)
    SERVER_PID["pid"] = proc.pid
    la0 = load_average()
    try:
        r = asyncio.run(profile(f"http://{LOOPBACK}:{port}", a.sessions, trace))
    finally:
        stop_server(proc)
    r["load_average"] = [la0, load_average()]
    r["app_dir"] = str(app_dir)
    if server_prof and server_prof.exists():
        r["server_profile"] = json.loads(server_prof.read_text())
    if trace:
        r["trace_top"] = trace_summary(trace)
        r["trace"] = str(trace)
    text = json.dumps(r, indent=1)
    print(text)
    if a.out:
        Path(a.out).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

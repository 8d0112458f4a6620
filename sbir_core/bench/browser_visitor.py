"""Driving the app in headless Chromium as a visitor does, for the browser benchmark (`browser`) and
its profiler (`browser_profile`): the drawings, the script installed in every page that timestamps
pen lifts, clicks, DOM changes and image loads, and one session's actions, each awaited until the
page settles."""
from __future__ import annotations

import asyncio
import socket
from typing import Any, Sequence

LOOPBACK = "127.0.0.1"
CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
         "--renderer-process-limit=10"]   # 20 sessions: two pages to a renderer process (memory: ~0.2 GB each)
VIEWPORT = {"width": 1280, "height": 800}
QUIET_MS = 600              # a page with no DOM change or image load for this long has settled
WAIT_MS = 20_000            # the longest wait for one answer before it counts as a timeout
THINK_MS = 250              # a visitor's pause between seeing an answer and the next stroke

# Strokes as (x, y) fractions of the canvas. Recognisable objects, so the answers change stroke by stroke.
DRAWINGS: dict[str, list[list[tuple[float, float]]]] = {
    "cup": [[(0.25, 0.25), (0.27, 0.75), (0.35, 0.85), (0.6, 0.85), (0.68, 0.75), (0.7, 0.25), (0.25, 0.25)],
            [(0.7, 0.35), (0.85, 0.4), (0.86, 0.6), (0.69, 0.65)],
            [(0.35, 0.15), (0.38, 0.05)], [(0.5, 0.15), (0.53, 0.05)]],
    "house": [[(0.2, 0.45), (0.2, 0.9), (0.8, 0.9), (0.8, 0.45)],
              [(0.12, 0.5), (0.5, 0.12), (0.88, 0.5)],
              [(0.42, 0.9), (0.42, 0.65), (0.58, 0.65), (0.58, 0.9)],
              [(0.27, 0.55), (0.37, 0.55), (0.37, 0.65), (0.27, 0.65), (0.27, 0.55)]],
    "fish": [[(0.15, 0.5), (0.35, 0.3), (0.6, 0.3), (0.75, 0.5), (0.6, 0.7), (0.35, 0.7), (0.15, 0.5)],
             [(0.75, 0.5), (0.92, 0.32), (0.92, 0.68), (0.75, 0.5)],
             [(0.3, 0.45), (0.32, 0.47)],
             [(0.45, 0.3), (0.5, 0.2), (0.58, 0.3)]],
}

# Installed in every page before the app loads: timestamps in the page's own clock (performance.now()).
PROBE_JS = r"""
(() => {
  const w = window;
  w.__bench = {lifts: [], clicks: [], changes: [], lastActivity: performance.now()};
  const sig = () => [...document.querySelectorAll('.card-name, .card-score')].map(e => e.textContent).join('|');
  w.__bench.sig = sig;
  let last = null;
  // what the latest activity was (traces what ends a 'settled' time: e.g. a tooltip shown after a hover)
  const what = recs => {
    const r = recs && recs.length ? recs[recs.length - 1] : null;
    if (!r) return recs === 'img' ? 'image load' : '';
    let t = r.target.nodeType === 1 ? r.target : r.target.parentElement;
    const el = t && t.closest ? t.closest('[data-testid]') : null;
    const role = t && t.closest ? t.closest('[role]') : null;            // e.g. a tooltip, outside the app's tree
    return r.type + ' in ' + (el ? el.getAttribute('data-testid') : role ? 'role=' + role.getAttribute('role')
                                 : t ? t.tagName : '?');
  };
  const touch = recs => {
    const t = performance.now();
    w.__bench.lastActivity = t;
    w.__bench.lastWhat = what(recs);
    const s = sig();
    if (s !== last) { last = s; w.__bench.changes.push([t, s]); }
  };
  w.addEventListener('pointerup', () => w.__bench.lifts.push(performance.now()), true);
  w.addEventListener('click', () => w.__bench.clicks.push(performance.now()), true);
  document.addEventListener('load', e => { if (e.target && e.target.tagName === 'IMG') touch('img'); }, true);
  const start = () => {
    new MutationObserver(touch).observe(document.documentElement,
      {subtree: true, childList: true, attributes: true, characterData: true});
    touch();
  };
  if (document.documentElement) start(); else document.addEventListener('DOMContentLoaded', start);
  // Resolves once the page is quiet (see QUIET_MS) after time t0, or after `limit` ms.
  w.__bench.settle = (t0, quiet, limit, wantChange) => new Promise(resolve => {
    const tick = () => {
      const now = performance.now();
      const changed = w.__bench.changes.some(c => c[0] > t0);
      const stale = document.querySelector('[data-stale="true"]') !== null;
      const loading = [...document.images].some(i => !i.complete);
      const quietFor = now - w.__bench.lastActivity;
      if (now - t0 > limit) { resolve({timeout: true}); return; }
      if ((changed || !wantChange) && !stale && !loading && quietFor >= quiet && w.__bench.lastActivity >= t0
          || (!wantChange && quietFor >= quiet && now - t0 > 2 * quiet && !stale && !loading)) {
        resolve({timeout: false}); return;
      }
      setTimeout(tick, 40);
    };
    tick();
  });
})();
"""


def free_port() -> int:
    """A free loopback port for the app server."""
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


class Visitor:
    """One browser session (own context) on the Search page."""

    def __init__(self, browser: Any, url: str):
        self.browser, self.url = browser, url
        self.ctx = self.page = self.box = None

    async def open(self) -> None:
        self.ctx = await self.browser.new_context(viewport=VIEWPORT, device_scale_factor=1)
        await self.ctx.add_init_script(PROBE_JS)
        self.page = await self.ctx.new_page()
        await self.page.goto(self.url + "/", timeout=120_000)
        self.box = await self.settled_canvas()
        await self.page.evaluate("(q) => window.__bench.settle(performance.now(), q, 20000, false)", QUIET_MS)
        self.box = await self.settled_canvas()

    async def close(self) -> None:
        if self.ctx is not None:
            await self.ctx.close()

    async def settled_canvas(self) -> dict[str, float]:
        canvas = self.page.locator("canvas.upper-canvas").first
        await canvas.wait_for(timeout=120_000)
        last, stable = None, 0
        for _ in range(80):
            box = await canvas.bounding_box()
            stable = stable + 1 if box == last and box is not None else 0
            if stable >= 3:
                return box
            last = box
            await asyncio.sleep(0.2)
        return last

    async def now(self) -> float:
        return await self.page.evaluate("performance.now()")

    async def stroke(self, points: Sequence[tuple[float, float]], steps: int = 4) -> None:
        b = self.box
        pts = [(b["x"] + fx * b["width"], b["y"] + fy * b["height"]) for fx, fy in points]
        m = self.page.mouse
        await m.move(*pts[0])
        await m.down()
        for x, y in pts[1:]:
            await m.move(x, y, steps=steps)
        await m.up()

    async def measure(self, kind: str, t0: float) -> dict[str, Any]:
        """Wait for the page to settle after t0 (page clock); the sample for the action at t0."""
        res = await self.page.evaluate("([t0, q, lim]) => window.__bench.settle(t0, q, lim, true)",
                                       [t0, QUIET_MS, WAIT_MS])
        b = await self.page.evaluate("""(t0) => ({changes: window.__bench.changes.filter(c => c[0] > t0).map(c => c[0]),
            last: window.__bench.lastActivity, lastWhat: window.__bench.lastWhat, before: (window.__bench.changes.filter(c => c[0] <= t0).pop() || [0, ''])[1],
            now: window.__bench.changes.length ? window.__bench.changes[window.__bench.changes.length - 1][1] : ''})""", t0)
        if res["timeout"]:
            return {"kind": kind, "timeout": True}
        changed = b["now"] != b["before"]
        return {"kind": kind, "first": round(b["changes"][0] - t0, 1) if changed and b["changes"] else None,
                "settled": round(b["last"] - t0, 1), "settled_by": b["lastWhat"], "timeout": False}

    async def draw_stroke_measured(self, points: Sequence[tuple[float, float]], kind: str = "stroke") -> dict[str, Any]:
        await self.stroke(points)
        t0 = await self.page.evaluate("window.__bench.lifts[window.__bench.lifts.length - 1]")
        return await self.measure(kind, t0)

    async def click_measured(self, selector: str, kind: str) -> dict[str, Any]:
        await self.page.locator(selector).first.click()
        t0 = await self.page.evaluate("window.__bench.clicks[window.__bench.clicks.length - 1]")
        return await self.measure(kind, t0)

    async def cards(self) -> str:
        return await self.page.evaluate("window.__bench.sig()")

    async def clear(self) -> None:
        if await self.page.locator(".card-name").count():
            await self.click_measured(".st-key-clear button:visible", "clear")

    async def draw_all(self, drawings: Sequence[str], think_ms: int = THINK_MS) -> list[dict[str, Any]]:
        """Every drawing, stroke by stroke, each stroke's answer awaited; the canvas cleared between drawings."""
        out = []
        for name in drawings:
            for stroke in DRAWINGS[name]:
                out.append(await self.draw_stroke_measured(stroke))
                await asyncio.sleep(think_ms / 1000)
            await self.clear()
            await asyncio.sleep(think_ms / 1000)
        return out

    async def switch_backend(self, i: int) -> dict[str, Any]:
        """Pick the i-th backend in the sidebar's first select box (timed from the click on the option)."""
        await self.page.locator("[data-testid='stSidebar'] [data-testid='stSelectbox']").first.click()
        await self.page.locator("[role='option']").nth(i).click()
        t0 = await self.page.evaluate("window.__bench.clicks[window.__bench.clicks.length - 1]")
        return await self.measure("backend", t0)

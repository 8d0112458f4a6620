"""End-to-end in headless Chromium (Debian's `chromium`, driven by Playwright): draw real strokes on
the canvas with the mouse, check photos appear, switch backends, open every page. Screenshots go to
test-artifacts/; the README's come from there (docs/search.png = search-backend-1.png,
docs/compare.png = page-compare.png)."""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser
ROOT = Path(__file__).resolve().parent.parent
ART = ROOT / "test-artifacts"
CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]
PAGES = {"Search": "", "Compare": "compare", "Embedding map": "embedding_map", "Evaluation": "evaluation",
         "Galleries": "galleries"}

if not Path(CHROMIUM).exists():
    pytest.skip("Debian chromium is not installed (apt-get install chromium)", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api")
from sbir_core.app_support import bundled_gallery_present  # noqa: E402

if not bundled_gallery_present():
    pytest.skip("bundled gallery not built", allow_module_level=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server():
    port = free_port()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    ART.mkdir(exist_ok=True)
    # the server's output goes to a file: an undrained pipe fills up (64 KiB) and blocks the server
    log = open(ART / "streamlit.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true",
                             "--server.port", str(port), "--server.address", "127.0.0.1"],
                            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    for _ in range(120):
        try:
            urllib.request.urlopen(url + "/_stcore/health", timeout=1)
            break
        except OSError:
            time.sleep(0.5)
    else:
        proc.kill()
        log.close()
        pytest.fail("streamlit did not start; see test-artifacts/streamlit.log")
    yield url
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    log.close()


@pytest.fixture(scope="module")
def browser():
    ART.mkdir(exist_ok=True)
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        yield b
        b.close()


def new_page(browser, url: str, path: str = ""):
    """A fresh browser session (own context = fresh profile) on one page of the app."""
    ctx = browser.new_context(viewport={"width": 1600, "height": 1000})
    page = ctx.new_page()
    page.goto(f"{url}/{path}")
    page.wait_for_selector("[data-testid='stSidebar'], [data-testid='stMain']", timeout=60_000)
    return ctx, page


def draw(page, strokes) -> None:
    """Real mouse strokes on the canvas (its top Fabric.js layer)."""
    canvas = page.locator("canvas.upper-canvas").first
    canvas.wait_for(timeout=60_000)
    box = canvas.bounding_box()
    for stroke in strokes:
        (x0, y0), rest = stroke[0], stroke[1:]
        page.mouse.move(box["x"] + x0, box["y"] + y0)
        page.mouse.down()
        for x, y in rest:
            page.mouse.move(box["x"] + x, box["y"] + y, steps=4)
        page.mouse.up()


# a cup-ish drawing: body, then a handle
CUP = [[(120, 110), (130, 280), (160, 310), (250, 310), (280, 280), (290, 110), (120, 110)],
       [(290, 150), (340, 160), (345, 230), (285, 250)]]


def no_exception(page) -> None:
    assert page.locator("[data-testid='stException']").count() == 0, "an exception box is shown"


def wait_results(page, timeout=60_000) -> None:
    page.get_by_text("score", exact=False).first.wait_for(timeout=timeout)


def test_draw_search_switch_backend_and_every_page(server, browser):
    ctx, page = new_page(browser, server)
    draw(page, CUP)
    wait_results(page)
    page.wait_for_timeout(1500)
    page.screenshot(path=str(ART / "search.png"))
    no_exception(page)

    # switch backend in the sidebar: every one shows photos
    names = page.locator("[data-testid='stSidebar'] [data-testid='stSelectbox']").first
    names.click()
    options = page.locator("[role='option']")
    n = options.count()
    assert n >= 2
    for i in range(n):
        if i:
            names.click()
        page.locator("[role='option']").nth(i).click()
        page.wait_for_timeout(1500)
        wait_results(page)
        no_exception(page)
        page.screenshot(path=str(ART / f"search-backend-{i}.png"))

    for title, path in PAGES.items():
        page.locator("[data-testid='stSidebarNav'] a", has_text=title).first.click()
        page.wait_for_timeout(4000)
        page.wait_for_load_state("networkidle")
        if title == "Compare":
            wait_results(page, 120_000)
            page.wait_for_timeout(1500)
        no_exception(page)
        page.screenshot(path=str(ART / f"page-{path or 'search'}.png"), full_page=True)
    ctx.close()


def test_second_session_gets_results_within_a_second(server, browser):
    ctx, page = new_page(browser, server)          # warms the shared caches (first test may not have run)
    draw(page, CUP)
    wait_results(page)
    ctx.close()
    ctx, page = new_page(browser, server)
    page.locator("canvas.upper-canvas").first.wait_for(timeout=60_000)
    t0 = time.perf_counter()
    draw(page, CUP[:1])
    wait_results(page, 10_000)
    elapsed = time.perf_counter() - t0
    (ART / "second-session-latency.txt").write_text(f"{elapsed:.3f} s from the first stroke's start to the first photo card\n")
    assert elapsed < 2.5, elapsed          # <1 s locally; slack for loaded CI machines
    ctx.close()


def test_examples_and_presenter_mode(server, browser):
    ctx, page = new_page(browser, server, "?presenter=1")
    page.get_by_text("Examples").first.click()
    page.locator("button", has_text="apple").first.click()
    wait_results(page)
    page.wait_for_timeout(1000)
    no_exception(page)
    assert page.locator("[data-testid='stSidebar']").is_hidden()
    page.screenshot(path=str(ART / "presenter.png"))
    ctx.close()

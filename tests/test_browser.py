"""End-to-end in headless Chromium (Debian's `chromium`, driven by Playwright): draw real strokes on
the canvas with the mouse (and with touch on a phone), check photos appear, switch backends, open
every page; on every common screen, check the canvas fits and every drawing control is clickable.
Screenshots go to test-artifacts/; the README's come from there (docs/search.png = search-backend-1.png,
docs/compare.png = page-compare.png, docs/screen-*.png = screen-*.png)."""
from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
from PIL import Image
import pytest

pytestmark = pytest.mark.browser
ROOT = Path(__file__).resolve().parent.parent
ART = ROOT / "test-artifacts"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or "/usr/bin/chromium"   # as scripts/test.sh finds it
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]
PAGES = {"Search": "", "Compare": "compare", "Embedding map": "embedding_map", "Evaluation": "evaluation",
         "Galleries": "galleries"}

if not Path(CHROMIUM).exists():
    pytest.skip("chromium is not installed (Debian: apt-get install chromium)", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api")
from ui.catalogue import bundled_gallery_present  # noqa: E402

from .conftest import need_data  # noqa: E402

if not bundled_gallery_present():
    pytest.skip("bundled gallery not built", allow_module_level=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def streamlit_server(log_name: str = "streamlit.log"):
    """The app in its own Streamlit process; yields its URL."""
    port = free_port()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    ART.mkdir(exist_ok=True)
    # the server's output goes to a file: an undrained pipe fills up (64 KiB) and blocks the server
    log = open(ART / log_name, "wb")
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true",
                             "--server.port", str(port), "--server.address", "127.0.0.1"],
                            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(120):
            try:
                urllib.request.urlopen(url + "/_stcore/health", timeout=1)
                break
            except OSError:
                time.sleep(0.5)
        else:
            pytest.fail(f"streamlit did not start; see test-artifacts/{log_name}")
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@pytest.fixture(scope="module")
def server():
    with streamlit_server() as url:
        yield url


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
    page.locator(".card-name").first.wait_for(timeout=timeout)


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


def test_second_session_reuses_the_warm_caches(server, browser):
    """A second visitor gets photos from warm shared caches, not a cold model load (~10 s). The latency
    itself is measured in the benchmark (BENCHMARKS.md, browser section); the bound here only tells a
    warm answer (well under 1 s here) from a cold one."""
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
    assert elapsed < 2.5, elapsed          # warm: < 1 s here; a cold model load takes several seconds
    ctx.close()


def test_examples_and_presenter_mode(server, browser):
    ctx, page = new_page(browser, server, "?presenter=1")
    page.locator(".st-key-input_mode button", has_text="Examples").click()
    page.locator("[class*='st-key-example-'] button", has_text="apple").first.click()
    wait_results(page)
    page.wait_for_timeout(1000)
    no_exception(page)
    assert page.locator("[data-testid='stSidebar']").is_hidden()
    page.screenshot(path=str(ART / "presenter.png"))
    ctx.close()
 

def test_upload_a_phone_photo_of_a_drawing_on_paper(server, browser, tmp_path):
    """The Upload tab with a real file input: a cat face drawn on paper, photographed on a table (grey
    sheet, dark surround, JPEG) is read as a cat and brings cat photos."""
    from tests.test_preprocess import paper_photo
    from sbir_core.data.render import render_canvas
    face = [[(200 + 100 * np.cos(a), 220 + 100 * np.sin(a)) for a in np.linspace(0, 2 * np.pi, 21)],
            [(128, 148), (136, 60), (176, 132)], [(224, 132), (264, 60), (272, 148)],
            [(188, 248), (200, 260), (212, 248)], [(120, 240), (48, 224)], [(120, 260), (48, 280)],
            [(280, 240), (352, 224)], [(280, 260), (352, 280)]]
    photo = tmp_path / "cat_on_paper.jpg"
    paper_photo(render_canvas([(np.array([p[0] for p in s]), np.array([p[1] for p in s])) for s in face]),
                "table").save(photo, quality=85)
    ctx, page = new_page(browser, server)
    page.locator(".st-key-input_mode button", has_text="Upload").click()      # the input mode, not an uploader
    page.locator("[data-testid='stFileUploader']").filter(has_text="Upload a sketch").locator(
        "input[type='file']").set_input_files(str(photo))
    wait_results(page)
    page.wait_for_timeout(1000)
    no_exception(page)
    assert page.locator(".sketch-reading").first.inner_text().startswith("I see: cat")
    assert page.locator(".card-name").first.inner_text() == "cat"
    page.screenshot(path=str(ART / "upload-paper-photo.png"))
    ctx.close()


def test_galleries_page_indexes_your_own_unlabelled_photos(server, browser, tmp_path):
    """Galleries → Add your own photos through the real file input: three photos with names that say
    nothing are indexed, become the active gallery, and the photo labeller files what it can."""
    import csv
    from sbir_core.gallery import BUNDLED_DIR
    rows = {r["label"]: r for r in csv.DictReader(open(BUNDLED_DIR / "metadata.csv")) if r["label"] in ("cat", "bus", "apple")}
    files = []
    for n, r in enumerate(rows.values()):
        files.append(tmp_path / f"IMG_{n:04d}.jpg")
        files[-1].write_bytes((BUNDLED_DIR / r["file"]).read_bytes())
    ctx, page = new_page(browser, server, "galleries")
    page.locator("input[type='file']").first.set_input_files([str(f) for f in files])
    page.get_by_role("button", name="Index these photos").click()
    page.locator("h3", has_text="My photos").first.wait_for(timeout=60_000)
    no_exception(page)
    heading = page.locator("h3", has_text="My photos").first.inner_text()
    assert "3 photos · photos of" in heading, heading
    assert "filed by the photo labeller" in page.locator("[data-testid='stCaptionContainer']", has_text="carry a kind").first.inner_text()
    page.screenshot(path=str(ART / "galleries-own-photos.png"))
    ctx.close()


def quickdraw_strokes(kind: str, row: int, side: float) -> list[list[tuple[float, float]]]:
    """Row `row` of a Quick, Draw! simplified-stroke file, scaled into a `side`-px square at (20, 20)."""
    from sbir_core.data.readers import quickdraw_strokes as read
    path = need_data("quickdraw", "simplified", f"{kind}.ndjson")
    d = next(d for n, d in enumerate(read(path, limit=row + 1)) if n == row)
    s = side / 256
    return [[(20 + x * s, 20 + y * s) for x, y in zip(np.asarray(xs), np.asarray(ys))] for xs, ys in d["strokes"]]


def test_teach_a_new_kind_from_three_drawings(server, browser, tmp_path):
    """Search → Teach it: three real drawings of a kind no model here knows (triangles, Quick, Draw!
    rows 10-12), a name, two photos of it; a fourth, held-out drawing then reads as it and its photos
    come first; Forget takes it back out. Another session never sees it."""
    from PIL import ImageDraw
    photos = []
    for n, colour in enumerate(("orange", "purple")):
        im = Image.new("RGB", (200, 200), "white")
        ImageDraw.Draw(im).polygon([(100, 20), (180, 180), (20, 180)], fill=colour)
        photos.append(tmp_path / f"tri{n}.png")
        im.save(photos[-1])
    ctx, page = new_page(browser, server)
    canvas = page.locator("canvas.upper-canvas").first
    canvas.wait_for(timeout=60_000)
    side = min(canvas.bounding_box()["width"], canvas.bounding_box()["height"]) - 40
    page.get_by_text("Teach it a kind").first.click()
    page.get_by_label("Name of the kind").fill("triangle")
    page.keyboard.press("Tab")
    page.wait_for_timeout(1500)                                              # the name's rerun, before the pen
    for row in (10, 11, 12):
        canvas.evaluate("e => e.scrollIntoView({block: 'center'})")      # the panel below may have scrolled it off
        draw(page, quickdraw_strokes("triangle", row, side))
        wait_results(page)
        page.get_by_role("button", name="➕ Add this drawing").click()
        page.get_by_text(f"({row - 9} so far)").first.wait_for(timeout=30_000)
    assert "triangle" not in page.locator(".sketch-reading").all_inner_texts()
    page.locator("[data-testid='stFileUploader']").filter(has_text="Photos of it").locator(
        "input[type=file]").set_input_files([str(p) for p in photos])
    page.wait_for_timeout(1000)
    page.get_by_role("button", name="🧑‍🏫 Teach it").click()
    page.get_by_text("Taught “triangle” from 3 drawings").first.wait_for(timeout=30_000)
    canvas.evaluate("e => e.scrollIntoView({block: 'center'})")      # the panel below may have scrolled it off
    draw(page, quickdraw_strokes("triangle", 1, side))                       # held out: never an example
    page.locator(".sketch-reading", has_text="I see: triangle").first.wait_for(timeout=30_000)
    wait_results(page)
    assert [c.inner_text() for c in page.locator(".card-name").all()[:2]] == ["triangle", "triangle"]
    no_exception(page)
    page.screenshot(path=str(ART / "teach-a-kind.png"))
    other_ctx, other = new_page(browser, server)                            # another visitor: nothing taught
    draw(other, quickdraw_strokes("triangle", 1, side))
    wait_results(other)
    assert "triangle" not in other.locator(".sketch-reading").first.inner_text()
    other_ctx.close()
    page.get_by_role("button", name="Forget").click()
    page.get_by_text("Forgot “triangle”").first.wait_for(timeout=30_000)
    canvas.evaluate("e => e.scrollIntoView({block: 'center'})")      # the panel below may have scrolled it off
    draw(page, [[(60, 60), (70, 70)]])                                       # one more stroke: a fresh reading
    wait_results(page)
    page.wait_for_timeout(1500)
    assert "triangle" not in page.locator(".sketch-reading").first.inner_text()
    ctx.close()


def test_a_fresh_server_opened_on_a_sub_page_shows_the_app(browser):
    """A presenter restarts the app and the browser reloads the Evaluation tab: that first visit must get
    the app (its navigation, its sidebar settings, the wide layout), not the page file run alone."""
    with streamlit_server("streamlit-fresh.log") as url:
        ctx, page = new_page(browser, url, "evaluation")
        page.locator("[data-testid='stSidebar'] [data-testid='stSelectbox']").nth(1).wait_for(timeout=60_000)
        page.wait_for_timeout(2000)
        nav = page.locator("[data-testid='stSidebarNav'] a").all_inner_texts()
        assert [" ".join(t.split()[1:]) for t in nav] == ["Search", "Compare", "Embedding map", "Evaluation",
                                                          "Galleries"], nav    # (each after its icon)
        assert page.locator("[data-testid='stSidebar'] [data-testid='stSelectbox']").count() >= 2   # backend, gallery
        no_exception(page)
        page.screenshot(path=str(ART / "fresh-server-evaluation.png"))
        ctx.close()


# -- every screen a visitor brings ------------------------------------------------------------
SCREENS = {                       # name: (width, height, touch phone, presenter mode)
    "1280x800": (1280, 800, False, False),
    "1440x900": (1440, 900, False, False),
    "1920x1080": (1920, 1080, False, False),
    "phone-390x844": (390, 844, True, False),
    "presenter-1280x720": (1280, 720, False, True),
    "presenter-1024x768": (1024, 768, False, True),
}
CONTROLS = [".st-key-pen_tool button", ".st-key-pen_size button", ".st-key-undo button", ".st-key-clear button"]


def gallery_class_names() -> set[str]:
    """The classes the bundled gallery has, as the app writes them (derived now: the gallery changes)."""
    from sbir_core import Gallery
    from sbir_core.data.classes import display
    return {display(c) for c in Gallery.bundled().labels if c}


def settled_canvas(page) -> dict:
    """The canvas's box once the app has sized it to its column (it may remount once after loading)."""
    canvas = page.locator("canvas.upper-canvas").first
    canvas.wait_for(timeout=60_000)
    last, stable = None, 0
    for _ in range(60):
        box = canvas.bounding_box()
        stable = stable + 1 if box == last and box is not None else 0
        if stable >= 4:
            return box
        last = box
        page.wait_for_timeout(250)
    return last


def stroke_on(page, box, points, touch=None) -> None:
    """One stroke through `points` (fractions of the canvas box), with the mouse or by touch (CDP)."""
    pts = [(box["x"] + fx * box["width"], box["y"] + fy * box["height"]) for fx, fy in points]
    if touch is None:
        page.mouse.move(*pts[0])
        page.mouse.down()
        for x, y in pts[1:]:
            page.mouse.move(x, y, steps=6)
        page.mouse.up()
        return
    touch.send("Input.dispatchTouchEvent", {"type": "touchStart", "touchPoints": [{"x": pts[0][0], "y": pts[0][1]}]})
    for (x0, y0), (x1, y1) in zip(pts, pts[1:]):
        for t in range(1, 7):
            touch.send("Input.dispatchTouchEvent", {"type": "touchMove", "touchPoints": [
                {"x": x0 + (x1 - x0) * t / 6, "y": y0 + (y1 - y0) * t / 6}]})
    touch.send("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})


def ink_at(page, box, fx, fy) -> int:
    """The darkest red value in a 5x5 patch of the drawn canvas at (fx, fy) of its box: 0 = ink, 255 = paper."""
    return page.locator("canvas.lower-canvas.dc-canvas").first.evaluate(
        """(c, p) => { const r = c.width / c.getBoundingClientRect().width;
             const d = c.getContext('2d').getImageData(Math.round(p.x * r) - 2, Math.round(p.y * r) - 2, 5, 5).data;
             let m = 255; for (let i = 0; i < d.length; i += 4) m = Math.min(m, d[i]); return m; }""",
        {"x": fx * box["width"], "y": fy * box["height"]})


def click_control(page, selector: str, text: str, touch: bool) -> None:
    button = page.locator(selector, has_text=text).first
    button.tap() if touch else button.click()


def assert_one_set_of_controls(page) -> None:
    """The canvas component's own floating toolbar (undo, redo, trash, ...) is hidden: the app's row is the one set."""
    toolbars = page.evaluate("""() => [...document.querySelectorAll('[data-testid=stBidiComponentIsolated]')]
        .map(h => h.shadowRoot && h.shadowRoot.querySelector('.dc-toolbar')).filter(Boolean)
        .map(t => getComputedStyle(t).display)""")
    assert toolbars and set(toolbars) == {"none"}, toolbars


@pytest.mark.parametrize("screen", list(SCREENS))
def test_canvas_fits_controls_work_and_the_eraser_erases(server, browser, screen):
    w, h, phone, presenter = SCREENS[screen]
    ctx = browser.new_context(viewport={"width": w, "height": h}, has_touch=phone, is_mobile=phone,
                              device_scale_factor=1)
    page = ctx.new_page()
    page.goto(f"{server}/" + ("?presenter=1" if presenter else ""))
    box = settled_canvas(page)
    no_exception(page)

    # the whole canvas is inside its column and inside the window
    column = page.evaluate("""() => { const c = document.querySelector('canvas.upper-canvas') ||
        [...document.querySelectorAll('[data-testid=stBidiComponentIsolated]')].map(h => h.shadowRoot &&
          h.shadowRoot.querySelector('canvas.upper-canvas')).find(Boolean);
        let host = c; while (host && !(host.dataset && host.dataset.testid === 'stColumn'))
          host = host.parentNode instanceof ShadowRoot ? host.parentNode.host : host.parentNode;
        const r = host.getBoundingClientRect(); return {x: r.x, y: r.y, width: r.width, right: r.right}; }""")
    assert box["x"] >= column["x"] - 0.5 and box["x"] + box["width"] <= column["right"] + 0.5, (box, column)
    assert box["x"] >= 0 and box["x"] + box["width"] <= w and box["y"] >= 0 and box["y"] + box["height"] <= h, box

    # the element under the centre of every drawing control is that control (nothing lies on top)
    n_controls = 0
    for sel in CONTROLS:
        for i in range(page.locator(sel).count()):
            ok = page.locator(sel).nth(i).evaluate("""b => { const r = b.getBoundingClientRect();
                if (r.width === 0) return null;           // Streamlit's hidden twin of a button with a tooltip
                const e = document.elementFromPoint(r.x + r.width / 2, r.y + r.height / 2);
                return b === e || b.contains(e); }""")
            if ok is None:
                continue
            assert ok, f"{sel} #{i} is covered at {screen}"
            n_controls += 1
    assert n_controls >= 7, n_controls          # pen, eraser, 3 widths, undo, clear
    assert_one_set_of_controls(page)

    # draw with the pen: two strokes; the reading names a class of this gallery
    touch = ctx.new_cdp_session(page) if phone else None
    a = [(0.25, 0.25), (0.27, 0.75), (0.35, 0.85), (0.6, 0.85), (0.68, 0.75), (0.7, 0.25), (0.25, 0.25)]  # a cup
    b = [(0.7, 0.35), (0.85, 0.4), (0.86, 0.6), (0.69, 0.65)]                                           # its handle
    on_a, on_b = (0.475, 0.85), (0.855, 0.5)               # points on each stroke, far from the other
    stroke_on(page, box, a, touch)
    page.wait_for_timeout(400)
    stroke_on(page, box, b, touch)
    wait_results(page)
    reading = page.locator(".sketch-reading").first
    reading.wait_for(timeout=30_000)
    names = gallery_class_names()
    assert any(n in reading.inner_text() for n in names), reading.inner_text()
    assert ink_at(page, box, *on_a) < 100 and ink_at(page, box, *on_b) < 100
    page.wait_for_timeout(800)
    page.screenshot(path=str(ART / f"screen-{screen}.png"))

    if screen == "1440x900":    # a narrower window: the canvas follows its column, the drawing scales with it
        page.set_viewport_size({"width": 1280, "height": 800})
        page.wait_for_timeout(1000)
        small = settled_canvas(page)
        assert small["width"] < box["width"] - 20, (small, box)
        assert ink_at(page, small, *on_a) < 100 and ink_at(page, small, *on_b) < 100
        page.set_viewport_size({"width": w, "height": h})
        page.wait_for_timeout(1000)
        box = settled_canvas(page)
        assert ink_at(page, box, *on_a) < 100 and ink_at(page, box, *on_b) < 100
        no_exception(page)

    # the eraser: across stroke A only -> A's ink is gone, B's stays; then B too -> nothing left to search
    click_control(page, ".st-key-pen_tool button", "Eraser", phone)
    page.wait_for_timeout(1200)
    stroke_on(page, box, a, touch)
    page.wait_for_timeout(1500)
    assert ink_at(page, box, *on_a) > 200, "the eraser left stroke A's ink"
    assert ink_at(page, box, *on_b) < 100, "the eraser took stroke B's ink too"
    no_exception(page)
    stroke_on(page, box, b, touch)
    sync_api.expect(page.locator(".card-name")).to_have_count(0, timeout=30_000)   # the sketch has no ink left
    page.get_by_text("Draw something", exact=False).first.wait_for(timeout=30_000)
    no_exception(page)
    assert_one_set_of_controls(page)

    if screen == "1920x1080":   # undo takes the last stroke away, clear the rest
        click_control(page, ".st-key-pen_tool button", "Pen", phone)
        page.wait_for_timeout(1200)
        stroke_on(page, box, a)
        page.wait_for_timeout(400)
        stroke_on(page, box, b)
        wait_results(page)
        page.wait_for_timeout(1500)                         # the canvas sends a stroke a moment after it ends
        page.locator(".st-key-undo button:visible").first.click()
        page.wait_for_timeout(2500)
        box = settled_canvas(page)
        assert ink_at(page, box, *on_a) < 100 and ink_at(page, box, *on_b) > 200, "undo"
        page.locator(".st-key-clear button:visible").first.click()
        sync_api.expect(page.locator(".card-name")).to_have_count(0, timeout=30_000)
        box = settled_canvas(page)
        assert ink_at(page, box, *on_a) > 200, "clear"
        no_exception(page)

    if phone:   # no horizontal scrolling, and the results come two or three to a row right under the canvas
        widths = page.evaluate("""() => { const m = document.querySelector('[data-testid=stMain]');
            return [document.documentElement.scrollWidth, window.innerWidth, m.scrollWidth, m.clientWidth]; }""")
        assert widths[0] <= widths[1] and widths[2] <= widths[3], widths
        click_control(page, ".st-key-pen_tool button", "Pen", phone)
        page.wait_for_timeout(1200)
        stroke_on(page, box, a, touch)
        wait_results(page)
        # the first two cards side by side (their boxes' tops, not their names: a photo still loading
        # moves its name but not its card)
        first, second = page.evaluate("""() => [...document.querySelectorAll('.card-name')].slice(0, 2).map(
            e => { const r = (e.closest('.result-card') || e.closest('[data-testid=stColumn]')).getBoundingClientRect();
                   return {x: r.x, y: r.y}; })""")
        assert abs(first["y"] - second["y"]) < 5 and second["x"] > first["x"], (first, second)
        widths = page.evaluate("""() => { const m = document.querySelector('[data-testid=stMain]');
            return [document.documentElement.scrollWidth, window.innerWidth, m.scrollWidth, m.clientWidth]; }""")
        assert widths[0] <= widths[1] and widths[2] <= widths[3], widths
        for title, path in PAGES.items():      # and no other page is wider than the phone either
            if not path:
                continue
            page.goto(f"{server}/{path}")
            page.wait_for_selector("[data-testid='stMain'] h1", timeout=60_000)
            page.wait_for_timeout(2500)
            no_exception(page)
            widths = page.evaluate("""() => { const m = document.querySelector('[data-testid=stMain]');
                return [document.documentElement.scrollWidth, window.innerWidth, m.scrollWidth, m.clientWidth]; }""")
            assert widths[0] <= widths[1] and widths[2] <= widths[3], (title, widths)
    ctx.close()


def card_texts(page) -> str:
    """The result cards' names and scores, in order: what a visitor reads."""
    return page.evaluate("() => [...document.querySelectorAll('.card-name, .card-score')].map(e => e.textContent).join('|')")


def settled_cards(page, quiet_ms: int = 1500, limit_ms: int = 30_000) -> str:
    """The cards once they have stopped changing for `quiet_ms`."""
    last, since, waited = None, 0, 0
    while waited < limit_ms:
        now = card_texts(page)
        since = since + 250 if now == last else 0
        if since >= quiet_ms and now:
            return now
        last = now
        page.wait_for_timeout(250)
        waited += 250
    return last or ""


def test_fast_strokes_are_not_lost(server, browser):
    """Strokes 60 ms apart (the next one starts long before the previous answer) end on the same photos
    as the same strokes drawn one answer at a time: the last drawing is what was searched."""
    strokes = [[(0.25, 0.25), (0.27, 0.75), (0.35, 0.85), (0.6, 0.85), (0.68, 0.75), (0.7, 0.25), (0.25, 0.25)],
               [(0.7, 0.35), (0.85, 0.4), (0.86, 0.6), (0.69, 0.65)], [(0.35, 0.15), (0.38, 0.05)]]
    found = []
    for gap_ms in (60, None):                     # fast, then slow in a fresh session
        ctx = browser.new_context(viewport={"width": 1280, "height": 800}, device_scale_factor=1)
        page = ctx.new_page()
        page.goto(server + "/")
        box = settled_canvas(page)
        for s in strokes:
            stroke_on(page, box, s)
            if gap_ms is None:
                wait_results(page)
                settled_cards(page, quiet_ms=1000)
            else:
                page.wait_for_timeout(gap_ms)
        found.append(settled_cards(page))
        no_exception(page)
        assert ink_at(page, box, 0.855, 0.5) < 100 and ink_at(page, box, 0.365, 0.1) < 100   # the canvas kept them
        if gap_ms is None:
            page.screenshot(path=str(ART / "fast-strokes-slow.png"))
        ctx.close()
    assert found[0] and found[0] == found[1], found

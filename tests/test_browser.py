"""The explorer in a real headless Chromium against `streamlit run app.py`: every page renders with
no error, and moving a slider with the keyboard changes the picture it drives."""
import time
from pathlib import Path

import pytest

from browser_support import (CHARTS, POINT_JS, WAITING, charts_drawn_twice, clipped_texts, draw_waiting_charts,
                             errors_shown, nudge_slider, open_page, screenshot, wait_rendered)

pytestmark = pytest.mark.browser

MAP_DRAWN = ".st-key-map_chart_VAE .vae-chart[data-state=drawn]"     # explorer/charts.py's component


def element_shot(pg, key: str) -> bytes:
    """Screenshot bytes of the element drawn with widget/element key `key` (retried while a rerun
    replaces the element)."""
    from playwright.sync_api import Error
    for attempt in range(50):
        try:
            loc = pg.locator(f".st-key-{key}").first
            loc.scroll_into_view_if_needed(timeout=5000)
            return loc.screenshot(animations="disabled", timeout=5000)
        except Error:
            time.sleep(0.2)
    raise AssertionError(f"the element {key} never settled on the page")


def images_src(pg) -> list:
    return [img.get_attribute("src") for img in pg.locator("[data-testid=stImage] img").all()]


def wait_changed(read, before, timeout_s: float = 120.0):
    """Poll read() until it differs from `before`; returns the new value (or the old on timeout)."""
    t0 = time.monotonic()
    now = read()
    while now == before and time.monotonic() - t0 < timeout_s:
        time.sleep(0.1)
        now = read()
    return now


HOME_PICTURE = ".st-key-home_recon [data-testid=stImage] img"


def test_home_page_renders_equations_and_both_models(streamlit_server, page):
    open_page(page, streamlit_server, "", until=HOME_PICTURE)
    assert errors_shown(page) == []
    # Home draws pictures, not plotly charts, so a new visitor's first page never waits for
    # plotly's script: the reconstructions and both models' loss curves are drawn images.
    assert page.locator(CHARTS).count() == 0
    widths = page.eval_on_selector_all("[data-testid=stMain] [data-testid=stImage] img",
                                       "els => els.map(e => e.complete ? e.naturalWidth : -1)")
    assert len(widths) == 3 and min(widths) > 300, widths
    assert page.locator("[data-testid=stHeading]", has_text="VAE Latent Explorer").count() == 1
    assert page.locator(".katex").count() >= 4                   # the equations are typeset
    assert page.get_by_text("mnist-d2-vae-b1").count() >= 1
    assert page.get_by_text("mnist-d2-ae").count() >= 1
    screenshot(page, "home")


@pytest.mark.parametrize("path, slider, element, presses", [
    ("Latent_grid", "grid_n", "grid_fig_VAE", 2),
    ("Interpolation", "interp_t", None, 2),
    ("Sampling", "samp_temp", "samp_fig_VAE", 3),
    ("Latent_map", "map_n", "map_chart_VAE", 1),
])
def test_page_renders_and_a_slider_changes_its_picture(streamlit_server, page, path, slider, element, presses):
    # Sampling's first tab draws pictures only; the others have a plotly map.
    until = {"Sampling": f".st-key-{element} img", "Latent_map": MAP_DRAWN}.get(path, CHARTS)
    open_page(page, streamlit_server, path, until=until)
    assert errors_shown(page) == []
    screenshot(page, f"{path}-before")
    if element is None:
        read = lambda: images_src(page)          # noqa: E731
    else:
        read = lambda: element_shot(page, element)   # noqa: E731
    before = read()
    assert before, f"nothing to compare on {path}"
    nudge_slider(page, slider, presses, "ArrowLeft" if path == "Latent_map" else "ArrowRight")
    after = wait_changed(read, before)
    wait_rendered(page)
    assert after != before, f"moving {slider} did not change the picture on {path}"
    assert errors_shown(page) == []
    screenshot(page, f"{path}-after")


def test_a_chart_page_opened_by_its_address_loads_plotly_once_from_its_head(streamlit_server, page):
    """app.py serves a chart page's address with a plotly.js tag in its head; the charts wait for
    that script instead of loading their own copy, and draw."""
    open_page(page, streamlit_server, "Latent_map", until=MAP_DRAWN)
    scripts = page.evaluate("""() => [...document.querySelectorAll('script[src*="plotly-"]')].map(
        s => [s.id, s.dataset.done || ''])""")
    assert scripts == [["vae-plotly", "1"]], scripts
    assert page.evaluate("() => typeof window.Plotly.react") == "function"
    assert page.locator("[data-testid=stMain] .vae-chart[data-state=drawn]").count() == 2
    assert errors_shown(page) == []


CHART_PLACES_JS = """() => { const v = document.querySelector('[data-testid=stMain]').getBoundingClientRect();
  return [...document.querySelectorAll('[data-testid=stMain] .vae-chart')].map(d => {
    const r = d.getBoundingClientRect();
    return [d.closest('[class*="st-key-"]').className.match(/st-key-(\\S+)/)[1], d.dataset.state, !!d._fullLayout,
            Math.round(r.top - v.bottom)]; }); }"""


def test_a_page_opened_by_its_address_finds_the_server_at_once(streamlit_server, page):
    """app.py names the server's root in the page's head (window.__streamlit.BACKEND_BASE_URL), so
    the front end does not first look for it under the page's own address: no request fails and
    the server is asked for its health once. The page's menu still leads to the other pages."""
    asked, failed = [], []
    page.on("response", lambda r: (asked.append(r.url), failed.append(r.url) if r.status >= 400 else None))
    open_page(page, streamlit_server, "Latent_grid")
    assert errors_shown(page) == []
    assert failed == []
    assert [u for u in asked if u.endswith("/_stcore/health")] == [f"{streamlit_server}/_stcore/health"]
    assert page.evaluate("() => window.__streamlit.BACKEND_BASE_URL") == f"{streamlit_server}/"
    page.locator("[data-testid=stSidebarNav] a[href$='/Sampling']").first.click()
    page.wait_for_url("**/Sampling**")
    wait_rendered(page)
    assert page.locator("h1").first.inner_text().startswith("Sampling")
    assert errors_shown(page) == [] and failed == []


def test_a_chart_below_the_fold_is_drawn_when_it_comes_near_and_before_printing(streamlit_server, page):
    """Interpolation's distance chart lies far below the fold at 1400x1000: the page opens without
    drawing it (plotly has not touched it). A chart scrolled near is drawn; a print draws every
    chart still waiting; in a window tall enough to show the maps, they are drawn as the page
    opens."""
    open_page(page, streamlit_server, "Interpolation")
    assert errors_shown(page) == []
    places = {key: (state, plotted, below) for key, state, plotted, below in page.evaluate(CHART_PLACES_JS)}
    assert set(places) == {"interp_map_VAE", "interp_map_AE", "interp_dist"}
    assert places["interp_dist"][:2] == ("waiting", False) and places["interp_dist"][2] > 600, places
    for key, (state, plotted, below) in places.items():
        assert state in ("waiting", "drawn") and plotted == (state == "drawn"), places

    page.locator(".st-key-interp_map_VAE").scroll_into_view_if_needed()
    page.wait_for_selector(".st-key-interp_map_VAE .vae-chart[data-state=drawn]", timeout=30_000)
    page.wait_for_selector(".st-key-interp_map_AE .vae-chart[data-state=drawn]", timeout=30_000)
    assert page.locator(".st-key-interp_map_VAE .main-svg").count() >= 1
    page.locator(".st-key-interp_dist").scroll_into_view_if_needed()
    page.wait_for_selector(".st-key-interp_dist .vae-chart[data-state=drawn]", timeout=30_000)
    assert [p[1:3] for p in page.evaluate(CHART_PLACES_JS)] == [["drawn", True]] * 3

    open_page(page, streamlit_server, "Interpolation")
    assert page.locator(WAITING).count() >= 1
    page.evaluate("() => window.dispatchEvent(new Event('beforeprint'))")
    page.wait_for_function("() => document.querySelectorAll('[data-testid=stMain] .vae-chart[data-state=drawn]')"
                           ".length === 3", timeout=30_000)
    assert errors_shown(page) == []

    page.set_viewport_size({"width": 1400, "height": 1900})     # the two maps now open in view
    open_page(page, streamlit_server, "Interpolation")
    places = {key: (state, below) for key, state, _, below in page.evaluate(CHART_PLACES_JS)}
    assert places["interp_map_VAE"][1] < 0 and places["interp_map_AE"][1] < 0, places
    assert places["interp_map_VAE"][0] == places["interp_map_AE"][0] == "drawn", places


def test_a_click_on_a_map_dot_shows_the_image_and_rings_it_on_both_maps_without_redrawing_them(
        streamlit_server, page):
    open_page(page, streamlit_server, "Latent_map", until=MAP_DRAWN)
    # Count every full draw of either map from now on (a Plotly.react or newPlot ends with
    # plotly_afterplot; moving the ring is a Plotly.relayout of the shapes alone).
    page.evaluate("""() => { window.__draws = 0;
      for (const gd of document.querySelectorAll('[data-testid=stMain] .vae-chart'))
        gd.on('plotly_afterplot', () => window.__draws++); }""")
    at = page.evaluate(POINT_JS, ["map_chart_VAE", 11])
    assert isinstance(at, list), f"the VAE map has no dot to click: {at}"
    page.mouse.click(at[0], at[1])
    page.wait_for_selector("[data-testid=stImage] img", timeout=30_000)
    wait_rendered(page)
    assert errors_shown(page) == []
    caption = page.locator("[data-testid=stImageCaption]").first.inner_text()
    idx = int(caption.split("test image ")[1].split()[0])
    rings = page.evaluate("""() => [...document.querySelectorAll('[data-testid=stMain] .vae-chart')].map(
        gd => (gd.layout.shapes || []).map(s => s.name))""")
    assert rings == [[f"image {idx}"], [f"image {idx}"]], rings
    assert page.evaluate("() => window.__draws") == 0, "a click redrew a whole map"
    screenshot(page, "Latent_map-picked")


def test_the_map_canvas_draws_each_dot_names_it_under_the_pointer_and_hides_a_class_from_the_legend(
        streamlit_server, page):
    open_page(page, streamlit_server, "Latent_map", until=MAP_DRAWN)
    chart = page.locator(".st-key-map_chart_VAE .vae-chart")
    assert chart.get_attribute("data-dots") == "2000"
    # A dot with no other within 8 px: the pointer on it can mean only it.
    k = page.evaluate("""() => { const gd = document.querySelector('.st-key-map_chart_VAE .vae-chart'), d = gd.__dots;
        const xa = gd._fullLayout.xaxis, ya = gd._fullLayout.yaxis;
        const p = d.x.map((x, i) => [xa.d2p(x), ya.d2p(d.y[i])]);
        return p.findIndex(([x, y], i) => p.every(([u, v], j) => j === i || Math.hypot(u - x, v - y) > 8)); }""")
    assert k >= 0
    # It is painted where plotly's axes put its code.
    at = page.evaluate(POINT_JS, ["map_chart_VAE", k])
    pixel_js = """([x, y]) => {
        const cv = document.querySelector('.st-key-map_chart_VAE canvas.vae-dots'), r = cv.getBoundingClientRect();
        const k = cv.width / r.width;
        const px = Math.round((x - r.left) * k), py = Math.round((y - r.top) * k);
        return [...cv.getContext('2d').getImageData(px, py, 1, 1).data];
    }"""
    pixel = page.evaluate(pixel_js, at)
    assert pixel[:3] != [255, 255, 255], f"no dot painted under dot {k}: {pixel}"
    # A pan (the map's drag mode) moves the axes, and the canvas with them.
    page.mouse.move(at[0] + 20, at[1] + 20)
    page.mouse.down()
    page.mouse.move(at[0] + 50, at[1] + 40, steps=5)
    page.mouse.move(at[0] + 80, at[1] + 60, steps=5)
    page.mouse.up()
    page.wait_for_function("""() => document.querySelector('.st-key-map_chart_VAE .vae-chart').layout.xaxis.autorange
                              === false""", timeout=5_000)
    moved = page.evaluate(POINT_JS, ["map_chart_VAE", k])
    assert abs(moved[0] - at[0] - 60) < 3 and abs(moved[1] - at[1] - 40) < 3, (at, moved)
    assert page.evaluate(pixel_js, moved) == pixel, "the canvas did not follow the pan"
    assert page.evaluate("""() => { const gd = document.querySelector('.st-key-map_chart_VAE .vae-chart');
        const l = gd._fullLayout; return [l.xaxis.range, l.yaxis.range].flat().map(v => v.toPrecision(6)).join(' ')
                                         === gd.dataset.dotsRange; }"""), "the canvas is drawn at other ranges"
    at = moved
    dot = page.evaluate("""(k) => { const d = document.querySelector('.st-key-map_chart_VAE .vae-chart').__dots;
        return {id: d.id[k], label: d.groups[d.g[k]].label, first: d.g.filter(g => g === 0).length}; }""", k)
    page.mouse.move(at[0], at[1])
    tip = page.locator(".st-key-map_chart_VAE .vae-dot-tip")
    tip.wait_for(state="visible", timeout=5_000)
    assert tip.inner_text().startswith(f"{dot['label']}image {dot['id']}\n("), tip.inner_text()
    page.mouse.move(at[0], at[1] - 200)
    # A click on the first class's legend entry hides its dots (and only those).
    page.locator(".st-key-map_chart_VAE .legend .traces").first.click()
    page.wait_for_function("""() => document.querySelector('.st-key-map_chart_VAE .vae-chart').dataset.dots
                              === String(2000 - %d)""" % dot["first"], timeout=10_000)
    assert errors_shown(page) == []


def test_a_map_downloaded_from_its_toolbar_has_its_dots_on_white(streamlit_server, page):
    import io

    import numpy as np
    from PIL import Image

    from browser_support import ARTIFACTS
    open_page(page, streamlit_server, "Latent_map", until=MAP_DRAWN)
    chart = page.locator(".st-key-map_chart_AE .vae-chart")             # the AE's: no bubbles, only dots
    chart.hover()
    with page.expect_download(timeout=30_000) as got:
        chart.locator(".modebar-btn[data-title='Download plot as a PNG']").click()
    png = Path(got.value.path()).read_bytes()
    (ARTIFACTS / "Latent_map-export-AE.png").write_bytes(png)
    img = np.asarray(Image.open(io.BytesIO(png)).convert("RGBA"))
    assert got.value.suggested_filename == "map_chart_AE.png"
    assert img.shape[0] >= 2 * 500 and (img[..., 3] == 255).all()        # scale 2, no transparent pixel
    rgb = img[:, : img.shape[1] * 2 // 3, :3].astype(int)                 # the plot, left of the legend
    coloured = (rgb.max(-1) - rgb.min(-1)) > 60                          # class colours, not grey or white
    assert coloured.sum() > 5000, coloured.sum()
    assert errors_shown(page) == []


def test_a_chart_follows_its_column_when_the_sidebar_closes(streamlit_server, page):
    open_page(page, streamlit_server, "Compare_beta", until=CHARTS)
    draw_waiting_charts(page)                     # the charts below the fold too
    widths = """() => [...document.querySelectorAll('[data-testid=stMain] .vae-chart')]
        .map(g => [Math.round(g._fullLayout.width), g.clientWidth])"""
    before = page.evaluate(widths)
    assert before and all(abs(w - c) <= 2 for w, c in before), before
    page.hover("[data-testid=stSidebar]")         # the collapse button shows on hover
    page.locator("[data-testid=stSidebarCollapseButton] button").click()
    page.wait_for_function(f"""() => ({widths})().every(([w, c]) => Math.abs(w - c) <= 2)
                                && ({widths})()[0][1] > {before[0][1]}""", timeout=10_000)
    assert errors_shown(page) == []


def selected(pg, key: str) -> str:
    """What a selectbox shows: its text and the value of its input, if it draws one."""
    box = pg.locator(f".st-key-{key}").first
    inputs = [i.input_value() for i in box.locator("input").all()]
    return box.inner_text() + " " + " ".join(inputs)


def test_the_server_warmed_up_at_start(streamlit_server, page):
    """app.py's start-up hook imported the libraries and loaded the default pair in a thread."""
    from browser_support import ARTIFACTS
    open_page(page, streamlit_server)
    log = (ARTIFACTS / "streamlit-server.log").read_text()
    assert "start-up warm-up: imports" in log and "default pair" in log, log[-2000:]
    assert "start-up warm-up failed" not in log


def test_selection_holds_when_moving_between_pages(streamlit_server, page):
    open_page(page, streamlit_server, "", until=HOME_PICTURE)
    box = page.locator(".st-key-sb_vae")
    box.click()
    page.get_by_role("option", name="mnist-d20-vae-b2").first.click()
    wait_rendered(page)
    page.locator("[data-testid=stSidebarNav] a", has_text="Latent grid").click()
    wait_rendered(page, until=CHARTS)
    assert "mnist-d20-vae-b2" in selected(page, "sb_vae")
    assert "mnist-d20-ae" in selected(page, "sb_ae")
    assert errors_shown(page) == []
    screenshot(page, "grid-20d-pair")


def test_a_digit_drawn_on_the_canvas_is_encoded_by_both_models(streamlit_server, page):
    open_page(page, streamlit_server, "Sampling", until=".st-key-samp_fig_VAE img")
    page.get_by_role("tab", name="Draw your own digit").click()
    canvas = page.locator(".st-key-draw_canvas canvas").last
    canvas.wait_for(timeout=60_000)
    box = canvas.bounding_box()
    page.mouse.move(box["x"] + 140, box["y"] + 40)
    page.mouse.down()
    for i in range(20):                       # a vertical stroke: a "1"
        page.mouse.move(box["x"] + 140, box["y"] + 40 + 10 * i)
    page.mouse.up()
    page.get_by_text("VAE reconstruction").wait_for(timeout=60_000)
    wait_rendered(page)
    assert page.get_by_text("AE reconstruction").count() >= 1
    assert errors_shown(page) == []
    screenshot(page, "draw")


def test_the_chosen_pair_stays_chosen_across_pages(streamlit_server, page):
    """Issue 15's sequence: choose the 2-D β = 1 VAE, then the 20-D β = 2 VAE (its AE follows to
    20-D), then change page, then go Home: the pair stays the 20-D β = 2 VAE beside the 20-D AE.
    (It used to revert the AE to the 2-D one, then swap the VAE for the binarised 32-D model.)"""
    import re

    def pick(name):
        page.locator(".st-key-sb_vae input").click()
        page.get_by_role("option", name=re.compile("^" + re.escape(name) + r"\s")).click()
        wait_rendered(page)

    def pair():
        return (page.locator(".st-key-sb_vae input").input_value().split()[0],
                page.locator(".st-key-sb_ae input").input_value().split()[0])

    open_page(page, streamlit_server, "Latent_map", until=".st-key-sb_vae")
    pick("mnist-d2-vae-b1")
    assert pair() == ("mnist-d2-vae-b1", "mnist-d2-ae")
    time.sleep(1.5)                                     # the pauses of a person between steps
    pick("mnist-d20-vae-b2")
    assert pair() == ("mnist-d20-vae-b2", "mnist-d20-ae")
    time.sleep(1.5)
    page.locator("[data-testid=stSidebarNav] a", has_text="Interpolation").click()
    wait_rendered(page)
    assert pair() == ("mnist-d20-vae-b2", "mnist-d20-ae")
    time.sleep(1.5)
    page.locator("[data-testid=stSidebarNav] a", has_text="Home").click()
    wait_rendered(page, until=HOME_PICTURE)
    assert pair() == ("mnist-d20-vae-b2", "mnist-d20-ae")
    assert errors_shown(page) == []


def test_a_copied_link_reproduces_the_view_in_a_fresh_browser(streamlit_server, browser):
    """A teacher sets up 'this model, this pair of digits, step 7' on Interpolation, copies the link
    from the sidebar (its Copy button puts it on the clipboard), and a student's fresh browser opens
    exactly that view; the link holds no training token."""
    import re
    from browser_support import nudge_slider
    from playwright.sync_api import expect
    teacher = browser.new_context(viewport={"width": 1280, "height": 800},
                                  permissions=["clipboard-read", "clipboard-write"]).new_page()
    student = browser.new_context(viewport={"width": 1280, "height": 800}).new_page()
    try:
        open_page(teacher, streamlit_server, "Interpolation", until=".st-key-interp_t")
        teacher.locator(".st-key-sb_vae input").click()
        teacher.get_by_role("option", name=re.compile(r"^mnist-d2-vae-b1\s")).click()
        wait_rendered(teacher, until=".st-key-interp_t")
        thumb = ".st-key-interp_t input[type=range], .st-key-interp_t [role=slider]"

        def step(p):
            el = p.locator(thumb).first
            return int(el.get_attribute("aria-valuetext") or el.get_attribute("aria-valuenow") or el.input_value())
        start = step(teacher)
        nudge_slider(teacher, "interp_t", presses=7 - start)
        wait_rendered(teacher)
        teacher.locator(".st-key-view_link button").first.click()
        wait_rendered(teacher, until=".st-key-view_link_box input")
        link = teacher.locator(".st-key-view_link_box input").input_value().strip()
        copy = teacher.locator(".st-key-view_link_box button")
        copy.click()
        expect(copy).to_have_text("Copied")
        assert teacher.evaluate("navigator.clipboard.readText()") == link
        assert "interp_t=7" in link and "vae=mnist-d2-vae-b1" in link and "trainer" not in link, link
        student.goto(link, wait_until="domcontentloaded")
        wait_rendered(student, until=".st-key-interp_t")
        assert student.locator(".st-key-sb_vae input").input_value().startswith("mnist-d2-vae-b1")
        assert student.locator(".st-key-sb_ae input").input_value().startswith("mnist-d2-ae")
        assert step(student) == 7
        assert errors_shown(student) == []
        student.reload(wait_until="domcontentloaded")              # a reload keeps the view too
        wait_rendered(student, until=".st-key-interp_t")
        assert step(student) == 7
    finally:
        teacher.context.close()
        student.context.close()


ALL_PAGES = ["", "Latent_map", "Latent_grid", "Interpolation", "Sampling", "Latent_arithmetic", "True_posterior",
             "Few_labels", "Train", "Compare_beta", "Upload", "Class_gallery"]


@pytest.mark.parametrize("width, height", [(1280, 800), (1920, 1080)])
def test_no_page_cuts_off_a_label_or_a_number_at_projector_sizes(streamlit_server, browser, width, height):
    """Every page on its defaults, at a laptop's and a projector's size: no text element hides part
    of its text (metric cards, buttons, select boxes, captions), and every plotly chart is drawn
    once: its margins already hold its labels and legend (figures.steady_margins), so plotly does
    not grow them and draw it again. The screenshots are kept in test-artifacts/ for a person to
    look at. Nothing is fetched from outside the server (the app works offline): not even the
    tab's icon."""
    context = browser.new_context(viewport={"width": width, "height": height})
    pg = context.new_page()
    outside = []
    pg.on("request", lambda r: outside.append(r.url) if not r.url.startswith((streamlit_server, "data:", "blob:"))
          else None)
    try:
        cut, twice = {}, {}
        for path in ALL_PAGES:
            open_page(pg, streamlit_server, path)
            assert errors_shown(pg) == [], path
            screenshot(pg, f"{path or 'Home'}-{width}x{height}")
            if clipped_texts(pg):
                cut[path or "Home"] = clipped_texts(pg)
            if charts_drawn_twice(pg):
                twice[path or "Home"] = charts_drawn_twice(pg)
        assert cut == {}
        assert twice == {}
        assert outside == []
    finally:
        context.close()

"""Fixtures and helpers to drive the real app in a headless Chromium.

Import the fixtures into a test module (`from browser_support import streamlit_server, browser, page`)
or a conftest. `streamlit_server` starts `python -m streamlit run app.py` on a free port with the
repository as cwd and waits for /_stcore/health; `browser` launches the system Chromium
(/usr/bin/chromium). A missing browser fails the test, it is never skipped.
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
ARTIFACTS = REPO / "test-artifacts"
CHROMIUM = os.environ.get("VAE_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(url: str, proc: subprocess.Popen, timeout: float = 60.0) -> float:
    """Poll url/_stcore/health until it answers "ok"; returns the seconds it took."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if proc.poll() is not None:
            raise RuntimeError(f"streamlit exited with code {proc.returncode} before it was healthy")
        try:
            with urllib.request.urlopen(url + "/_stcore/health", timeout=2) as r:
                if r.status == 200:
                    return time.monotonic() - t0
        except OSError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"streamlit did not answer {url}/_stcore/health within {timeout:.0f} s")


def start_server(env: dict | None = None, port: int | None = None, log_path: Path | None = None):
    """Start `streamlit run app.py` on a free port; returns (process, url). The caller stops it."""
    port = port or free_port()
    cmd = [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true",
           "--server.port", str(port), "--browser.gatherUsageStats", "false"]
    full_env = {**os.environ, **(env or {})}
    out = open(log_path, "wb") if log_path else subprocess.DEVNULL
    proc = subprocess.Popen(cmd, cwd=REPO, env=full_env, stdout=out, stderr=subprocess.STDOUT)
    return proc, f"http://127.0.0.1:{port}"


def stop_server(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


DEFAULT_PAIR = ("mnist-d2-vae-b1", "mnist-d2-ae")


def make_tiny_checkpoints(folder: Path) -> Path:
    """Tiny MLP models under the shipped names and run records (the d = 20 and d = 2 MNIST pairs),
    each trained one epoch on 1,000 exploration images, plus the exploration data: a stand-in for
    checkpoints/ that takes a few seconds to build."""
    import shutil

    import torch

    from vae_core import runmeta
    from vae_core.checkpoints import save_checkpoint
    from vae_core.config import ModelConfig, TrainConfig
    from vae_core.data import load_exploration
    from vae_core.models import build_model
    from vae_core.train import fit

    folder = Path(folder)
    (folder / "data").mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO / "checkpoints" / "data" / "mnist-test.npz", folder / "data" / "mnist-test.npz")
    data = load_exploration("mnist", folder / "data").subset(1000)
    for d in (20, 2):
        for kind in ("vae", "ae"):
            torch.manual_seed(0)
            model = build_model(ModelConfig(kind=kind, latent_dim=d, hidden=(64,)))
            cfg = TrainConfig(dataset="mnist", epochs=1, batch_size=100, beta=1.0 if kind == "vae" else 0.0)
            fit(model, data, None, cfg)
            name = f"mnist-d{d}-vae-b1" if kind == "vae" else f"mnist-d{d}-ae"
            run = runmeta.make(kind, cfg.beta, 0, group=f"shipped-mnist-d{d}", owner="shipped", created=0.0)
            save_checkpoint(folder / name, model, cfg, dataset="mnist",
                            history=[{"epoch": 1, "train_loss": 1.0, "test_loss": 1.0}], run=run)
    return folder


def add_beta_member(folder: Path, beta: float = 2.0) -> Path:
    """An untrained 2-D VAE with β = `beta` in the default pair's family (run group
    shipped-mnist-d2), saved into a tiny checkpoint folder: a family of two to measure."""
    import torch

    from vae_core import runmeta
    from vae_core.checkpoints import save_checkpoint
    from vae_core.config import ModelConfig, TrainConfig
    from vae_core.models import build_model
    torch.manual_seed(int(beta * 100))         # weights of their own: caches are keyed by them
    return save_checkpoint(Path(folder) / f"mnist-d2-vae-b{beta:g}",
                           build_model(ModelConfig(kind="vae", latent_dim=2, hidden=(64,))),
                           TrainConfig(dataset="mnist", epochs=1, beta=beta), dataset="mnist",
                           run=runmeta.make("vae", beta, 0, group="shipped-mnist-d2", owner="shipped", created=0.0))


def checkpoints_for_tests(tmp_root: Path) -> Path:
    """The shipped checkpoints/ when it holds the default pair (the real product), else tiny
    stand-ins with the same names in tmp_root (a fresh clone before the pretrained models land)."""
    shipped = REPO / "checkpoints"
    if all((shipped / f"{n}.safetensors").is_file() for n in DEFAULT_PAIR):
        return shipped
    return make_tiny_checkpoints(tmp_root)


@pytest.fixture(scope="session")
def streamlit_server(tmp_path_factory):
    """The app served by `streamlit run` for the whole session; yields its base URL.

    Models come from checkpoints_for_tests(); models trained during the tests go to a
    temporary user folder, never into the repository."""
    ARTIFACTS.mkdir(exist_ok=True)
    ckpt_dir = checkpoints_for_tests(tmp_path_factory.mktemp("browser-checkpoints"))
    user_dir = tmp_path_factory.mktemp("browser-user-models")
    env = {"VAE_CHECKPOINT_DIR": str(ckpt_dir), "VAE_USER_DIR": str(user_dir)}
    proc, url = start_server(env=env, log_path=ARTIFACTS / "streamlit-server.log")
    try:
        wait_healthy(url, proc, timeout=90)
        yield url
    finally:
        stop_server(proc)


def launch_chromium(playwright):
    """The system Chromium, headless. A missing binary is an error with the fix in its message."""
    if not Path(CHROMIUM).exists():
        raise RuntimeError(f"Chromium is not at {CHROMIUM}: install it with `apt-get install chromium` "
                           "or set VAE_CHROMIUM to its path (never `playwright install`)")
    return playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        b = launch_chromium(p)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def page(browser):
    """A fresh tab at a desktop size; closed after the test."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    pg = context.new_page()
    try:
        yield pg
    finally:
        context.close()


# The main area's plotly charts: the app's own component (explorer/charts.py) or, where static
# serving is off, st.plotly_chart.
CHARTS = "[data-testid=stMain] .vae-chart, [data-testid=stMain] [data-testid=stPlotlyChart]"


def wait_rendered(page, timeout_ms: int = 120_000, until: str | None = None, settle_s: float = 0.8) -> None:
    """Wait until the script has finished: `until` (a selector, when given) is on the page, no
    element is stale, no spinner shows, and the number of elements has not changed for settle_s."""
    page.wait_for_selector("[data-testid=stMainBlockContainer] [data-testid=stElementContainer]",
                           timeout=timeout_ms)
    if until:
        page.wait_for_selector(until, timeout=timeout_ms)
    deadline = time.monotonic() + timeout_ms / 1000
    last, since = None, time.monotonic()
    while time.monotonic() < deadline:
        state = page.evaluate("""() => [
            document.querySelectorAll('[data-testid=stElementContainer]').length,
            document.querySelectorAll('[data-stale=true]').length,
            document.querySelectorAll('[data-testid=stSpinner]').length,
            document.querySelectorAll('[data-testid=stStatusWidget] button').length,
            document.querySelectorAll('[data-testid=stMain] [data-testid=stPlotlyChart]').length
              - document.querySelectorAll('[data-testid=stMain] [data-testid=stPlotlyChart] .main-svg').length / 2
              + document.querySelectorAll('.vae-chart[data-state=drawing]').length,
            [...document.querySelectorAll('[data-testid=stMain] img')].filter(i => !i.complete).length]""")
        # st.plotly_chart draws two .main-svg layers once it has rendered, the app's chart component
        # (explorer/charts.py) marks itself drawn; a picture is drawn once loaded
        busy = state[1] or state[2] or state[3] or state[4] > 0 or state[5]
        if state != last or busy:
            last, since = state, time.monotonic()
        elif time.monotonic() - since >= settle_s:
            return
        time.sleep(0.05)
    raise TimeoutError(f"the page was still changing after {timeout_ms / 1000:.0f} s")


def open_page(page, base_url: str, path: str = "", timeout_ms: int = 120_000,
              until: str | None = None) -> None:
    """Open a page of the app (path "" is the home page, else e.g. "Latent_map") and wait for it."""
    page.goto(f"{base_url}/{path}", wait_until="domcontentloaded", timeout=timeout_ms)
    wait_rendered(page, timeout_ms, until=until)


def errors_shown(page) -> list[str]:
    """Texts of exceptions and error alerts on the page (empty when all is well)."""
    texts = [e.inner_text() for e in page.locator("[data-testid=stException]").all()]
    for alert in page.locator("[data-testid=stAlertContentError]").all():
        texts.append(alert.inner_text())
    return texts


def nudge_slider(page, key: str, presses: int = 1, key_name: str = "ArrowRight") -> None:
    """Move the slider whose widget key is `key` with the keyboard, as a user would (Streamlit's
    slider thumb is an <input type=range>; older versions drew a [role=slider] div). Waits until
    the slider shows its new value; a key press the page dropped while busy is pressed again."""
    thumb = page.locator(f".st-key-{key} input[type=range], .st-key-{key} [role=slider]").first
    for _ in range(3):
        before = thumb.get_attribute("aria-valuetext") or thumb.get_attribute("aria-valuenow")
        thumb.focus()
        for _ in range(presses):
            thumb.press(key_name)
        t0 = time.monotonic()
        while time.monotonic() - t0 < 5:
            now = thumb.get_attribute("aria-valuetext") or thumb.get_attribute("aria-valuenow")
            if now != before:
                return
            time.sleep(0.1)
    raise AssertionError(f"the slider {key} did not move with {key_name}")


# Where a dot of the chart drawn with key `key` is on screen: [x, y, dots in its trace] for the
# j-th dot (modulo) of its first visible marker trace, "display" for a chart that cannot be
# clicked, null for no dots. Positions come from plotly's own axes (SVG or WebGL alike).
POINT_JS = """([key, j]) => {
  const gd = document.querySelector('.st-key-' + CSS.escape(key) + ' .js-plotly-plot');
  if (!gd || !gd._fullLayout || !gd._fullData) return null;
  // Streamlit turns on clicking to select (clickmode 'event+select') only for on_select charts;
  // the app's own chart component (explorer/charts.py, class vae-chart) marks the ones it reports clicks on.
  if (!(gd._fullLayout.clickmode || '').includes('select') && gd.dataset.clickable !== '1') return 'display';
  const ax = (a, name) => gd._fullLayout[name + 'axis' + (a.length > 1 ? a.slice(1) : '')];
  const r = gd.getBoundingClientRect();
  const d = gd.__dots;        // dots the chart component draws on its canvas (explorer/charts.py)
  if (d && d.x.length) {
    const k = j % d.x.length, xa = ax('x', 'x'), ya = ax('y', 'y');
    return [r.left + xa._offset + xa.d2p(d.x[k]), r.top + ya._offset + ya.d2p(d.y[k]), d.x.length];
  }
  const tr = gd._fullData.find(t => ['scatter', 'scattergl'].includes(t.type) && t.visible === true
                                   && (t.mode || '').includes('markers') && t.x && t.x.length > 0);
  if (!tr) return null;
  const k = j % tr.x.length;
  const xa = ax(tr.xaxis || 'x', 'x'), ya = ax(tr.yaxis || 'y', 'y');
  return [r.left + xa._offset + xa.d2p(tr.x[k]), r.top + ya._offset + ya.d2p(tr.y[k]), tr.x.length];
}"""


def charts_drawn_twice(page) -> list[str]:
    """Keys of the page's plotly charts whose margins plotly had to grow: each of them was laid out,
    measured and drawn a second time (figures.steady_margins sets margins that hold their labels)."""
    return page.evaluate("""() => [...document.querySelectorAll('[data-testid=stMain] .js-plotly-plot')]
      .filter(g => { const m = g._fullLayout.margin, s = g._fullLayout._size;
                     return Math.round(s.l) > m.l || Math.round(s.r) > m.r || Math.round(s.t) > m.t
                         || Math.round(s.b) > m.b; })
      .map(g => { const el = g.closest('[class*="st-key-"]');
                  return el ? [...el.classList].find(c => c.startsWith('st-key-')).slice(7) : '?'; })""")


def element_bytes(page, selector: str) -> bytes:
    """A screenshot of the first element matching `selector` (to compare before and after)."""
    return page.locator(selector).first.screenshot()


WAITING = "[data-testid=stMain] .vae-chart[data-state=waiting]"
# The first chart still waiting that a person could scroll to (not in a hidden tab), or null
FIRST_WAITING_JS = f"""() => [...document.querySelectorAll('{WAITING}')].find(d => d.offsetParent !== null) || null"""
NOTHING_DRAWING_JS = "() => !document.querySelector('.vae-chart[data-state=drawing]')"


def draw_waiting_charts(page, timeout_s: float = 60) -> int:
    """Scroll each chart still waiting below the fold into view (explorer/charts.py draws a chart
    once it comes near the visible part; one in a hidden tab waits for its tab), wait until each
    is drawn, and scroll back to the top. Returns how many charts were waiting; a chart still
    waiting after timeout_s is an error."""
    seen = 0
    deadline = time.monotonic() + timeout_s
    while True:
        left = page.evaluate(f"""() => {{ const d = ({FIRST_WAITING_JS})();
            if (!d) return false;
            if (!d.__benchSeen) {{ d.__benchSeen = true; d.scrollIntoView({{block: 'center'}}); return 'new'; }}
            return true; }}""")
        if not left:
            break
        seen += left == "new"
        if time.monotonic() > deadline:
            raise TimeoutError(f"a chart on screen was still waiting to be drawn after {timeout_s:.0f} s")
        time.sleep(0.05)
    page.wait_for_function(NOTHING_DRAWING_JS, timeout=timeout_s * 1000)
    page.evaluate("() => document.querySelector('[data-testid=stMain]').scrollTo(0, 0)")
    return seen


def screenshot(page, name: str) -> Path:
    """The page as a person sees it at the top, every chart drawn (draw_waiting_charts)."""
    draw_waiting_charts(page)
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


# Text a page cuts off: an element that hides its overflow (or ends it with "…") and whose text is
# wider than its box. Screen-reader-only elements (1 px wide) and KaTeX's hidden MathML are skipped.
CLIPPED_JS = """() => {
  const out = [];
  for (const el of document.querySelectorAll('[data-testid=stAppViewContainer] *')) {
    const cs = getComputedStyle(el);
    if (!['hidden', 'clip'].includes(cs.overflowX) && cs.textOverflow !== 'ellipsis') continue;
    if (el.scrollWidth <= el.clientWidth + 1 || el.clientWidth <= 2) continue;
    if ((el.className || '').toString().includes('katex')) continue;
    const r = el.getBoundingClientRect();
    const text = (el.innerText || '').trim();
    if (r.width === 0 || r.height === 0 || !text) continue;
    out.push(text.slice(0, 60) + ' (' + el.scrollWidth + ' px in ' + el.clientWidth + ')');
  }
  return out;
}"""


def clipped_texts(page) -> list[str]:
    """The texts the page shows cut off (empty when every label and number fits its box)."""
    return page.evaluate(CLIPPED_JS)

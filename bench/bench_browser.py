"""Everything a person waits for in the explorer, timed in a real browser (issue 16, item 1).

    VAE_DATA_DIR=../shared/data python bench/bench_browser.py   # the whole run (15-20 min on 2 cores)
    python bench/bench_browser.py --quick                       # 2 pages, 2 moves, 500-point maps
    python bench/bench_browser.py --pages "Home;Latent_grid" --moves 10 --no-maps
    python bench/bench_browser.py --big                         # also 10,000-point maps (minutes)
    python bench/bench_browser.py --while-training              # while another session trains

What it does, against `streamlit run app.py` on the shipped checkpoints/ (models trained or
maps computed meanwhile go to a temporary VAE_USER_DIR) and /usr/bin/chromium driven by Playwright:

1. First page from a fresh start: from launching `streamlit run` to the whole home page drawn,
   every picture loaded (HOME_DRAWN_JS; a fresh server process each time; the browser is
   already up).
2. Page opens, warm: each page of app.py's menu opened by its address (a new session, as a link
   or a reload does) and from the sidebar menu (the same session), several times each, from the
   navigation or click until the page is idle.
3. Every widget on every page, found from the DOM (Streamlit puts an `st-key-<key>` class on each
   keyed widget): sliders and select sliders (arrow keys, back and forth), select boxes (the next
   option, then back), segmented controls, pills and radios (another option, then back), toggles
   and checkboxes, number inputs (+ then -), text inputs (a trailing space, then without),
   multiselects (remove the last choice, then add it back), buttons, the sidebar's (on every
   page), widgets inside other tabs (each tab switch is timed too) and closed expanders, and a
   click on a dot of each chart drawn with on_select (the others are listed as display only).
   Buttons that start or stop training, file uploaders, download buttons and the drawing canvas
   are not pressed; the table says so. Widgets are those of the page as it opens: a widget that
   only appears after some choice (the picked image's panel) is not found.
4. A new map at each size: on Latent map with the 20-D pair, from PCA to t-SNE and to UMAP with a
   seed never used before (so neither the shipped maps nor the user's map cache answer), and the
   t-SNE seed's + (another new seed), at 500, 1,000 and 2,000 points (10,000 with --big), until
   both maps (VAE and AE) are drawn. The first t-SNE after the start includes its first import.

The clock. An init script in every document stamps performance.now() at the first key press or
pointer press of a move, and a MutationObserver (plus image `load` events) stamps the time of the
last change to the page (but a help tooltip's: it appears half a second after the pointer rests
on a pressed button, and is not what the press draws). A move ends when the server has finished the rerun it started
(script_finished on the websocket), no element is stale, no spinner, progress bar, skeleton or
"running" status shows, every plotly chart has drawn and every picture loaded, and nothing has changed for --settle
seconds; the time reported runs from the press to the LAST change before that quiet spell, so the
settle wait itself is not counted. A page open is timed from the navigation's start
(performance.now() = 0 in the new document) or from the menu click.

Each move also records how the server ran it: `page` (the whole script reran) or `fragment`
(only an st.fragment), from the rerun request on the websocket, and the server's own run time
from the `rerun <view> <ms>` lines the app logs with VAE_LOG_RERUNS=1 (explorer/timing.py).

The load average and the number of cores are printed at the start and at the end: on a shared
2-core machine the numbers move with the load.

With --while-training another session trains through the app's queue the whole time (the Train
page's default preset, its live view polling every second) from a second Chromium at nice 19
(--trainer-nice): in a class that browser runs on the student's machine, while its session's
work on the server and the training on Ray's worker stay on the cores measured.
"""
from __future__ import annotations

import argparse
import os
import random
import re
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "tests")]

# app.py's menu, in its order ("" is Home); Latent map also with the 20-D pair, whose projection
# choices the default 2-D pair does not have (it has the posterior bubbles instead). Page opens
# are timed for the plain addresses only.
D20 = "vae=mnist-d20-vae-b1&ae=mnist-d20-ae"
PAGES = ["", "Latent_map", f"Latent_map?{D20}", "Latent_grid", "Interpolation", "Sampling", "Latent_arithmetic",
         "True_posterior", "Few_labels", "Compare_beta", "Train", "Upload", "Class_gallery"]
# Buttons that start, stop or cancel training jobs: pressing them changes the machine's load (or
# someone's job), not a view.
TRAINING_BUTTON_WORDS = ("train", "stop", "cancel", "sweep", "queue")

GOALS_MS = {"control": 500, "fragment": 200, "open": 1000, "start": 4000, "map2000": 2000}

INIT_JS = """
(() => {
  if (window.__bench) return;
  const b = window.__bench = {t0: null, last: 0, n: 0};
  const press = () => { if (b.t0 === null) b.t0 = performance.now(); };
  addEventListener('keydown', press, true);
  addEventListener('pointerdown', press, true);
  addEventListener('mousedown', press, true);
  // A picture is drawn when its image has loaded, which is no DOM mutation of its own.
  addEventListener('load', e => { if (e.target && e.target.tagName === 'IMG') { b.last = performance.now(); } }, true);
  // A button's help tooltip appears about 0.5 s after the pointer comes to rest on it: the
  // pointer of a press, so it is no part of what the press draws, and its changes are not counted.
  const TIP = '[data-baseweb=tooltip], [role=tooltip]';
  const tipNode = n => n.nodeType === 1 && (n.matches(TIP) || n.querySelector(TIP) !== null
                                            || (n.tagName === 'DIV' && n.childNodes.length === 0));
  // A screen reader's announcement ("3 options available.") in a visually hidden live region
  // that a select box leaves behind and clears about 0.5 s later: nothing on screen changes.
  const unseen = el => {
    // The live region or its wrapper (Streamlit's [data-live-announcer]) hidden by its own style:
    // absolute, overflow hidden, a pixel wide and high; not merely empty after the change.
    let box = el && el.closest('[aria-live=polite], [aria-live=assertive]');
    for (let k = 0; box && k < 3; k++, box = box.parentElement) {
      const s = getComputedStyle(box);
      if (s.position === 'absolute' && s.overflow === 'hidden'
          && parseFloat(s.width) <= 1 && parseFloat(s.height) <= 1) return true;
    }
    return false;
  };
  const tipOnly = r => {
    if (r.attributeName === 'aria-describedby') return true;
    const el = r.target.nodeType === 1 ? r.target : r.target.parentElement;
    if (el && (el.closest(TIP) || unseen(el))) return true;
    if (r.type !== 'childList' || (el && el.closest('[data-testid=stApp]'))) return false;
    const nodes = [...r.addedNodes, ...r.removedNodes];
    return nodes.length > 0 && nodes.every(tipNode);
  };
  const start = () => {
    new MutationObserver(records => {
      if (records.every(tipOnly)) return;
      b.last = performance.now(); b.n++;
      // What changed last, for a slow move's line: its element's test id (or tag), and how.
      const r = records[records.length - 1];
      const el = r.target.nodeType === 1 ? r.target : r.target.parentElement;
      const owner = el && el.closest('[data-testid]');
      const node = [...r.addedNodes, ...r.removedNodes][0];
      b.what = (owner ? owner.dataset.testid : (el ? el.tagName.toLowerCase() : '?'))
               + ' ' + (r.type === 'attributes' ? '@' + r.attributeName : r.type)
               + (node ? (r.addedNodes.length ? ' +' : ' -') + (node.nodeType === 1
                  ? node.cloneNode(false).outerHTML.replace(/\s+/g, ' ').slice(0, 80) : '#text') : '');
    }).observe(document, {subtree: true, childList: true, attributes: true, characterData: true});
  };
  start();
})();
"""

# A move slower than this has its line say what changed last on the page (a late tooltip, a
# chart's redraw, an image): where the time went, without a profile.
SLOW_MS = 300

# [stale, spinner, running status, plotly charts (st.plotly_chart's or the app's) not drawn yet, pictures not loaded yet, skeletons,
#  progress bars, elements, ms since the last change]
STATE_JS = """() => [
  document.querySelectorAll('[data-stale=true]').length,
  document.querySelectorAll('[data-testid=stSpinner]').length,
  document.querySelectorAll('[data-testid=stStatusWidget] button').length,
  Math.max(0, document.querySelectorAll('[data-testid=stMain] [data-testid=stPlotlyChart]').length
    - document.querySelectorAll('[data-testid=stMain] [data-testid=stPlotlyChart] .main-svg').length / 2)
    + document.querySelectorAll('.vae-chart[data-state=drawing]').length,
  [...document.querySelectorAll('[data-testid=stMain] img')].filter(i => !i.complete).length,
  document.querySelectorAll('[data-testid=stMain] [data-testid=stSkeleton]').length,
  document.querySelectorAll('[data-testid=stProgress]').length,
  document.querySelectorAll('[data-testid=stElementContainer]').length,
  window.__bench ? performance.now() - window.__bench.last : 0]"""

# Every keyed element (but router.py's hidden preload chart): [key, kind (the widget's data-testid), visible, disabled, label].
WIDGETS_JS = """() => {
  const out = [];
  for (const el of document.querySelectorAll('[data-testid=stElementContainer][class*="st-key-"]')) {
    if (el.closest('.st-key-plotly_preload')) continue;   // router.py's hidden chart: nobody sees it
    const key = Array.from(el.classList).find(c => c.startsWith('st-key-')).slice(7);
    const inner = el.querySelector('[data-testid]');
    const kinds = Array.from(el.querySelectorAll('[data-testid]')).map(e => e.dataset.testid);
    // The app's chart component (explorer/charts.py) is a plotly chart (POINT_JS says if it takes clicks).
    const kind = el.querySelector('.vae-chart') ? 'stPlotlyChart' : kinds.find(k => ['stSlider', 'stSelectbox', 'stButtonGroup', 'stRadio', 'stCheckbox',
      'stNumberInput', 'stTextInput', 'stTextArea', 'stMultiSelect', 'stButton', 'stDownloadButton',
      'stFileUploader', 'stPlotlyChart', 'stDateInput', 'stTimeInput', 'stColorPicker',
      'stCameraInput', 'stChatInput', 'stToggle', 'stFeedback', 'stDataFrame', 'stLinkButton',
      'stBidiComponentIsolated', 'stCustomComponentV1', 'stIFrame'].includes(k)) || (inner ? inner.dataset.testid : '');
    const r = el.getBoundingClientRect();
    const visible = r.width > 0 && r.height > 0 && el.offsetParent !== null;
    const disabled = !!el.querySelector('input:disabled, button:disabled, [aria-disabled=true]');
    const lab = el.querySelector('[data-testid=stWidgetLabel]') || el.querySelector('button');
    out.push([key, kind, visible, disabled, lab ? lab.innerText.trim().slice(0, 40) : '']);
  }
  return out;
}"""


def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q / 100 * (len(xs) - 1))))]


def load_text() -> str:
    a, b, c = os.getloadavg()
    return f"{a:.2f} {b:.2f} {c:.2f} (1, 5, 15 min)"


class NotDriven(Exception):
    """A widget this benchmark cannot move; the message says why."""


# ------------------------------------------------------------------ the websocket and the log

class Wire:
    """The app's websocket as Playwright sees it: rerun requests sent (whole page or fragment)
    and script_finished messages received, parsed with Streamlit's own protobufs."""

    def __init__(self, page):
        from streamlit.proto.BackMsg_pb2 import BackMsg
        from streamlit.proto.ForwardMsg_pb2 import ForwardMsg
        self._fwd, self._back = ForwardMsg, BackMsg
        self.sent = []        # (monotonic, "page" | "fragment")
        self.finished = []    # (monotonic, status name)
        page.on("websocket", self._attach)

    def _attach(self, ws):
        ws.on("framesent", self._on_sent)
        ws.on("framereceived", self._on_received)

    def _on_sent(self, payload):
        if not isinstance(payload, (bytes, bytearray)):
            return
        msg = self._back()
        try:
            msg.ParseFromString(bytes(payload))
        except Exception:                       # noqa: BLE001 - not a BackMsg
            return
        if msg.WhichOneof("type") == "rerun_script":
            kind = "fragment" if msg.rerun_script.fragment_id else "page"
            self.sent.append((time.monotonic(), kind))

    def _on_received(self, payload):
        if not isinstance(payload, (bytes, bytearray)) or len(payload) > 4096:
            return                              # script_finished is tiny; deltas with images are not
        msg = self._fwd()
        try:
            msg.ParseFromString(bytes(payload))
        except Exception:                       # noqa: BLE001
            return
        if msg.WhichOneof("type") == "script_finished":
            self.finished.append((time.monotonic(), self._fwd.ScriptFinishedStatus.Name(msg.script_finished)))

    def mark(self):
        return len(self.sent), len(self.finished)


class ServerLog:
    """`rerun <view> <ms>` lines the server writes with VAE_LOG_RERUNS=1."""

    def __init__(self, path: Path):
        self.path = path

    def lines(self) -> list[str]:
        try:
            return self.path.read_text(errors="replace").splitlines()
        except OSError:
            return []

    def mark(self) -> int:
        return len(self.lines())

    def runs_since(self, mark: int) -> list[tuple[str, float]]:
        out = []
        for line in self.lines()[mark:]:
            parts = line.split()
            if len(parts) == 3 and parts[0] == "rerun":
                try:
                    out.append((parts[1], float(parts[2])))
                except ValueError:
                    pass
        return out


# ------------------------------------------------------------------ waiting for the page

class Driver:
    def __init__(self, page, url: str, log: ServerLog, settle_s: float, timeout_s: float):
        self.page, self.url, self.log = page, url, log
        self.settle_s, self.timeout_s = settle_s, timeout_s
        self.wire = Wire(page)
        self.before_move = None          # called before each move is armed (--while-training)

    def arm(self):
        """Before a move: forget the last press; remember where the wire and the log stand."""
        if self.before_move is not None:
            self.before_move()
        self.page.evaluate("() => { if (window.__bench) window.__bench.t0 = null; }")
        return self.wire.mark(), self.log.mark(), time.monotonic()

    def wait_idle(self, armed, expect_rerun: bool = True, rerun_grace_s: float = 2.0,
                  until_js: str | None = None) -> dict:
        """Wait until the move's rerun has finished and the page is quiet; returns the move's
        time in ms (press to last change) and what the server ran."""
        (n_sent, n_fin), log_mark, t_start = armed
        # (Playwright hands over websocket events only while it waits on the browser, hence
        # page.wait_for_timeout below rather than time.sleep.)
        deadline = t_start + self.timeout_s
        rerun_seen = False
        while True:
            now = time.monotonic()
            if now > deadline:
                raise TimeoutError(f"the page was still busy after {self.timeout_s:.0f} s")
            sent = self.wire.sent[n_sent:]
            fin = [s for _, s in self.wire.finished[n_fin:] if s != "FINISHED_EARLY_FOR_RERUN"]
            if sent:
                rerun_seen = True
            waiting_for_server = sent and not fin
            if expect_rerun and not sent and now - t_start < rerun_grace_s:
                self.page.wait_for_timeout(30)
                continue
            try:
                st = self.page.evaluate(STATE_JS)
            except Exception:                   # noqa: BLE001 - a navigation in flight
                self.page.wait_for_timeout(50)
                continue
            busy = any(st[:7]) or waiting_for_server
            if not busy and until_js and not self.page.evaluate(until_js):
                busy = True
            if not busy and st[8] >= self.settle_s * 1000:
                break
            self.page.wait_for_timeout(30)
        t0, last, what = self.page.evaluate(
            "() => window.__bench ? [window.__bench.t0, window.__bench.last, window.__bench.what || ''] : [null, 0, '']")
        runs = self.log.runs_since(log_mark)
        kinds = sorted({k for _, k in self.wire.sent[n_sent:]})
        return {"t0": t0, "last": last, "ms": None if t0 is None else max(0.0, last - t0), "what": what,
                # A page's run includes the fragments it draws: count those alone only
                # when no page ran.
                "rerun": rerun_seen, "kinds": kinds,
                "server_ms": sum(ms for v, ms in runs if v.startswith("page:"))
                or sum(ms for _, ms in runs),
                "views": sorted({v for v, _ in runs})}


# ------------------------------------------------------------------ moving each kind of widget

def _loc(page, key):
    return page.locator(f".st-key-{key}").first


def discover(drv: Driver):
    """Every keyed element of the page as opened, then of each other tab (clicked in turn, each
    switch timed): ({key: (kind, label, tab text or None)}, [(tab text, result)])."""
    found = {}
    for key, kind, visible, _, label in drv.page.evaluate(WIDGETS_JS):
        if visible:
            found.setdefault(key, (kind, label, None))
    tabs = drv.page.locator("[data-testid=stMain] [role=tab]")
    texts = [t.strip() for t in tabs.all_inner_texts()]
    switches = []
    for j, text in enumerate(texts):
        if tabs.nth(j).get_attribute("aria-selected") == "true":
            continue
        armed = drv.arm()
        tabs.nth(j).click()
        switches.append((text, drv.wait_idle(armed, expect_rerun=False, rerun_grace_s=0.3)))
        for key, kind, visible, _, label in drv.page.evaluate(WIDGETS_JS):
            if visible:
                found.setdefault(key, (kind, label, text))
    for key, kind, visible, _, label in drv.page.evaluate(WIDGETS_JS):
        found.setdefault(key, (kind, label, "?"))       # in a closed expander, or hidden
    return found, switches


def reveal(drv: Driver, key: str, tab) -> str:
    """Make a widget inside another tab or a closed expander visible (untimed); returns what
    was opened."""
    page = drv.page
    what = ""
    if tab and tab != "?":
        t = page.locator("[data-testid=stMain] [role=tab]").filter(has_text=tab).first
        if t.get_attribute("aria-selected") != "true":
            armed = drv.arm()
            t.click()
            drv.wait_idle(armed, expect_rerun=False, rerun_grace_s=0.3)
            what = f"tab '{tab}'"
    if page.evaluate("""key => {
          const el = document.querySelector('.st-key-' + CSS.escape(key));
          const det = el && el.closest('details');
          if (det && !det.open) { det.querySelector('summary').click(); return true; }
          return false; }""", key):
        page.wait_for_timeout(400)
        what = (what + " " if what else "") + "expander"
    return what


def move_slider(drv, key, i, state):
    page = drv.page
    thumb = page.locator(f".st-key-{key} input[type=range], .st-key-{key} [role=slider]").first
    val = lambda: thumb.get_attribute("aria-valuenow")        # noqa: E731
    if "dir" not in state:
        state["dir"] = "ArrowRight"
        state["stepped"] = 0
    thumb.focus()
    before = val()
    armed = drv.arm()
    thumb.press(state["dir"])
    t = time.monotonic()
    while val() == before and time.monotonic() - t < 1.0:
        time.sleep(0.03)
    if val() == before:                 # at an end: turn round, this press did nothing
        state["dir"] = "ArrowLeft" if state["dir"] == "ArrowRight" else "ArrowRight"
        state["stepped"] = 0
        drv.wait_idle(armed, expect_rerun=False, rerun_grace_s=0)
        armed = drv.arm()
        thumb.press(state["dir"])
    state["stepped"] += 1
    r = drv.wait_idle(armed)
    # Back and forth: half the moves one way, then the other, so the view ends where it began.
    if state["stepped"] >= max(1, state["moves"] // 2):
        state["dir"] = "ArrowLeft" if state["dir"] == "ArrowRight" else "ArrowRight"
        state["stepped"] = 0
    return r


def _open_dropdown(page, key):
    """Open a select box's or multiselect's list (react-aria ComboBox in Streamlit 1.67)."""
    opener = page.locator(f".st-key-{key} button[aria-haspopup=listbox]")
    if opener.count():
        opener.first.click()
    else:
        page.locator(f".st-key-{key} [role=combobox]").first.click()
    page.wait_for_selector("[role=listbox] [role=option]", timeout=5000)


def _close_dropdown(page):
    if page.locator("[role=listbox]").count():
        page.keyboard.press("Escape")
        page.wait_for_timeout(100)


def move_selectbox(drv, key, i, state):
    page = drv.page
    if "options" not in state:
        cur = page.locator(f".st-key-{key} [role=combobox]").first.input_value().strip()
        _open_dropdown(page, key)
        texts = [t.strip() for t in page.locator("[role=listbox] [role=option]").all_inner_texts()]
        _close_dropdown(page)
        if len(texts) < 2:
            raise NotDriven(f"one option only ({cur})")
        j = texts.index(cur) if cur in texts else 0
        other = texts[j + 1] if j + 1 < len(texts) else texts[j - 1]
        state["options"] = (cur, other)
    target = state["options"][(i + 1) % 2]
    _open_dropdown(page, key)
    option = page.get_by_role("option", name=target, exact=True).first
    armed = drv.arm()
    option.click()
    return drv.wait_idle(armed)


def move_buttongroup(drv, key, i, state):
    page = drv.page
    buttons = page.locator(f".st-key-{key} button[data-variant]")
    if "options" not in state:
        n = buttons.count()
        if n < 2:
            raise NotDriven("one option only")
        cur = next((j for j in range(n) if buttons.nth(j).get_attribute("aria-checked") == "true"), 0)
        state["options"] = (cur, cur + 1 if cur + 1 < n else cur - 1)
    target = state["options"][(i + 1) % 2]
    armed = drv.arm()
    buttons.nth(target).click()
    return drv.wait_idle(armed)


def move_radio(drv, key, i, state):
    page = drv.page
    labels = page.locator(f".st-key-{key} [data-testid=stRadioOption]")
    if "options" not in state:
        n = labels.count()
        if n < 2:
            raise NotDriven("one option only")
        checked = [labels.nth(j).locator("input").is_checked() for j in range(n)]
        cur = checked.index(True) if True in checked else 0
        state["options"] = (cur, cur + 1 if cur + 1 < n else cur - 1)
    armed = drv.arm()
    labels.nth(state["options"][(i + 1) % 2]).click()
    return drv.wait_idle(armed)


def move_checkbox(drv, key, i, state):
    armed = drv.arm()
    drv.page.locator(f".st-key-{key} label[data-react-aria-pressable], .st-key-{key} label").first.click()
    return drv.wait_idle(armed)


def move_number(drv, key, i, state):
    page = drv.page
    up = page.locator(f".st-key-{key} [data-testid=stNumberInputStepUp]").first
    down = page.locator(f".st-key-{key} [data-testid=stNumberInputStepDown]").first
    if "first" not in state:
        state["first"] = (up, down) if up.is_enabled() else (down, up)
    button = state["first"][i % 2]
    if not button.is_enabled():
        raise NotDriven("its + and - buttons are disabled")
    armed = drv.arm()
    button.click()
    return drv.wait_idle(armed)


def move_text(drv, key, i, state):
    page = drv.page
    box = page.locator(f".st-key-{key} input, .st-key-{key} textarea").first
    if "orig" not in state:
        state["orig"] = box.input_value()
    box.fill(state["orig"] + (" " if i % 2 == 0 else ""))
    armed = drv.arm()
    box.press("Enter")
    return drv.wait_idle(armed)


def move_multiselect(drv, key, i, state):
    """Remove the last choice (its tag's x), then choose it again from the list."""
    page = drv.page
    tags = page.locator(f".st-key-{key} [data-tag]")
    if i % 2 == 0:
        if tags.count() == 0:
            raise NotDriven("nothing chosen to remove")
        state["removed"] = tags.last.get_attribute("aria-label") or tags.last.inner_text().strip()
        armed = drv.arm()
        tags.last.locator("button").first.click()
        return drv.wait_idle(armed)
    _open_dropdown(page, key)
    page.keyboard.type(state["removed"])        # the list is virtual: filter it to the choice
    option = page.get_by_role("option", name=state["removed"], exact=True)
    try:
        option.first.wait_for(timeout=3000)
    except Exception:                           # noqa: BLE001 - reported below
        pass
    if option.count() == 0:
        _close_dropdown(page)
        raise NotDriven(f"the removed choice {state['removed']!r} is not in the list")
    armed = drv.arm()
    option.first.click()
    r = drv.wait_idle(armed)
    _close_dropdown(page)
    return r


def move_button(drv, key, i, state):
    page = drv.page
    button = page.locator(f".st-key-{key} [data-testid^=stBaseButton]").first
    if button.count() == 0:
        raise NotDriven("gone after a press")
    armed = drv.arm()
    button.click()
    r = drv.wait_idle(armed)
    after = page.locator(f".st-key-{key} [data-testid^=stBaseButton]")
    if after.count() == 0 or not after.first.is_visible():
        # The press changed the view so the button left it: start the next press from the page
        # as it was opened (untimed).
        state["reopened"] = True
        open_seen(drv, state["url"])
        reveal(drv, key, state.get("tab"))
    return r


def move_chart(drv, key, i, state):
    """A click on a dot of the chart's first marker trace (SVG or WebGL: its position comes from
    plotly's own axes); a chart that reports no clicks is display only."""
    from browser_support import POINT_JS
    page = drv.page
    for attempt in range(3):                      # a dot under another one may miss: try others
        _loc(page, key).scroll_into_view_if_needed()
        at = page.evaluate(POINT_JS, [key, i * 37 + 5 + attempt * 101])
        if at == "display":
            raise NotDriven("display only (drawn without on_select: a click does not rerun)")
        if not at:
            raise NotDriven("no dots to click")
        armed = drv.arm()
        page.mouse.click(at[0], at[1])
        r = drv.wait_idle(armed, rerun_grace_s=1.5)
        if r["rerun"]:
            return r
    raise NotDriven("three clicks on its dots did not rerun the page")


MOVERS = {"stSlider": move_slider, "stSelectbox": move_selectbox, "stButtonGroup": move_buttongroup,
          "stRadio": move_radio, "stCheckbox": move_checkbox, "stToggle": move_checkbox,
          "stNumberInput": move_number, "stTextInput": move_text, "stTextArea": move_text,
          "stMultiSelect": move_multiselect, "stButton": move_button, "stPlotlyChart": move_chart}
SKIPPED = {"stDownloadButton": "download button (no rerun: on_click='ignore' or a file save)",
           "stFileUploader": "file uploader (needs a file from the person's disk)",
           "stBidiComponentIsolated": "drawing canvas (a custom component: strokes, not a key press)",
           "stCustomComponentV1": "custom component in an iframe",
           "stIFrame": "iframe"}


# ------------------------------------------------------------------ pages

def open_url(drv: Driver, url: str) -> dict:
    """Navigate to url and wait until idle; ms = navigation start to the last change."""
    page = drv.page
    armed = drv.arm()
    page.goto(url, wait_until="commit", timeout=int(drv.timeout_s * 1000))
    page.wait_for_selector("[data-testid=stMainBlockContainer] [data-testid=stElementContainer]",
                           timeout=int(drv.timeout_s * 1000))
    r = drv.wait_idle(armed, expect_rerun=True, rerun_grace_s=5.0)
    r["ms"] = r["last"]                 # performance.now() starts at the navigation's start
    return r


# How far below the top of the visible part the first chart still waiting lies (px; it is kept as
# window.__scrollTarget); null if none waits. explorer/charts.py draws a chart below the fold once
# it comes near.
def _waiting_below_js() -> str:
    from browser_support import FIRST_WAITING_JS
    return f"""() => {{
  const main = document.querySelector('[data-testid=stMain]');
  const d = window.__scrollTarget = ({FIRST_WAITING_JS})();
  return d && main ? d.getBoundingClientRect().top - main.getBoundingClientRect().top : null;
}}"""


def scroll_to_charts(drv: Driver):
    """On a page just opened: scroll the page until the first chart still waiting below the fold
    is 100 px from the top, as one jump (a press of End or a fling of the wheel); ms = the scroll
    to the last change (its drawing, and that of any other chart it brought near). None if no
    chart waits."""
    page = drv.page
    below = _waiting_below_js()
    if page.evaluate(below) is None:
        return None
    armed = drv.arm()
    page.evaluate("""() => { const main = document.querySelector('[data-testid=stMain]');
      window.__bench.t0 = performance.now();
      main.scrollBy(0, (""" + below + """)() - 100); }""")
    r = drv.wait_idle(armed, expect_rerun=False, until_js="() => window.__scrollTarget.dataset.state !== 'waiting'")
    page.evaluate("() => document.querySelector('[data-testid=stMain]').scrollTo(0, 0)")
    return r


def open_from_menu(drv: Driver, path: str) -> dict:
    page = drv.page
    link = page.locator(f"[data-testid=stSidebarNav] a[href$='/{path}']").first if path else \
        page.locator("[data-testid=stSidebarNav] a").first
    if link.count() == 0:
        raise NotDriven("no menu link")
    armed = drv.arm()
    link.click()
    return drv.wait_idle(armed, rerun_grace_s=5.0)


class Table:
    def __init__(self):
        self.rows = []          # (section, page, item, n, list ms, how, server, note)
        self.not_driven = []    # (page, key, kind, why)

    def add(self, section, page, item, ms, how="", server="", note=""):
        page = page.replace(f"?{D20}", " d=20")
        self.rows.append((section, page, item, ms, how, server, note))

    def print(self):
        print("\n" + "=" * 118)
        print(f"{'what':<10} {'page':<17} {'item':<30} {'n':>3} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8}  "
              f"{'rerun':<9} {'server p50':>10}  note")
        print("-" * 118)
        for section, page, item, ms, how, server, note in self.rows:
            if ms:
                nums = f"{len(ms):3d} {pct(ms, 50):8.0f} {pct(ms, 95):8.0f} {max(ms):8.0f}"
            else:
                nums = f"{0:3d} {'-':>8} {'-':>8} {'-':>8}"
            print(f"{section:<10} {(page or 'Home'):<17} {item[:30]:<30} {nums}  {how:<9} {server:>10}  {note}")
        print("=" * 118)
        if self.not_driven:
            print("\nNot driven:")
            for page, key, kind, why in self.not_driven:
                page = page.replace(f"?{D20}", " d=20")
                print(f"  {(page or 'Home'):<17} {key:<28} {kind:<16} {why}")


def summarise(results):
    ms = [r["ms"] for r in results if r.get("ms") is not None]
    kinds = sorted({k for r in results for k in r.get("kinds", [])})
    how = "+".join(kinds) if kinds else "none"
    server = [r["server_ms"] for r in results if r.get("views")]
    views = sorted({v for r in results for v in r.get("views", [])})
    return ms, how, (f"{statistics.median(server):.0f}" if server else ""), views


def bench_opens(drv: Driver, table: Table, pages, opens: int):
    """Each page by its address (a new session each time: the first visit apart, as its caches
    are cold), then tours of the sidebar menu (one session, each page clicked from the one
    before it)."""
    for path in pages:
        try:
            first = open_url(drv, f"{drv.url}/{path}")
            table.add("open", path, "first visit (cold caches)", [first["ms"]], "page",
                      f"{first['server_ms']:.0f}" if first["views"] else "")
            res, scrolls = [], []
            for _ in range(opens):
                res.append(open_url(drv, f"{drv.url}/{path}"))
                scrolls.append(scroll_to_charts(drv))
            ms, how, server, _ = summarise(res)
            table.add("open", path, "by address (new session)", ms, "page", server)
            if any(scrolls):
                ms, _, _, _ = summarise([r for r in scrolls if r])
                table.add("scroll", path, "to the charts below the fold", ms, "none", "",
                          "" if all(scrolls) else f"{scrolls.count(None)} opens had none waiting")
        except Exception as e:                  # noqa: BLE001 - one broken page does not stop the run
            table.add("open", path, "by address", [], "", "", f"failed: {type(e).__name__}: {str(e)[:80]}")
        print(f"    opened {path or 'Home'}; load {load_text()}", flush=True)
    tour = {path: [] for path in pages}
    why = {}
    open_url(drv, f"{drv.url}/{pages[-1]}")
    for _ in range(opens):
        for path in pages:
            try:
                tour[path].append(open_from_menu(drv, path))
            except Exception as e:              # noqa: BLE001
                why[path] = f"failed: {type(e).__name__}: {str(e).splitlines()[0][:80]}"
                open_url(drv, f"{drv.url}/{path}")
    for path in pages:
        ms, how, server, _ = summarise(tour[path])
        table.add("open", path, "from the menu (same session)", ms, how, server, why.get(path, ""))


def open_seen(drv: Driver, url: str) -> dict:
    """open_url, then (untimed) scroll to every chart below the fold and back: a person who has
    looked at the whole page pays for redrawing every chart on each move, and no move's own
    scrolling then starts a first drawing inside its time."""
    from browser_support import draw_waiting_charts
    r = open_url(drv, url)
    draw_waiting_charts(drv.page, timeout_s=drv.timeout_s)
    return r


def bench_page(drv: Driver, table: Table, path: str, moves: int, sidebar_moves: int):
    """Every widget of the page (path may carry a query: "Latent_map?vae=..."), on a page whose
    every chart has been drawn (open_seen)."""
    page_url = f"{drv.url}/{path}"
    open_seen(drv, page_url)

    widgets, switches = discover(drv)
    for text, r in switches:
        table.add("tab", path, f"switch to '{text}'", [r["ms"]] if r["ms"] is not None else [],
                  "+".join(r["kinds"]) or "none", "", "no rerun: drawn by the browser" if not r["rerun"] else "")
    if switches:
        open_seen(drv, page_url)
    print(f"  {path or 'Home'}: {len(widgets)} keyed elements: "
          + ", ".join(f"{k}({v[0].removeprefix('st')})" for k, v in widgets.items()), flush=True)
    for key, (kind, label, tab) in widgets.items():
        if kind in SKIPPED:
            table.not_driven.append((path, key, kind, SKIPPED[kind]))
            continue
        if kind == "stButton" and path == "Train" and any(w in (label + " " + key).lower()
                                                          for w in TRAINING_BUTTON_WORDS):
            table.not_driven.append((path, key, kind, f"'{label}' starts or stops training"))
            continue
        mover = MOVERS.get(kind)
        if mover is None:
            table.not_driven.append((path, key, kind, "no driver for this kind of element"))
            continue
        n = sidebar_moves if key.startswith("sb_") or key == "view_link" else moves
        if n <= 0:
            continue
        state = {"moves": n, "url": page_url, "tab": tab}
        t_widget = time.monotonic()
        results, why, opened = [], None, ""
        try:
            opened = reveal(drv, key, tab)
            loc = _loc(drv.page, key)
            if loc.count() == 0:
                raise NotDriven("no longer on the page (an earlier move changed it)")
            # (a number input's - is disabled at its minimum: only the field itself counts)
            disabled_css = ":is(input:disabled, textarea:disabled, [aria-disabled=true]" + \
                (", button:disabled)" if kind == "stButton" else ")")
            if kind != "stPlotlyChart" and drv.page.evaluate(
                    "([k, css]) => !!document.querySelector('.st-key-' + CSS.escape(k) + ' ' + css)",
                    [key, disabled_css]):
                raise NotDriven("disabled in the page's default state")
            for i in range(n):
                results.append(mover(drv, key, i, state))
        except NotDriven as e:
            why = str(e)
        except Exception as e:                  # noqa: BLE001 - report it, carry on with the others
            why = f"{type(e).__name__}: {str(e).splitlines()[0][:90]}"
        if why and not results:
            table.not_driven.append((path, key, kind, why))
        else:
            ms, how, server, views = summarise(results)
            note = (f"tab/expander opened: {opened}; " if opened else "") + \
                   (f"stopped: {why}; " if why else "") + \
                   ("no rerun; " if how == "none" else "") + \
                   ("the page was reopened after each press; " if state.get("reopened") else "") + \
                   (",".join(v for v in views if not v.startswith("page:")))
            table.add("widget", path, f"{key} ({kind.removeprefix('st')})", ms, how, server, note.strip("; "))
        # Each move's time, and the server's part of it: an outlier shows whether the page's run
        # (a cold cache) or the browser took the time.
        each = ", ".join(f"{r['ms']:.0f}" + (f" ({r['server_ms']:.0f})" if r.get("views") else "")
                         + (f" [last: {r['what']}]" if r["ms"] > SLOW_MS and r.get("what") else "")
                         for r in results if r["ms"] is not None)
        print(f"    {key:<28} {kind:<16} {time.monotonic() - t_widget:5.1f} s "
              + (f"ms (server ms): {each}" if results else f"not driven: {why}"), flush=True)
        display_only = why is not None and why.startswith("display only")
        if not display_only and (why or state.get("reopened") or tab or kind in ("stButton", "stPlotlyChart")):
            open_seen(drv, page_url)     # a clean page for the next widget (untimed)


# ------------------------------------------------------------------ maps and the first page

MAP_DONE_JS = ("() => !Array.from(document.querySelectorAll('.st-key-map_chart_VAE .gtitle, "
               ".st-key-map_chart_AE .gtitle')).some(t => t.textContent.includes('for now'))")


def bench_maps(drv: Driver, table: Table, sizes, seeds):
    """Per size: PCA -> t-SNE with a new seed, then the seed's + (another new seed), then
    PCA -> UMAP with a new seed; each until both maps (VAE and AE) are drawn and the page idle."""
    def timed(item, n, note, action):
        try:
            armed = drv.arm()
            action()
            r = drv.wait_idle(armed, until_js=MAP_DONE_JS)
            table.add("map", "Latent_map", item, [r["ms"]], "+".join(r["kinds"]), f"{r['server_ms']:.0f}", note)
            print(f"    {item}: {r['ms']:.0f} ms", flush=True)
        except Exception as e:              # noqa: BLE001 - the table says what failed
            table.add("map", "Latent_map", item, [], "", "", f"failed: {type(e).__name__}: {str(e).splitlines()[0][:80]}")

    page = drv.page
    for n in sizes:
        for method, label in (("tsne", "t-SNE"), ("umap", "UMAP")):
            seed = seeds.pop()
            try:
                open_url(drv, f"{drv.url}/Latent_map?{D20}&map_method=pca&map_n={n}&map_seed={seed}")
            except Exception as e:          # noqa: BLE001
                table.add("map", "Latent_map", f"PCA page of {n} points", [], "", "", f"failed: {e}")
                continue
            button = page.locator(".st-key-map_method button[data-variant]").filter(has_text=label).first
            timed(f"PCA -> new {label}, {n} pts", n, f"seed {seed}; VAE and AE maps (d = 20)", button.click)
            if method == "tsne":
                up = page.locator(".st-key-map_seed [data-testid=stNumberInputStepUp]").first
                timed(f"t-SNE seed + (new), {n} pts", n, f"seed {seed + 1}; VAE and AE maps", up.click)


# Home is drawn: its closing links are there and every picture on it (the reconstructions, both
# models' loss curves) has loaded. Home has no plotly chart.
HOME_DRAWN_JS = """() => {
  const imgs = [...document.querySelectorAll('[data-testid=stMain] [data-testid=stImage] img')];
  return !!document.querySelector('.st-key-home_recon img') && imgs.length >= 3
    && imgs.every(i => i.complete && i.naturalWidth > 0)
    && [...document.querySelectorAll('[data-testid=stMain] a')].some(a => a.innerText.includes('Compare'));
}"""


def fresh_start(browser, env, log_path: Path, timeout_s: float):
    """Launch `streamlit run`, open Home as soon as it is healthy, time until the whole page is
    drawn (HOME_DRAWN_JS). Returns (seconds, health seconds, process, url)."""
    from browser_support import start_server, wait_healthy
    t0 = time.monotonic()
    proc, url = start_server(env=env, log_path=log_path)
    health = wait_healthy(url, proc, timeout=timeout_s)
    ctx = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = ctx.new_page()
    page.goto(url, wait_until="commit", timeout=int(timeout_s * 1000))
    page.wait_for_function(HOME_DRAWN_JS, timeout=int(timeout_s * 1000), polling=20)
    took = time.monotonic() - t0
    ctx.close()
    return took, health, proc, url


def bytecode_note() -> str:
    caches = [p for p in ("explorer", "vae_core", "app_pages") if (REPO / p / "__pycache__").is_dir()]
    dont = os.environ.get("PYTHONDONTWRITEBYTECODE") or sys.dont_write_bytecode
    return (f"the repository's bytecode cache: {', '.join(caches) + ' present' if caches else 'absent'}"
            f"{' (PYTHONDONTWRITEBYTECODE is set, so each start compiles the app modules)' if dont and not caches else ''}; "
            "installed packages' caches present as installed")


def wait_umap_warmup(log: ServerLog, limit_s=180.0) -> str:
    t = time.monotonic()
    while time.monotonic() - t < limit_s:
        line = next((x for x in log.lines() if "UMAP warm-up" in x), None)
        if line:
            return line.strip()
        time.sleep(0.5)
    return "no UMAP warm-up report"


def views_warmup_note(log: ServerLog) -> str:
    """What the server's start-up warm-up of the views (explorer/warm.py) reported: it computes in the
    gaps when no page runs, so it may still be going on while pages are timed."""
    line = next((x for x in log.lines() if "start-up warm-up of the views" in x), None)
    if line is None:
        return "the views' start-up warm-up had not finished by the end of the run"
    steps = re.findall(r"(\d+\.\d+) s", line.split(":", 1)[1])
    return f"the views' start-up warm-up finished: {len(steps)} steps, {sum(map(float, steps)):.1f} s of work"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pages", default=";".join(p or "Home" for p in PAGES),
                    help="';'-separated url paths, a query allowed (Home for the home page)")
    ap.add_argument("--moves", type=int, default=6, help="moves per widget (made even: each widget ends where it began)")
    ap.add_argument("--sidebar-moves", type=int, default=2,
                    help="moves per sidebar widget (dataset, models, link), on each page")
    ap.add_argument("--opens", type=int, default=3, help="warm opens per page, by address and from the menu")
    ap.add_argument("--starts", type=int, default=1, help="fresh `streamlit run` starts")
    ap.add_argument("--map-sizes", default="500,1000,2000")
    ap.add_argument("--big", action="store_true", help="also 10,000-point maps (minutes each)")
    ap.add_argument("--no-maps", action="store_true")
    ap.add_argument("--settle", type=float, default=0.5, help="seconds without change that count as idle")
    ap.add_argument("--timeout", type=float, default=240.0, help="seconds one move may take")
    ap.add_argument("--while-training", action="store_true",
                    help="time everything while another browser session trains a model through the app's "
                         "queue (the Train page's default preset, 20,000 images, 200 epochs; bench_app.py's)")
    ap.add_argument("--trainer-nice", type=int, default=19,
                    help="with --while-training: the nice level of the trainer's own Chromium (0: the same "
                         "priority as the server and the measured browser)")
    ap.add_argument("--quick", action="store_true",
                    help="Latent_grid and Sampling, 2 moves, 1 open, 1 start, 500-point maps")
    args = ap.parse_args()
    if args.quick:
        args.pages, args.moves, args.sidebar_moves, args.opens, args.starts = "Latent_grid;Sampling", 2, 2, 1, 1
        args.map_sizes = "500"
    args.moves += args.moves % 2
    args.sidebar_moves += args.sidebar_moves % 2
    pages = ["" if p in ("Home", "home") else p for p in args.pages.replace(",", ";").split(";") if p.strip()]
    sizes = [int(s) for s in args.map_sizes.split(",") if s] + ([10000] if args.big else [])

    from playwright.sync_api import sync_playwright

    from browser_support import launch_chromium, stop_server

    t_run = time.monotonic()
    print("command:", " ".join(shlex.quote(a) for a in [sys.executable] + sys.argv))
    print(f"machine: {os.cpu_count()} cores; load average at the start {load_text()}")
    chromium = subprocess.run(["/usr/bin/chromium", "--version"], capture_output=True, text=True).stdout.strip()
    import streamlit
    print(f"streamlit {streamlit.__version__}; {chromium or 'chromium'}; models: checkpoints/ (shipped); "
          f"VAE_DATA_DIR={os.environ.get('VAE_DATA_DIR', '(unset)')}")
    tmp = Path(tempfile.mkdtemp(prefix="bench-browser-"))
    env = {"VAE_USER_DIR": str(tmp / "user"), "VAE_LOG_RERUNS": "1",
           "VAE_CHECKPOINT_DIR": str(REPO / "checkpoints")}
    print(f"user folder (new maps, no trained models): {env['VAE_USER_DIR']}; server logs in {tmp}")
    table = Table()
    proc = None
    try:
        with sync_playwright() as p:
            browser = launch_chromium(p)
            print(f"\n1. first page from a fresh start ({bytecode_note()})", flush=True)
            starts = []
            for k in range(max(1, args.starts)):
                if proc is not None:
                    stop_server(proc)
                log_path = tmp / f"server-{k}.log"
                took, health, proc, url = fresh_start(browser, env, log_path, args.timeout)
                starts.append(took * 1000)
                print(f"   start {k + 1}: healthy after {health:.1f} s, Home drawn {took:.1f} s "
                      f"after launch; load {load_text()}", flush=True)
            table.add("start", "", "launch to Home drawn", starts, "", "", "fresh server, browser up")
            log = ServerLog(log_path)
            print("   " + wait_umap_warmup(log) + " (timings below start after it)", flush=True)

            trainer = None
            if args.while_training:
                # The trainer's own browser: a second Chromium, niced (in a class it runs on the
                # student's machine, not on the server's cores); its session's work on the server
                # (the live view every second) and the training itself are the load measured.
                from bench_app import start_training
                from bench_load import niced_chromium
                from browser_support import CHROMIUM_ARGS
                trainer_browser = p.chromium.launch(executable_path=niced_chromium(args.trainer_nice),
                                                    headless=True, args=CHROMIUM_ARGS)
                trainer = start_training(trainer_browser, url)
            ctx = browser.new_context(viewport={"width": 1400, "height": 1000})
            ctx.add_init_script(INIT_JS)
            page = ctx.new_page()
            page.set_default_timeout(10_000)
            drv = Driver(page, url, log, args.settle, args.timeout)
            restarts, where = [], ["the page opens"]

            def training_on() -> None:
                """With --while-training, before each move: a trainer whose training has ended starts
                another, so that every move is timed beside one (said in the output)."""
                from bench_app import keep_training
                if keep_training(trainer):
                    restarts.append(where[0])
                    print(f"  (the training had finished: started another, during {where[0]})", flush=True)

            if trainer is not None:
                drv.before_move = training_on

            print("\n2. page opens", flush=True)
            t_page = time.monotonic()
            bench_opens(drv, table, [p for p in pages if "?" not in p], args.opens)
            print(f"  opens took {time.monotonic() - t_page:.0f} s", flush=True)
            print("\n3. widgets", flush=True)
            for path in pages:
                t_page = time.monotonic()
                where[0] = path or "Home"
                try:
                    bench_page(drv, table, path, args.moves, args.sidebar_moves)
                except Exception as e:          # noqa: BLE001 - one broken page does not stop the run
                    table.add("widget", path, "(the page)", [], "", "", f"failed: {type(e).__name__}: {str(e)[:80]}")
                print(f"  {path or 'Home'} took {time.monotonic() - t_page:.0f} s; load {load_text()}", flush=True)
            if not args.no_maps:
                print("\n4. new maps", flush=True)
                rng = random.Random(time.time_ns())
                # Odd seeds, so that a seed's + (seed + 1) is never one of them either.
                seeds = rng.sample(range(1, 9999, 2), 2 * len(sizes))
                where[0] = "the maps"
                bench_maps(drv, table, sizes, seeds)
            ctx.close()
            print("\n" + views_warmup_note(log), flush=True)
            if trainer is not None:
                from bench_app import stop_training
                stop_training(trainer)       # waits for "Training was stopped": it trained until now
                print(f"  trainings started during the run, besides the first: {len(restarts)}", flush=True)
                trainer_browser.close()
            browser.close()
    finally:
        if proc is not None:
            stop_server(proc)
    table.print()
    print(f"\ngoals (issue 16): control p95 ≤ {GOALS_MS['control']} ms, fragment slider p95 ≤ "
          f"{GOALS_MS['fragment']} ms, page open ≤ {GOALS_MS['open']} ms warm, first page ≤ "
          f"{GOALS_MS['start']} ms, new 2,000-code map ≤ {GOALS_MS['map2000']} ms")
    print(f"load average at the end {load_text()}; {os.cpu_count()} cores; whole run "
          f"{time.monotonic() - t_run:.0f} s")


if __name__ == "__main__":
    main()

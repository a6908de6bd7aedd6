"""Plotly charts drawn by plotly.js in the browser and updated there in place (figures.chart
draws every chart of the app through draw()).

st.plotly_chart names its element after the figure (streamlit 1.67), so any change to a figure
(a ring round the dot just clicked, one more bubble, a new family's curves) mounts a new chart,
which plotly.js then draws twice: once as sent, once more with Streamlit's theme. For a
2,000-dot map on a browser without a GPU each draw takes about 90 ms, and the Latent map page
shows two. This component keeps one plot per key and changes it: a figure that differs from the
one on screen only in its shapes (the ring) costs a Plotly.relayout of about 15 ms; any other
change, one Plotly.react (bench/bench_browser.py times what a person waits for). A chart below
the fold is drawn only once it is scrolled near, so a page opens without paying for it.

plotly.js itself comes from the installed plotly package, served by Streamlit's static file
serving (`server.enableStaticServing`, the `static/` folder beside app.py): install_plotly_js()
copies it there on first use. Where that copy cannot be made, or static serving is off, draw()
uses st.plotly_chart as before (available() says which).
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from contextlib import nullcontext
from pathlib import Path
from typing import Optional

import numpy as np
import plotly
import plotly.graph_objects as go

from explorer import figures

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"
# The installed plotly's version is in the name: a new plotly gets a new file (and browsers
# fetch it anew) rather than an old copy kept under the old name.
PLOTLY_JS = f"plotly-{plotly.__version__}.min.js"

_JS = r"""
function loadPlotly(url) {
  if (window.Plotly) return Promise.resolve(window.Plotly);
  if (!window.__vaeLoadPlotly) {
    window.__vaeLoadPlotly = new Promise((resolve, reject) => {
      const load = () => {
        const s = document.createElement("script");
        s.src = url;
        if (!document.getElementById("vae-plotly")) s.id = "vae-plotly";   // the page's loader then stands down
        s.onload = () => resolve(window.Plotly);
        s.onerror = () => { window.__vaeLoadPlotly = null; reject(new Error("plotly.js did not load from " + url)); };
        document.head.appendChild(s);
      };
      // The page's own tag (app.py's _PLOTLY_TAG), still loading: wait for it, and load it here
      // if it fails.
      const early = document.getElementById("vae-plotly");
      if (!early || early.dataset.done) return window.Plotly ? resolve(window.Plotly) : load();
      early.addEventListener("load", () => window.Plotly ? resolve(window.Plotly) : load());
      early.addEventListener("error", load);
    });
  }
  return window.__vaeLoadPlotly;
}

// The dots of a map (figure_payload's "dots": x, y, data index id, group g per dot; per group its
// legend trace, colour, opacity, size and hover label), drawn on a canvas under plotly's picture,
// in the plot area, at the axes' ranges (or at `ranges` while a pan or zoom is under way).
function scales(div, ranges) {
  const xa = div._fullLayout.xaxis, ya = div._fullLayout.yaxis;
  const xr = (ranges && ranges.x) || xa.range, yr = (ranges && ranges.y) || ya.range;
  return { left: xa._offset, top: ya._offset, w: xa._length, h: ya._length, xr: xr, yr: yr,
           px: (x) => xa._offset + (x - xr[0]) / (xr[1] - xr[0]) * xa._length,
           py: (y) => ya._offset + (yr[1] - y) / (yr[1] - yr[0]) * ya._length };
}

function hiddenGroups(div, d) {
  return d.groups.map((g) => {
    const v = div.data && div.data[g.trace] ? div.data[g.trace].visible : true;
    return v === "legendonly" || v === false;
  });
}

function drawDots(div, ranges) {
  const box = div.querySelector(".svg-container");
  let cv = box && box.querySelector("canvas.vae-dots");
  const d = div.__dots, fl = div._fullLayout;
  if (!d || !fl || !box) {
    if (cv) cv.remove();
    return;
  }
  if (!cv) {
    cv = document.createElement("canvas");
    cv.className = "vae-dots";
    cv.style.cssText = "position: absolute; left: 0; top: 0; pointer-events: none";
    box.insertBefore(cv, box.firstChild);
  }
  const dpr = window.devicePixelRatio || 1, W = fl.width, H = fl.height;
  if (cv.width !== Math.round(W * dpr) || cv.height !== Math.round(H * dpr)) {
    cv.width = Math.round(W * dpr);
    cv.height = Math.round(H * dpr);
    cv.style.width = W + "px";
    cv.style.height = H + "px";
  }
  const ctx = cv.getContext("2d");
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.globalAlpha = 1;
  ctx.fillStyle = "white";
  ctx.fillRect(0, 0, W, H);
  const s = scales(div, ranges), hidden = hiddenGroups(div, d);
  div.dataset.dotsRange = s.xr.concat(s.yr).map((v) => v.toPrecision(6)).join(" ");
  ctx.save();
  ctx.beginPath();
  ctx.rect(s.left, s.top, s.w, s.h);
  ctx.clip();
  let n = 0;
  for (let i = 0; i < d.x.length; i++) {
    const k = d.g[i];
    if (hidden[k]) continue;
    const g = d.groups[k];
    ctx.globalAlpha = g.opacity;
    ctx.fillStyle = g.colour;
    ctx.beginPath();
    ctx.arc(s.px(d.x[i]), s.py(d.y[i]), g.size / 2, 0, 2 * Math.PI);
    ctx.fill();
    n++;
  }
  ctx.restore();
  div.dataset.dots = String(n);
}

// The visible dot nearest to the pointer (client coordinates), within `reach` px of its edge; -1 if none.
function nearestDot(div, clientX, clientY, reach) {
  const d = div.__dots, box = div.querySelector(".svg-container");
  if (!d || !div._fullLayout || !box) return -1;
  const r = box.getBoundingClientRect(), mx = clientX - r.left, my = clientY - r.top;
  const s = scales(div), hidden = hiddenGroups(div, d);
  if (mx < s.left || mx > s.left + s.w || my < s.top || my > s.top + s.h) return -1;
  let best = -1, bestD = Infinity;
  for (let i = 0; i < d.x.length; i++) {
    if (hidden[d.g[i]]) continue;
    const dx = s.px(d.x[i]) - mx, dy = s.py(d.y[i]) - my, dd = dx * dx + dy * dy;
    const lim = d.groups[d.g[i]].size / 2 + reach;
    if (dd <= lim * lim && dd <= bestD) { best = i; bestD = dd; }   // ties: the dot drawn last, on top
  }
  return best;
}

function hookDots(div) {
  if (div.__dotsHooked) return;
  div.__dotsHooked = true;
  const redraw = () => drawDots(div);
  div.on("plotly_afterplot", redraw);
  div.on("plotly_restyle", redraw);            // a legend click hid or showed a class
  div.on("plotly_relayout", (ev) => {          // new ranges; a moved ring changes no dot
    if (!Object.keys(ev || {}).every((k) => k.startsWith("shapes"))) redraw();
  });
  div.on("plotly_relayouting", (ev) => {       // a pan under way: follow it
    if (div.querySelector(".zoomlayer .zoombox")) return;     // a zoom box: the axes move on release
    const r = (a) => (ev[a + ".range[0]"] !== undefined ? [ev[a + ".range[0]"], ev[a + ".range[1]"]]
                     : ev[a + ".range"]);
    drawDots(div, { x: r("xaxis"), y: r("yaxis") });
  });
  const tip = document.createElement("div");
  tip.className = "vae-dot-tip";
  tip.style.cssText = "position: absolute; pointer-events: none; display: none; z-index: 10; color: white; "
    + "font: 13px 'Source Sans', sans-serif; padding: 3px 6px; border-radius: 3px; white-space: nowrap";
  div.addEventListener("mousemove", (e) => {
    const i = e.buttons ? -1 : nearestDot(div, e.clientX, e.clientY, 3);
    const box = div.querySelector(".svg-container");
    if (i < 0 || !box) { tip.style.display = "none"; return; }
    const d = div.__dots, g = d.groups[d.g[i]], s = scales(div);
    if (tip.parentNode !== box) box.appendChild(tip);
    tip.textContent = "";
    tip.append(g.label + "image " + d.id[i], document.createElement("br"),
               "(" + d.x[i].toFixed(2) + ", " + d.y[i].toFixed(2) + ")");
    tip.style.background = g.colour;
    tip.style.display = "block";
    const x = s.px(d.x[i]), y = s.py(d.y[i]);
    tip.style.left = (x + 8 + tip.offsetWidth > div._fullLayout.width ? x - 8 - tip.offsetWidth : x + 8) + "px";
    tip.style.top = (y - tip.offsetHeight / 2) + "px";
  });
  div.addEventListener("mouseleave", () => { tip.style.display = "none"; });
  // A click on a dot: plotly knows no dots here, so the press and release are watched (in the
  // capture phase: plotly's pan starts on the same press; the release may land on its cover).
  div.addEventListener("pointerdown", (e) => {
    if (e.button !== 0 || div.dataset.clickable !== "1") return;
    const x0 = e.clientX, y0 = e.clientY, t0 = Date.now();
    window.addEventListener("pointerup", (u) => {
      if (Math.hypot(u.clientX - x0, u.clientY - y0) > 4 || Date.now() - t0 > 800) return;
      const i = nearestDot(div, u.clientX, u.clientY, 4);
      if (i >= 0) div.__send(div.__dots.id[i]);
    }, { capture: true, once: true });
  }, true);
}

// The toolbar's PNG download for a chart with canvas dots: plotly's own would export the figure
// without them (they are not plotly's) on a transparent background, so the dots are put back as
// markers (by class, hidden classes left out) into a copy drawn on white.
function exportPng(div, Plotly, opts) {
  const d = div.__dots, fl = div._fullLayout;
  const data = div.data.map((t) => ({ ...t }));
  d.groups.forEach((g, k) => {
    const xs = [], ys = [];
    for (let i = 0; i < d.x.length; i++) if (d.g[i] === k) { xs.push(d.x[i]); ys.push(d.y[i]); }
    data[g.trace] = { ...data[g.trace], x: xs, y: ys };
  });
  const layout = { ...div.layout, paper_bgcolor: "white", plot_bgcolor: "white", width: fl.width, height: fl.height };
  return Plotly.toImage({ data, layout }, { format: "png", scale: opts.scale || 2, width: fl.width, height: fl.height })
    .then((url) => {
      const a = document.createElement("a");
      a.href = url;
      a.download = (opts.filename || "map") + ".png";
      document.body.appendChild(a);
      a.click();
      a.remove();
    });
}

function dotsConfig(config, Plotly, filename) {
  const opts = { ...(config.toImageButtonOptions || {}), filename: filename };
  return { ...config, modeBarButtonsToRemove: ["toImage"],
           modeBarButtonsToAdd: [{ name: "vaeToImage", title: "Download plot as a PNG", icon: Plotly.Icons.camera,
                                   click: (gd) => exportPng(gd, Plotly, opts) }] };
}

export default function (component) {
  const { data, parentElement, setTriggerValue } = component;
  const div = parentElement.querySelector(".vae-chart");
  div.__send = (v) => setTriggerValue("click", v);
  const url = new URL(data.plotly, window.location.href).href;
  if (!data.figure) {                    // preload(): only start loading plotly.js
    loadPlotly(url).catch(() => {});
    return;
  }
  // Which call this is: Streamlit may call a superseded call's cleanup after a newer call has
  // begun, and that cleanup must then leave the chart alone.
  const gen = div.__gen = (div.__gen || 0) + 1;
  if (data.figure === div.__figure && div.dataset.state === "drawn") return cleanup(div, gen);  // nothing changed
  div.__figure = data.figure;
  const fig = JSON.parse(data.figure);
  div.style.height = (fig.layout.height || 450) + "px";
  div.dataset.clickable = data.clickable ? "1" : "0";
  whenNear(div, () => draw(div, data, fig, url));
  return cleanup(div, gen);
}

// A chart is drawn once it comes within NEAR_PX of the page's visible part (or at once, if it has
// been drawn before): a chart below the fold costs the page's open nothing. Interpolation's three,
// below its fold, took about 130 ms of the browser's script on each open. Only the latest figure
// waits: a newer one replaces it. Streamlit scrolls its main column (stMain), not the document:
// that is the observer's root, so the margin applies to it. Printing starts drawing every chart
// still waiting (at once where plotly.js has loaded).
const NEAR_PX = 200;
const waiting = window.__vaeWaiting || (window.__vaeWaiting = new Set());   // one set for the page
function drawWaiting(div) {
  waiting.delete(div);
  if (div.__near) div.__near.disconnect();
  div.__near = null;
  div.__seen = true;
  const f = div.__pending;
  div.__pending = null;
  if (f) f();
}
if (!window.__vaePrintHook) {
  window.__vaePrintHook = true;
  window.addEventListener("beforeprint", () => [...waiting].forEach(drawWaiting));
}
function whenNear(div, draw) {
  if (div.__seen) return draw();
  div.__pending = draw;
  div.dataset.state = "waiting";
  waiting.add(div);
  if (div.__near) return div.__near.observe(div);       // watched already (observe again: a no-op)
  const root = div.closest("[data-testid=stMain]");
  div.__near = new IntersectionObserver((entries) => {
    if (entries.some((e) => e.isIntersecting)) settled(div, root).then(() => { if (near(div, root)) drawWaiting(div); });
  }, { root: root, rootMargin: NEAR_PX + "px 0px" });
  div.__near.observe(div);
}

// While the page comes in, what lies above a chart can still grow (a picture has no height until
// it has loaded; the next element is on its way): a chart can seem near that is not. So the
// question is asked again once the pictures above it have loaded (or SETTLE_MS have passed: a
// picture that never loads must not hold a chart back) and two frames have passed; the observer
// reports again when the chart moves away and back.
const SETTLE_MS = 500;
function settled(div, root) {
  const above = [...(root || document).querySelectorAll("img")].filter(
    (i) => !i.complete && (i.compareDocumentPosition(div) & Node.DOCUMENT_POSITION_FOLLOWING));
  const frame = () => new Promise((done) => requestAnimationFrame(() => done()));
  const loaded = Promise.all(above.map((i) => new Promise((done) => {
    i.addEventListener("load", done, { once: true });
    i.addEventListener("error", done, { once: true });
  })));
  return Promise.race([loaded, new Promise((done) => setTimeout(done, SETTLE_MS))]).then(frame).then(frame);
}

function near(div, root) {
  if (!div.isConnected || !waiting.has(div)) return false;
  const r = div.getBoundingClientRect(), v = root ? root.getBoundingClientRect() : { top: 0, bottom: innerHeight };
  return r.bottom > v.top - NEAR_PX && r.top < v.bottom + NEAR_PX;
}

function draw(div, data, fig, url) {
  div.dataset.state = "drawing";
  loadPlotly(url).then((Plotly) => {
    // Draws queue behind each other: a relayout must not meet a react still under way.
    div.__queue = (div.__queue || Promise.resolve()).then(() => {
      if (div.__base === data.base && div._fullLayout) {
        return Plotly.relayout(div, { shapes: fig.layout.shapes || [] });
      }
      div.__base = data.base;
      div.__dots = fig.dots || null;
      const config = div.__dots ? dotsConfig(data.config, Plotly, data.filename) : data.config;
      return Plotly.react(div, fig.data, fig.layout, config);
    }).then(() => {
      if (div.__dots) hookDots(div);      // div.on exists once plotly has drawn into div
      drawDots(div);
      div.dataset.state = "drawn";
      div.dataset.base = data.base;
      div.__width = div.clientWidth;
      if (!div.__resize) {               // the column's width changed (window, sidebar): fit it
        div.__resize = new ResizeObserver(() => {
          if (div._fullLayout && div.clientWidth > 0 && div.clientWidth !== div.__width) {
            div.__width = div.clientWidth;
            Plotly.Plots.resize(div).catch(() => {});
          }
        });
        div.__resize.observe(div);
      }
      // A click on a plotly point of a clickable chart (a figure whose dots are plotly's own: the
      // canvas's dots report their clicks in hookDots).
      if (data.clickable && !div.__hooked) {
        div.__hooked = true;
        div.on("plotly_click", (ev) => {
          const p = ev && ev.points && ev.points[0];
          const c = p ? p.customdata : undefined;
          const idx = Array.isArray(c) ? c[0] : c;
          if (idx !== undefined && idx !== null && isFinite(idx)) div.__send(Number(idx));
        });
      }
    }).catch((err) => {
      div.dataset.state = "failed";
      div.__figure = null;
      div.textContent = "The chart could not be drawn (" + err.message + "). Reload the page.";
    });
  }, (err) => {
    div.dataset.state = "failed";
    div.__figure = null;
    div.textContent = err.message + ". Reload the page; if this persists, the server cannot serve its static files.";
  });
}

// Called by Streamlit when the chart leaves the page: free plotly's state and listeners. The
// cleanup of a call that a newer one has superseded does nothing (see gen above).
function cleanup(div, gen) {
  return () => {
    if (div.__gen !== gen) return;
    if (div.__resize) div.__resize.disconnect();
    if (div.__near) div.__near.disconnect();
    div.__resize = div.__near = null;
    waiting.delete(div);
    if (window.Plotly && div._fullLayout) window.Plotly.purge(div);
  };
}
"""

_component = None


def install_plotly_js() -> bool:
    """Put the installed plotly.js into static/ (once per plotly version). True when it is there."""
    target = STATIC_DIR / PLOTLY_JS
    try:
        source = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
        if target.exists() and target.stat().st_size == source.stat().st_size:
            return True
        STATIC_DIR.mkdir(exist_ok=True)
        tmp = target.with_suffix(".part")
        shutil.copy2(source, tmp)          # its own date: browsers then keep it cached longer
        os.replace(tmp, target)                 # never a half-written file under the served name
        return True
    except OSError as e:
        log.warning("plotly.js could not be put into %s (%s): charts are drawn by st.plotly_chart", STATIC_DIR, e)
        return False


_installed: Optional[bool] = None


def available() -> bool:
    """Whether the browser can load plotly.js from this server: static serving is on and the
    file is there (put there on the first call)."""
    global _installed
    import streamlit as st
    if not st.get_option("server.enableStaticServing"):
        return False
    if _installed is None:
        _installed = install_plotly_js()
    return _installed


def _register():
    global _component
    if _component is None:
        import streamlit as st
        _component = st.components.v2.component(
            "vae_chart", html='<div class="vae-chart" style="width: 100%"></div>', js=_JS,
            isolate_styles=False)        # plotly.js puts its styles in the document's head
    return _component


# The look of every chart: plotly's white template in Streamlit's font (plotly.js knows no
# template by name: it is sent as part of each figure).
_TEMPLATE = None


def _template() -> dict:
    global _TEMPLATE
    if _TEMPLATE is None:
        import plotly.io as pio
        white = go.Figure(layout=dict(template=pio.templates["plotly_white"]))
        _TEMPLATE = json.loads(white.to_json())["layout"]["template"]
        _TEMPLATE["layout"]["font"] = {**_TEMPLATE["layout"].get("font", {}),
                                       "family": '"Source Sans", sans-serif'}
    return _TEMPLATE


def _take_dots(fig: go.Figure, spec: dict) -> Optional[dict]:
    """Move the dots of fig's meta="dots" traces (figures.scatter_codes) out of spec, for the
    browser to draw on a canvas: each trace becomes an empty one that keeps its legend entry
    (a click on it still hides the class, with its bubbles), and one invisible trace of two
    points keeps the axes' ranges where the dots put them. None when fig has no dots.

    plotly.js draws each dot as an SVG element and styles it one by one: two 2,000-dot maps
    took about 0.4 s of script and as much again of layout in Chromium without a GPU, where a
    canvas draws them in a few ms. The dots come in their data order (by customdata), so no
    class is drawn over the others as a whole."""
    picked = [i for i, t in enumerate(fig.data) if t.meta == "dots" and t.x is not None and len(t.x)]
    if not picked:
        return None
    groups, xs, ys, ids, gs = [], [], [], [], []
    for g, i in enumerate(picked):
        t = fig.data[i]
        x, y = np.asarray(t.x, dtype=np.float64), np.asarray(t.y, dtype=np.float64)
        c = np.arange(len(x)) if t.customdata is None else np.asarray(t.customdata).reshape(len(x), -1)[:, 0]
        colour = t.marker.color if isinstance(t.marker.color, str) else "#555"
        opacity = 1.0 if t.marker.opacity is None else float(t.marker.opacity)
        size = 6.0 if t.marker.size is None else float(t.marker.size)
        named = t.legendgroup is not None and t.name is not None
        groups.append({"trace": i, "colour": colour, "opacity": opacity, "size": size,
                       "label": f"class {t.name}, " if named else ""})
        spec["data"][i] = {"type": "scatter", "x": [None], "y": [None], "mode": "markers", "name": t.name,
                           "legendgroup": t.legendgroup, "showlegend": t.showlegend is not False,
                           "hoverinfo": "skip", "marker": {"size": size, "color": colour, "opacity": opacity}}
        xs.append(x)
        ys.append(y)
        ids.append(c.astype(np.int64))
        gs.append(np.full(len(x), g))
    x, y, ids, gs = (np.concatenate(a) for a in (xs, ys, ids, gs))
    keep = np.isfinite(x) & np.isfinite(y)
    x, y, ids, gs = x[keep], y[keep], ids[keep], gs[keep]
    order = np.argsort(ids, kind="stable")
    if len(x):
        size = max(g["size"] for g in groups)
        spec["data"].append({"type": "scatter", "x": [float(x.min()), float(x.max())],
                             "y": [float(y.min()), float(y.max())], "mode": "markers", "showlegend": False,
                             "hoverinfo": "skip", "marker": {"size": size, "opacity": 0}, "meta": "dots extent"})
    layout = spec.setdefault("layout", {})
    # The canvas lies under plotly's picture: its backgrounds must let the dots through.
    layout["paper_bgcolor"] = layout["plot_bgcolor"] = "rgba(0,0,0,0)"
    return {"x": np.round(x[order], 5).tolist(), "y": np.round(y[order], 5).tolist(),
            "id": ids[order].tolist(), "g": gs[order].tolist(), "groups": groups}


def figure_payload(fig: go.Figure, clickable: bool = False) -> dict:
    """What the component is sent: the figure as JSON (in the app's template, its dots taken out
    for the canvas: _take_dots; fig itself is not changed: a cached figure is shared by many
    sessions), and `base`, a digest of everything in it but its shapes (the browser relayouts only
    the shapes when `base` is unchanged)."""
    spec = json.loads(fig.to_json())
    dots = _take_dots(fig, spec)
    if dots is not None:
        spec["dots"] = dots
    layout = spec.setdefault("layout", {})
    shapes = layout.pop("shapes", None)
    # Always ours: the figure's own is Streamlit's, whose colours are placeholders that only
    # st.plotly_chart's front end fills in.
    layout["template"] = _template()
    layout.setdefault("hovermode", "closest")
    if clickable:
        layout["clickmode"] = "event"
    text = json.dumps(spec)     # plotly writes a figure's keys in one order: no sorting needed
    base = hashlib.blake2b(text.encode(), digest_size=12).hexdigest()
    if shapes is None:
        return {"figure": text, "base": base}
    layout["shapes"] = shapes
    return {"figure": json.dumps(spec), "base": base}


def ring(x: float, y: float, name: str, colour: str = "black", width: float = 3, diameter: float = 20) -> dict:
    """A layout shape: a ring of fixed screen size round (x, y) (data units, on any axis type), such
    as the picked dot. A figure whose rings move is redrawn by a relayout of its shapes alone."""
    r = diameter / 2
    return dict(type="circle", xref="x", yref="y", xsizemode="pixel", ysizemode="pixel",
                xanchor=float(x), yanchor=float(y), x0=-r, x1=r, y0=-r, y1=r,
                line=dict(color=colour, width=width), name=name)


def clicked(key: str) -> Optional[int]:
    """The data index of the dot just clicked on the map drawn under `key`: in the run that the
    click started, before the map is drawn again (so the page can mark it at once); else None."""
    import streamlit as st
    state = st.session_state.get(key)
    if state is None:
        return None
    if "selection" in state:            # drawn by st.plotly_chart (no static serving)
        idx = figures.selected_index(state)
        # A selection stays in its chart's state: only a new one is a new pick.
        if idx is None or st.session_state.get(f"_seen_{key}") == idx:
            return None
        st.session_state[f"_seen_{key}"] = idx
        return idx
    click = state.get("click")          # the component's trigger: set for one run only
    return int(click) if isinstance(click, (int, float)) and not isinstance(click, bool) else None


def draw(fig: go.Figure, key: str, where=None, clickable: bool = False) -> None:
    """Draw fig under `key` in `where` (a column or container; the page by default). clickable:
    a click on a dot (a figures.scatter_codes map: its customdata is the data index) reruns the
    page, and clicked(key) then says which."""
    import streamlit as st
    fig = figures.steady_margins(fig)
    if not available():
        kwargs = dict(on_select="rerun", selection_mode="points") if clickable else {}
        (where or st).plotly_chart(fig, key=key, config=figures.CONFIG, **kwargs)
        return
    data = {**figure_payload(fig, clickable), "plotly": f"app/static/{PLOTLY_JS}",
            "config": figures.CONFIG, "filename": key,
            "clickable": clickable}
    with where if where is not None else nullcontext():
        _register()(data=data, key=key, **({"on_click_change": _ignore} if clickable else {}))


def preload() -> bool:
    """Start the browser loading plotly.js now (an invisible element), before the page has
    computed its charts; False where the charts will be drawn by st.plotly_chart instead."""
    if not available():
        return False
    _register()(data={"plotly": f"app/static/{PLOTLY_JS}"}, key="vae_chart_preload", height=0)
    return True


def _ignore():
    """The click trigger's callback: the page reads the click itself (clicked())."""

"""Plotly charts drawn by plotly.js in the browser and updated there in place (figures.chart
draws every chart of the app through draw()).

st.plotly_chart names its element after the figure (streamlit 1.67), so any change to a figure
(a ring round the dot just clicked, one more bubble, a new family's curves) mounts a new chart,
which plotly.js then draws twice: once as sent, once more with Streamlit's theme. For a
2,000-dot map on a browser without a GPU each draw takes about 90 ms, and the Latent map page
shows two. This component keeps one plot per key and changes it: a figure that differs from the
one on screen only in its shapes (the ring) costs a Plotly.relayout of about 15 ms; any other
change, one Plotly.react (bench/bench_browser.py times what a person waits for).

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
      const s = document.createElement("script");
      s.src = url;
      s.onload = () => resolve(window.Plotly);
      s.onerror = () => { window.__vaeLoadPlotly = null; reject(new Error("plotly.js did not load from " + url)); };
      document.head.appendChild(s);
    });
  }
  return window.__vaeLoadPlotly;
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
  if (data.figure === div.__figure && div.dataset.state === "drawn") return cleanup(div);  // nothing changed
  div.__figure = data.figure;
  const fig = JSON.parse(data.figure);
  div.style.height = (fig.layout.height || 450) + "px";
  div.dataset.state = "drawing";
  div.dataset.clickable = data.clickable ? "1" : "0";
  loadPlotly(url).then((Plotly) => {
    // Draws queue behind each other: a relayout must not meet a react still under way.
    div.__queue = (div.__queue || Promise.resolve()).then(() => {
      if (div.__base === data.base && div._fullLayout) {
        return Plotly.relayout(div, { shapes: fig.layout.shapes || [] });
      }
      div.__base = data.base;
      return Plotly.react(div, fig.data, fig.layout, data.config);
    }).then(() => {
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
  return cleanup(div);
}

// Called by Streamlit once, when the chart leaves the page: free plotly's state and listeners.
function cleanup(div) {
  return () => {
    if (div.__resize) div.__resize.disconnect();
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


def figure_payload(fig: go.Figure, clickable: bool = False) -> dict:
    """What the component is sent: the figure as JSON (in the app's template; fig itself is
    not changed: a cached figure is shared by many sessions), and `base`, a digest of everything
    in it but its shapes (the browser relayouts only the shapes when `base` is unchanged)."""
    spec = json.loads(fig.to_json())
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


def ring(x: float, y: float, name: str) -> dict:
    """A layout shape: a ring of fixed screen size round (x, y), the picked dot."""
    return dict(type="circle", xref="x", yref="y", xsizemode="pixel", ysizemode="pixel",
                xanchor=float(x), yanchor=float(y), x0=-10, x1=10, y0=-10, y1=10,
                line=dict(color="black", width=3), name=name)


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
            "config": figures.CONFIG,
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

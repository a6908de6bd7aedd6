"""Plotly figures, pictures (PNG, SVG) and image helpers for the pages. Inputs are NumPy arrays; nothing here trains,
encodes or decodes: pages hand in what the cached helpers computed.

Images are arrays in [0, 1] shaped [H, W] (grey), [C, H, W] or [N, C, H, W].
"""
from __future__ import annotations

import collections
import io
import threading
from typing import Optional, Sequence

import numpy as np
import plotly.graph_objects as go

# Ten colours that stay apart for colour-blind readers (Okabe-Ito plus two), one per class.
CLASS_COLOURS = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9",
                 "#D55E00", "#F0E442", "#000000", "#999999", "#7F3C8D"]
VAE_COLOUR, AE_COLOUR = "#0072B2", "#D55E00"
PATH_COLOUR = "#d62728"

# The toolbar of every figure: PNG download at twice the screen size, no plotly logo.
CONFIG = {"displaylogo": False, "toImageButtonOptions": {"format": "png", "scale": 2}}
# Maps of up to this many dots are drawn as SVG, larger ones with WebGL. In a browser without a
# GPU (headless Chromium on 2 cores) two 2,000-dot WebGL maps take about 0.9 s to appear on a
# page (creating the GL contexts) against 0.2-0.3 s as SVG, and redraw in about the same time;
# past about 3,000 dots SVG is the slower (10,000: 0.7-0.9 s against 0.2 s).
SVG_DOTS = 2000


def class_colour(label: int) -> str:
    return CLASS_COLOURS[int(label) % len(CLASS_COLOURS)]


def to_grey(img: np.ndarray) -> np.ndarray:
    """[H, W] or [C, H, W] in [0, 1] -> [H, W] or [H, W, C] uint8 for display."""
    img = np.asarray(img, dtype=np.float32)
    if img.ndim == 3:
        img = img[0] if img.shape[0] == 1 else np.transpose(img, (1, 2, 0))
    return (np.clip(img, 0.0, 1.0) * 255 + 0.5).astype(np.uint8)


def png_bytes(img: np.ndarray, scale: int = 1, compress_level: int = 1) -> bytes:
    """An image in [0, 1] ([H, W] or [C, H, W]) as PNG bytes, upscaled by `scale` (nearest).

    Compression level 1, not PIL's 6: on a slider move the PNG is made anew, and level 6 took
    about half of a grid rerun for files only slightly smaller (still lossless)."""
    arr = to_grey(img)
    if scale > 1:
        arr = np.repeat(np.repeat(arr, scale, axis=0), scale, axis=1)
    return _encode_png(arr, compress_level)


def _encode_png(arr: np.ndarray, compress_level: int = 1) -> bytes:
    """uint8 [H, W] or [H, W, C] -> PNG bytes."""
    from PIL import Image
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG", compress_level=compress_level)
    return buf.getvalue()


_URIS: "collections.OrderedDict[tuple, str]" = collections.OrderedDict()
_URIS_LOCK = threading.Lock()
_URIS_MAX_BYTES = 32 * 2**20
_URIS_BYTES = 0


def png_uri(arr: np.ndarray) -> str:
    """A uint8 image as a base64 PNG data URI, remembered by its pixels' digest and shared by
    all sessions: moving a slider back to a value seen before (by anyone) skips the encoding.
    The cache holds at most 32 MB of URIs, least recently used out first."""
    import base64
    import hashlib
    arr = np.ascontiguousarray(arr)
    key = (arr.shape, arr.dtype.str, hashlib.blake2b(arr.data, digest_size=16).digest())
    with _URIS_LOCK:
        uri = _URIS.get(key)
        if uri is not None:
            _URIS.move_to_end(key)
            return uri
    uri = "data:image/png;base64," + base64.b64encode(_encode_png(arr)).decode("ascii")
    global _URIS_BYTES
    with _URIS_LOCK:
        if key not in _URIS:
            _URIS[key] = uri
            _URIS_BYTES += len(uri)
        while _URIS_BYTES > _URIS_MAX_BYTES and len(_URIS) > 1:
            _URIS_BYTES -= len(_URIS.popitem(last=False)[1])
    return uri


def vector_text(v: Sequence[float], digits: int = 2) -> str:
    """A short vector as a person writes it: "(2.00, −1.95)", with a true minus sign."""
    return "(" + ", ".join(f"{float(x):.{digits}f}".replace("-", "−") for x in v) + ")"


def upscale(img: np.ndarray, size: int = 140) -> np.ndarray:
    """Nearest-neighbour upscaling to about `size` pixels high, so small digits stay crisp."""
    arr = to_grey(img)
    k = max(1, size // arr.shape[0])
    return np.repeat(np.repeat(arr, k, axis=0), k, axis=1)


def tile(images: np.ndarray, ncols: Optional[int] = None, pad: int = 1) -> np.ndarray:
    """[N, C, H, W] -> one [H', W'] mosaic in [0, 1], row-major, `pad` pixels of grey between."""
    images = np.asarray(images, dtype=np.float32)
    if images.ndim == 3:
        images = images[:, None]
    n, c, h, w = images.shape
    ncols = ncols or int(np.ceil(np.sqrt(n)))
    nrows = int(np.ceil(n / ncols))
    out = np.full((c, nrows * (h + pad) + pad, ncols * (w + pad) + pad), 0.35, dtype=np.float32)
    for i in range(n):
        r, q = divmod(i, ncols)
        out[:, pad + r * (h + pad):pad + r * (h + pad) + h, pad + q * (w + pad):pad + q * (w + pad) + w] = images[i]
    return out[0] if c == 1 else out


def mosaic_ticks(values: Sequence[float], cell: int, pad: int = 1, every: int = 1) -> tuple:
    """Tick positions at cell centres of a tiled mosaic and their latent values as labels."""
    pos = [pad + i * (cell + pad) + (cell - 1) / 2 for i in range(len(values))]
    lab = [f"{v:.2g}" for v in values]
    return pos[::every], lab[::every]


def _prior_circles() -> list:
    """The 1σ and 2σ circles of N(0, I) in a 2-D plane (about 39% and 86% of prior mass inside)."""
    t = np.linspace(0, 2 * np.pi, 121)
    return [go.Scatter(x=r * np.cos(t), y=r * np.sin(t), mode="lines", hoverinfo="skip",
                       line=dict(color="rgba(60,60,60,0.8)", width=1.5, dash=dash),
                       name=f"prior {r}σ", legendgroup="prior", showlegend=True)
            for r, dash in ((1, "solid"), (2, "dash"))]


def _ellipses(mu: np.ndarray, sigma: np.ndarray, labels: Optional[np.ndarray]) -> list:
    """±σ posterior ellipses, axis-aligned (the posterior is diagonal), one trace per class."""
    t = np.linspace(0, 2 * np.pi, 25)
    groups = np.unique(labels) if labels is not None else [None]
    traces = []
    for g in groups:
        sel = np.arange(len(mu)) if g is None else np.flatnonzero(labels == g)
        # One polyline per class: each ellipse's 25 points, then a gap (NaN) before the next.
        xs = np.full((len(sel), len(t) + 1), np.nan)
        ys = np.full((len(sel), len(t) + 1), np.nan)
        xs[:, :-1] = mu[sel, 0:1] + sigma[sel, 0:1] * np.cos(t)
        ys[:, :-1] = mu[sel, 1:2] + sigma[sel, 1:2] * np.sin(t)
        colour = "#444" if g is None else class_colour(g)
        traces.append(go.Scatter(x=xs.ravel(), y=ys.ravel(), mode="lines", hoverinfo="skip", showlegend=False,
                                 line=dict(color=colour, width=1), opacity=0.45, legendgroup=f"class {g}",
                                 connectgaps=False))
    return traces


def _dots_picture(xy: np.ndarray, labels: Optional[np.ndarray], extent: tuple, marker_size: int,
                  long_side: int = 500) -> tuple[str, int, int]:
    """The dots of xy [N, 2] drawn into a transparent PNG that covers extent (x0, x1, y0, y1)
    at one scale on both axes: (data URI, width, height). Each dot is about marker_size screen
    pixels across where the plot is some 300 px wide (half a projected page); classes are drawn
    in a shuffled order, so none hides the others systematically."""
    from PIL import Image, ImageDraw
    x0, x1, y0, y1 = extent
    scale = long_side / max(x1 - x0, y1 - y0, 1e-12)
    w, h = max(1, int(round((x1 - x0) * scale))), max(1, int(round((y1 - y0) * scale)))
    img = Image.new("RGBA", (w, h), (255, 255, 255, 0))
    draw = ImageDraw.Draw(img)
    r = max(1.0, marker_size * long_side / 300 / 2)
    order = np.random.default_rng(0).permutation(len(xy))
    px = (xy[:, 0] - x0) * scale
    py = (y1 - xy[:, 1]) * scale
    for i in order:
        colour = class_colour(int(labels[i])) if labels is not None else "#555555"
        draw.ellipse([px[i] - r, py[i] - r, px[i] + r, py[i] + r], fill=colour)
    return png_uri(np.asarray(img)), w, h


def codes_thumbnail(xy: np.ndarray, labels: Optional[np.ndarray], reach: float, prior: bool = False,
                    size: int = 360, dot: float = 1.6) -> np.ndarray:
    """A small map of codes xy [N, 2] as a picture [H, W, 3] uint8: both axes from -reach to
    reach (ticks at -reach, 0, reach), dots in their class colours (those outside the box are
    left out), and with prior=True the 1σ and 2σ circles of N(0, I), dark and light grey.
    For rows of small multiples: a picture costs the browser nothing to draw, where each plotly
    chart costs tens of milliseconds on every change of the page."""
    from PIL import Image, ImageDraw, ImageFont
    font = ImageFont.load_default(size=max(10, size // 28))
    left, bottom, top, right = size // 9, size // 14, 6, 10
    side = size - left - right
    img = Image.new("RGB", (size, top + side + bottom), "white")
    draw = ImageDraw.Draw(img)
    reach = float(reach) if reach and np.isfinite(reach) else 1.0

    def to_px(x, y):
        return left + (x + reach) / (2 * reach) * side, top + (reach - y) / (2 * reach) * side

    # The plot area is drawn on its own layer and pasted into the box, so that nothing in it (a dot
    # on the edge, a prior circle wider than the axes) spills over the margins and their labels.
    area = Image.new("RGB", (side + 1, side + 1), "white")
    pen = ImageDraw.Draw(area)

    def to_area(x, y):
        px, py = to_px(x, y)
        return px - left, py - top

    cx, cy = to_area(0.0, 0.0)
    pen.line([0, cy, side, cy], fill="#e6e6e6")
    pen.line([cx, 0, cx, side], fill="#e6e6e6")
    xy = np.asarray(xy, dtype=np.float64)
    inside = np.flatnonzero((np.abs(xy) <= reach).all(axis=1))
    for i in inside[np.random.default_rng(0).permutation(len(inside))]:
        px, py = to_area(*xy[i])
        colour = class_colour(int(labels[i])) if labels is not None else "#555555"
        pen.ellipse([px - dot, py - dot, px + dot, py + dot], fill=colour)
    if prior:
        for r, colour in ((1.0, "#3c3c3c"), (2.0, "#8a8a8a")):
            (x0, y0), (x1, y1) = to_area(-r, r), to_area(r, -r)
            pen.ellipse([x0, y0, x1, y1], outline=colour, width=2)
    img.paste(area, (left, top))
    draw.rectangle([left, top, left + side, top + side], outline="#d0d0d0")
    label = f"{reach:g}"
    # The two axes' -reach labels meet at the corner: each is pushed away from it.
    for value, text, x_anchor, y_anchor in ((-reach, "-" + label, "lt", "rb"), (0.0, "0", "mt", "rm"),
                                            (reach, label, "rt", "rt")):
        px, py = to_px(value, value)
        draw.text((px, top + side + 3), text, fill="#555555", font=font, anchor=x_anchor)
        draw.text((left - 4, py), text, fill="#555555", font=font, anchor=y_anchor)
    return np.asarray(img)


def scatter_codes(xy: np.ndarray, labels: Optional[np.ndarray], classes: Optional[list] = None,
                  title: str = "", axis_titles: tuple = ("", ""), *,
                  indices: Optional[np.ndarray] = None,
                  sigma: Optional[np.ndarray] = None, n_ellipses: int = 0,
                  prior: bool = False, path: Optional[np.ndarray] = None,
                  rect: Optional[tuple] = None, marks: Optional[list] = None,
                  height: int = 480, equal_axes: bool = True, marker_size: int = 4,
                  picture: bool = False) -> go.Figure:
    """Codes xy [N, 2] as dots coloured by class, with optional overlays.

    indices [N]: the data index of each dot (shown on hover and returned by a selection as
    customdata). sigma [N, 2]: posterior σ per dot; the first n_ellipses get a ±σ ellipse.
    prior: draw N(0, I)'s 1σ/2σ circles. path [S, 2]: a polyline with numbered steps.
    rect: (x0, x1, y0, y1) drawn as a dashed box (a decoded grid's extent).
    marks: [(x, y, text, colour)] big labelled stars (a drawing, a chosen image).
    The dot traces carry meta="dots": the app's chart component draws them on a canvas of its own,
    with its own hover and click (explorer/charts.py). Where st.plotly_chart draws the charts
    instead (no static serving), they are plotly markers: SVG up to SVG_DOTS dots, WebGL beyond.
    picture: the dots are one PNG under the axes, with the classes in the legend only, made on the
    server; the dots then have no hover and cannot be clicked: for maps that only show where the
    codes are. The margins are set (steady_margins) before it returns.
    The traces are collected first and the figure is built in one constructor call: adding them
    one by one re-validates the figure each time (tens of ms on every live refresh).
    """
    xy = np.asarray(xy, dtype=np.float32)
    indices = np.arange(len(xy)) if indices is None else np.asarray(indices)
    Dots = go.Scatter if len(xy) <= SVG_DOTS else go.Scattergl
    traces = []
    if sigma is not None and n_ellipses > 0:
        k = min(n_ellipses, len(xy))
        traces += _ellipses(xy[:k], np.asarray(sigma)[:k], None if labels is None else np.asarray(labels)[:k])
    images = []
    if picture and len(xy):
        # The picture covers the codes (and the prior's circles), not the path: a new path then
        # reuses the same PNG (png_uri's cache), and autorange still fits the path's own trace.
        pts = [xy] + ([np.array([[-2.0, -2.0], [2.0, 2.0]])] if prior else [])
        lo, hi = np.concatenate(pts).min(0), np.concatenate(pts).max(0)
        pad = 0.04 * max(float((hi - lo).max()), 1e-6)
        extent = (float(lo[0] - pad), float(hi[0] + pad), float(lo[1] - pad), float(hi[1] + pad))
        uri, _, _ = _dots_picture(xy, None if labels is None else np.asarray(labels), extent, marker_size)
        images.append(dict(source=uri, xref="x", yref="y", x=extent[0], y=extent[3], sizex=extent[1] - extent[0],
                           sizey=extent[3] - extent[2], sizing="stretch", layer="below"))
        present = np.unique(np.asarray(labels)) if labels is not None else []
        for g in present:                    # the legend: one entry per class, nothing drawn
            name = classes[g] if classes and 0 <= g < len(classes) else str(g)
            traces.append(go.Scatter(x=[None], y=[None], mode="markers", name=name, hoverinfo="skip",
                                     marker=dict(size=8, color=class_colour(g))))
        # An invisible corner trace makes autorange cover the picture.
        traces.append(go.Scatter(x=[extent[0], extent[1]], y=[extent[2], extent[3]], mode="markers",
                                 marker=dict(size=1, opacity=0), hoverinfo="skip", showlegend=False))
    elif labels is None:
        traces.append(Dots(x=xy[:, 0], y=xy[:, 1], mode="markers", name="codes", meta="dots",
                                   customdata=indices, marker=dict(size=marker_size, color="#555"),
                                   hovertemplate="image %{customdata}<extra></extra>"))
    else:
        labels = np.asarray(labels)
        for g in np.unique(labels):
            sel = labels == g
            name = classes[g] if classes and 0 <= g < len(classes) else str(g)
            traces.append(Dots(
                x=xy[sel, 0], y=xy[sel, 1], mode="markers", name=name, legendgroup=f"class {g}", meta="dots",
                customdata=indices[sel], marker=dict(size=marker_size, color=class_colour(g), opacity=0.75),
                hovertemplate=f"class {name}, image %{{customdata}}<br>(%{{x:.2f}}, %{{y:.2f}})<extra></extra>"))
    if prior:
        traces += _prior_circles()
    if rect is not None:
        x0, x1, y0, y1 = rect
        traces.append(go.Scatter(x=[x0, x1, x1, x0, x0], y=[y0, y0, y1, y1, y0], mode="lines",
                                 name="decoded grid", hoverinfo="skip",
                                 line=dict(color="black", width=2, dash="dash")))
    if path is not None and len(path):
        path = np.asarray(path)
        traces.append(go.Scatter(x=path[:, 0], y=path[:, 1], mode="lines+markers", name="path",
                                 line=dict(color=PATH_COLOUR, width=2),
                                 marker=dict(size=7, color=PATH_COLOUR, line=dict(color="white", width=1)),
                                 text=[f"step {i}" for i in range(len(path))],
                                 hovertemplate="%{text}<br>(%{x:.2f}, %{y:.2f})<extra></extra>"))
    for x, y, text, colour in marks or []:
        traces.append(go.Scatter(x=[x], y=[y], mode="markers+text", name=text, text=[text],
                                 textposition="top center", hoverinfo="name",
                                 marker=dict(symbol="star", size=18, color=colour,
                                             line=dict(color="black", width=1))))
    yaxis = dict(title=dict(text=axis_titles[1]))
    if equal_axes:
        yaxis.update(scaleanchor="x", scaleratio=1)
    # The title starts at the plot's left edge: centred, it lay under the toolbar, which plotly
    # shows at the top right while the pointer is over the chart.
    layout = dict(title=dict(text=title, x=0, xref="paper", xanchor="left"), height=height,
                  # Each class is a legend group: without tracegroupgap=0 the groups stand 10 px
                  # apart, and 13 entries overflow a 420-px map into a scrolling legend.
                  margin=dict(l=10, r=10, t=40, b=10), legend=dict(itemsizing="constant", tracegroupgap=0),
                  xaxis=dict(title=dict(text=axis_titles[0])), yaxis=yaxis, dragmode="pan")
    if images:
        layout["images"] = images
        layout["legend"].update(itemclick=False, itemdoubleclick=False)   # a picture cannot hide a class
    # Margins set now: a shared figure (scatter_codes_shared) is then never changed by chart().
    return steady_margins(go.Figure(data=traces, layout=layout))


def selected_index(event) -> Optional[int]:
    """The data index of the dot a click selected on a scatter_codes figure, or None.

    event: what st.plotly_chart(..., on_select="rerun") returns (and keeps in session state under
    the chart's key): {"selection": {"points": [{"curve_number", "point_number", "point_index",
    "x", "y", "customdata", ...}], "point_indices": [...], "box": [...], "lasso": [...]}}.
    scatter_codes puts each dot's data index in customdata; plotly sends it as a number or as a
    one-element list. The first selected point counts; one without customdata (the ring around
    the picked dot, a prior circle, a path) selects nothing.
    """
    points = ((event or {}).get("selection") or {}).get("points") or []
    if not points:
        return None
    index = points[0].get("customdata")
    if isinstance(index, (list, tuple)):
        index = index[0] if index else None
    return None if index is None else int(index)


def bar_kl(kl: np.ndarray, order: np.ndarray, title: str = "KL per latent dimension") -> go.Figure:
    """Bars of KL (nats) per dimension in the given order: which dimensions carry information."""
    fig = go.Figure(go.Bar(x=[f"z{int(i)}" for i in order], y=np.asarray(kl)[order],
                           marker_color=VAE_COLOUR,
                           hovertemplate="%{x}: %{y:.3f} nats<extra></extra>"))
    fig.update_layout(title=title, height=260, margin=dict(l=10, r=10, t=40, b=10),
                      yaxis_title="nats", xaxis=dict(type="category"))
    return fig


def panels_layout(titles: Sequence[str], gap: float, shared_y: bool = False) -> dict:
    """A layout of len(titles) side-by-side panels, each titled, what make_subplots(1, n) lays out,
    written out directly: make_subplots and the updates that follow it cost 20-40 ms a figure,
    paid on every rerun of a page that draws one. Panel i's traces go on axes "x{i}"/"y{i}" (the
    first "x"/"y"); shared_y: one y range for all, tick labels on the first panel only."""
    n = max(1, len(titles))
    width = (1 - gap * (n - 1)) / n
    layout = {"annotations": []}
    for i in range(n):
        x0 = i * (width + gap)
        sfx = "" if i == 0 else str(i + 1)
        layout[f"xaxis{sfx}"] = dict(domain=[x0, x0 + width], anchor=f"y{sfx}")
        layout[f"yaxis{sfx}"] = dict(anchor=f"x{sfx}", **(dict(matches="y", showticklabels=False)
                                                            if shared_y and i else {}))
        if i < len(titles):
            layout["annotations"].append(dict(text=titles[i], x=x0 + width / 2, y=1.0, xref="paper", yref="paper",
                                              xanchor="center", yanchor="bottom", showarrow=False,
                                              font=dict(size=16)))
    return layout


def bar_kl_row(kls: dict, height: int = 240) -> go.Figure:
    """KL per dimension (nats), largest first, for several models side by side on one shared y
    axis: {label: kl [d]} -> one figure with a panel per model."""
    labels = list(kls)
    layout = panels_layout(labels, gap=0.02, shared_y=True)
    traces = []
    for k, label in enumerate(labels):
        kl = np.asarray(kls[label])
        order = np.argsort(-kl)
        sfx = "" if k == 0 else str(k + 1)
        traces.append(go.Bar(x=[f"z{int(i)}" for i in order], y=kl[order], marker_color=VAE_COLOUR, name=label,
                             showlegend=False, xaxis=f"x{sfx}", yaxis=f"y{sfx}",
                             hovertemplate=f"{label}, %{{x}}: %{{y:.3f}} nats<extra></extra>"))
        layout[f"xaxis{sfx}"].update(type="category", showticklabels=len(order) <= 10)
    layout["yaxis"]["title"] = dict(text="nats")
    layout.update(height=height, margin=dict(l=10, r=10, t=30, b=10))
    return go.Figure(data=traces, layout=layout)


def line_chart(ys: dict, x: Optional[Sequence] = None, title: str = "", y_title: str = "",
               x_title: str = "", height: int = 260, marker_x: Optional[float] = None) -> go.Figure:
    """Lines, one per {name: values}; marker_x draws a vertical rule (e.g. the slider's step)."""
    fig = go.Figure()
    colours = [VAE_COLOUR, AE_COLOUR, "#009E73", "#CC79A7"]
    for i, (name, vals) in enumerate(ys.items()):
        xs = list(x) if x is not None else list(range(len(vals)))
        fig.add_trace(go.Scatter(x=xs, y=list(vals), mode="lines+markers", name=name,
                                 line=dict(color=colours[i % len(colours)])))
    if marker_x is not None:
        fig.add_vline(x=marker_x, line=dict(color="grey", dash="dot"))
    fig.update_layout(title=title, height=height, margin=dict(l=10, r=10, t=40, b=10),
                      yaxis_title=y_title, xaxis_title=x_title)
    return fig


def nice_ticks(lo: float, hi: float, count: int = 5, integer: bool = False,
               steps: Sequence[float] = (1, 2, 2.5, 5, 10)) -> np.ndarray:
    """Round tick values (steps of 1, 2, 2.5 or 5 times a power of ten, or of `steps`) covering
    [lo, hi], about `count` of them; integer=True keeps them whole numbers (epochs)."""
    lo, hi = float(lo), float(hi)
    if not (np.isfinite(lo) and np.isfinite(hi)):
        lo, hi = 0.0, 1.0
    if not hi > lo:
        lo, hi = lo - 0.5, hi + 0.5
    raw = (hi - lo) / max(1, count)
    mag = 10.0 ** np.floor(np.log10(raw))
    step = next(m * mag for m in steps if m * mag >= raw * (1 - 1e-9))
    if integer:
        step = max(1.0, float(np.ceil(step)))
    first = np.ceil(lo / step - 1e-9) * step
    return np.round(np.arange(first, hi + step * 1e-6, step), 10)


def line_svg(ys: dict, x: Sequence, title: str = "", x_title: str = "", y_title: str = "",
             width: int = 420, height: int = 230, colours: Sequence[str] = ("#009E73", "#CC79A7")) -> str:
    """Lines, one per {name: values} (None leaves a gap), as an SVG drawing with ticks, axis
    titles and a legend: for small charts a visitor only reads, such as a finished run's loss
    curves. An SVG draws as soon as it arrives, where the first plotly chart of a visit waits
    for the browser to load and parse plotly's script (seconds on a 2-core machine)."""
    from xml.sax.saxutils import escape
    xs = np.array([np.nan if v is None else float(v) for v in x], dtype=np.float64)
    if not np.isfinite(xs).any():
        xs = np.arange(len(xs), dtype=np.float64)          # no x values recorded: the index
    series = {name: np.array([np.nan if v is None else float(v) for v in vals], dtype=np.float64)
              for name, vals in ys.items()}
    finite = np.concatenate([v[np.isfinite(v)] for v in series.values()] + [np.zeros(0)])
    y_lo, y_hi = (finite.min(), finite.max()) if finite.size else (0.0, 1.0)
    known = xs[np.isfinite(xs)]
    whole = bool(known.size) and bool(np.all(known == np.round(known)))     # epochs: whole-number ticks
    x_ticks = nice_ticks(known.min(), known.max(), integer=whole) if known.size else nice_ticks(0, 1)
    y_ticks = nice_ticks(y_lo, y_hi, 5)
    x_lo = min(known.min(), x_ticks.min()) if known.size else 0.0
    x_hi = max(known.max(), x_ticks.max()) if known.size else 1.0
    x_hi = x_hi if x_hi > x_lo else x_lo + 1
    y_lo, y_hi = min(y_lo, y_ticks.min()), max(y_hi, y_ticks.max())
    left, right, top, bottom = 62, 12, 34, 44
    w, h = width - left - right, height - top - bottom

    def px(xv, yv):
        return left + (xv - x_lo) / (x_hi - x_lo) * w, top + (y_hi - yv) / (y_hi - y_lo) * h

    def fmt(v):
        return f"{v + 0.0:,.10g}"          # + 0.0: a tick at -0.0 reads "0", not "-0"

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="13">',
           '<rect width="100%" height="100%" fill="white"/>']
    for t in y_ticks:
        _, py = px(x_lo, t)
        out.append(f'<line x1="{left}" x2="{left + w}" y1="{py:.1f}" y2="{py:.1f}" stroke="#e6e6e6"/>'
                   f'<text x="{left - 6}" y="{py:.1f}" text-anchor="end" dominant-baseline="middle" '
                   f'fill="#444">{fmt(t)}</text>')
    for t in x_ticks:
        qx, _ = px(t, y_lo)
        out.append(f'<text x="{qx:.1f}" y="{top + h + 16}" text-anchor="middle" fill="#444">{fmt(t)}</text>')
    out.append(f'<rect x="{left}" y="{top}" width="{w}" height="{h}" fill="none" stroke="#bbb"/>')
    for i, (name, vals) in enumerate(series.items()):
        colour = colours[i % len(colours)]
        ok = np.isfinite(vals[:len(xs)]) & np.isfinite(xs[:len(vals)])
        # One polyline per run of finite values: a missing value leaves a gap, not a jump.
        for run in np.split(np.arange(len(ok)), np.flatnonzero(np.diff(ok.astype(int))) + 1):
            if run.size == 1 and ok[run[0]]:            # a lone value: a dot, as a line needs two
                a, b = px(xs[run[0]], vals[run[0]])
                out.append(f'<circle cx="{a:.1f}" cy="{b:.1f}" r="3" fill="{colour}"/>')
            elif run.size and ok[run[0]]:
                pts = " ".join(f"{a:.1f},{b:.1f}" for a, b in (px(xs[j], vals[j]) for j in run))
                out.append(f'<polyline points="{pts}" fill="none" stroke="{colour}" stroke-width="2"/>')
        lx = left + w - 70 * (len(series) - i)
        out.append(f'<line x1="{lx}" x2="{lx + 18}" y1="{top - 10}" y2="{top - 10}" stroke="{colour}" '
                   f'stroke-width="3"/><text x="{lx + 22}" y="{top - 10}" dominant-baseline="middle">'
                   f'{escape(name)}</text>')
    if title:
        out.append(f'<text x="{left}" y="{top - 10}" font-size="15" dominant-baseline="middle">{escape(title)}</text>')
    if x_title:
        out.append(f'<text x="{left + w / 2}" y="{height - 6}" text-anchor="middle">{escape(x_title)}</text>')
    if y_title:
        cy = top + h / 2
        out.append(f'<text x="14" y="{cy}" text-anchor="middle" transform="rotate(-90 14 {cy})">{escape(y_title)}</text>')
    out.append("</svg>")
    return "".join(out)


def scatter_codes_shared(*args, **kwargs) -> go.Figure:
    """scatter_codes, built once per distinct input and shared by every session (building a
    figure of thousands of points costs tens of milliseconds on each rerun otherwise).
    The figure returned must not be changed: call scatter_codes for one to add traces to."""
    return _scatter_shared(*args, **kwargs)


def _make_shared():
    import streamlit as st
    return st.cache_resource(show_spinner=False, max_entries=64)(scatter_codes)


_scatter_shared = _make_shared()


# ---------------------------------------------------------------- slide-ready exports

def _export_layout(shape: tuple, scale: float, title: str, rows: Optional[tuple], cols: Optional[tuple],
                   x_title: str, y_title: str) -> dict:
    """Where the picture and each label go in an export: margins sized for the labels given.
    rows / cols: (positions in image pixels, texts), as mosaic_ticks returns them."""
    h, w = shape[0] * scale, shape[1] * scale
    longest = max((len(t) for t in (rows or ((), ()))[1]), default=0)
    left = 16 + (8 * longest + 8 if rows else 0) + (24 if y_title else 0)
    top = 44 if title else 12
    bottom = 12 + (22 if cols else 0) + (24 if x_title else 0)
    return {"left": left, "top": top, "w": round(w, 2), "h": round(h, 2), "width": round(left + w + 16, 2),
            "height": round(top + h + bottom, 2)}


def export_png(img: np.ndarray, title: str = "", rows: Optional[tuple] = None, cols: Optional[tuple] = None,
               x_title: str = "", y_title: str = "", scale: int = 4) -> bytes:
    """A mosaic with its title (the model's name), row labels, column labels and axis titles, as
    a PNG for a slide: white margins, black text. rows / cols: (pixel positions, texts)."""
    from PIL import Image, ImageDraw, ImageFont
    arr = to_grey(img)
    lay = _export_layout(arr.shape, scale, title, rows, cols, x_title, y_title)
    canvas = Image.new("RGB", (lay["width"], lay["height"]), "white")
    pic = Image.fromarray(np.repeat(np.repeat(arr, scale, 0), scale, 1)).convert("RGB")
    canvas.paste(pic, (lay["left"], lay["top"]))
    draw = ImageDraw.Draw(canvas)
    font, big = ImageFont.load_default(size=14), ImageFont.load_default(size=18)
    if title:
        draw.text((lay["left"] + lay["w"] / 2, 22), title, fill="black", font=big, anchor="mm")
    for pos, text in zip(*(rows or ((), ()))):
        draw.text((lay["left"] - 8, lay["top"] + (pos + 0.5) * scale), text, fill="black", font=font, anchor="rm")
    for pos, text in zip(*(cols or ((), ()))):
        draw.text((lay["left"] + (pos + 0.5) * scale, lay["top"] + lay["h"] + 6), text, fill="black", font=font,
                  anchor="mt")
    if x_title:
        draw.text((lay["left"] + lay["w"] / 2, lay["height"] - 6), x_title, fill="black", font=font, anchor="mb")
    if y_title:
        label = Image.new("RGB", (lay["h"], 20), "white")
        ImageDraw.Draw(label).text((lay["h"] / 2, 10), y_title, fill="black", font=font, anchor="mm")
        canvas.paste(label.rotate(90, expand=True), (4, lay["top"]))
    buf = io.BytesIO()
    canvas.save(buf, format="PNG", compress_level=6)
    return buf.getvalue()


def export_svg(img: np.ndarray, title: str = "", rows: Optional[tuple] = None, cols: Optional[tuple] = None,
               x_title: str = "", y_title: str = "", scale: float = 4, uri: Optional[str] = None) -> bytes:
    """The same figure as export_png, as SVG: the mosaic embedded as a PNG (pixels stay crisp),
    every label as real text that a slide editor can restyle. uri: the mosaic's PNG data URI,
    when the caller has it already."""
    import base64
    from xml.sax.saxutils import escape
    arr = to_grey(img)
    lay = _export_layout(arr.shape, scale, title, rows, cols, x_title, y_title)
    uri = uri or "data:image/png;base64," + base64.b64encode(_encode_png(arr, 6)).decode("ascii")
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{lay["width"]}" height="{lay["height"]}" '
           f'viewBox="0 0 {lay["width"]} {lay["height"]}" font-family="sans-serif">',
           '<rect width="100%" height="100%" fill="white"/>',
           f'<image x="{lay["left"]}" y="{lay["top"]}" width="{lay["w"]}" height="{lay["h"]}" href="{uri}" '
           'style="image-rendering:pixelated" preserveAspectRatio="none"/>']
    if title:
        out.append(f'<text class="title" x="{lay["left"] + lay["w"] / 2}" y="28" font-size="18" text-anchor="middle">'
                   f'{escape(title)}</text>')
    for pos, text in zip(*(rows or ((), ()))):
        out.append(f'<text x="{lay["left"] - 8}" y="{lay["top"] + (pos + 0.5) * scale}" font-size="14" '
                   f'text-anchor="end" dominant-baseline="middle">{escape(text)}</text>')
    for pos, text in zip(*(cols or ((), ()))):
        out.append(f'<text x="{lay["left"] + (pos + 0.5) * scale}" y="{lay["top"] + lay["h"] + 18}" '
                   f'font-size="14" text-anchor="middle">{escape(text)}</text>')
    if x_title:
        out.append(f'<text class="x-title" x="{lay["left"] + lay["w"] / 2}" y="{lay["height"] - 8}" font-size="14" '
                   f'text-anchor="middle">{escape(x_title)}</text>')
    if y_title:
        cy = lay["top"] + lay["h"] / 2
        out.append(f'<text class="y-title" x="16" y="{cy}" font-size="14" text-anchor="middle" '
                   f'transform="rotate(-90 16 {cy})">{escape(y_title)}</text>')
    out.append("</svg>")
    return "\n".join(out).encode("utf-8")


def mosaic_svg(img: np.ndarray, height: int = 320, title: str = "", x_ticks: Optional[tuple] = None,
               y_ticks: Optional[tuple] = None, x_title: str = "", y_title: str = "",
               max_width: int = 900) -> tuple[str, int]:
    """A mosaic with its labels as an SVG drawing `height` pixels tall, or less where that would
    make it wider than max_width, for the page: (the SVG, its width in pixels). x_ticks / y_ticks:
    (positions in the mosaic's pixels, texts), as mosaic_ticks returns them; a pixel's centre is
    at its index. (A page column narrower than the drawing shrinks it, labels included: max_width
    keeps a wide strip's labels readable.)"""
    arr = to_grey(img)
    lay = _export_layout(arr.shape, 1, title, y_ticks, x_ticks, x_title, y_title)   # margins: scale-free
    side, tall = lay["width"] - lay["w"], lay["height"] - lay["h"]
    scale = max(0.25, min((height - tall) / arr.shape[0], (max_width - side) / arr.shape[1]))
    width = int(np.ceil(side + arr.shape[1] * scale))
    svg = export_svg(arr, title, y_ticks, x_ticks, x_title, y_title, scale=scale, uri=png_uri(arr))
    return svg.decode("utf-8"), width


def show_mosaic(img: np.ndarray, key: str, height: int = 320, **labels) -> None:
    """Draw a mosaic (mosaic_svg) on the page in a container keyed `key`, at most its own width.

    A picture, not a plotly chart: the mosaics follow sliders, and each plotly chart costs the
    browser 50-80 ms to draw on every move, where a picture costs a few. The image's own
    full-screen button enlarges it for a projector."""
    import streamlit as st
    svg, width = mosaic_svg(img, height, **labels)
    with st.container(key=key):
        st.image(svg, width=width)


def card_html(title: str, subtitle: str, parts: Sequence) -> str:
    """One column of small multiples as a single block of HTML: a bold `title`, a faded
    `subtitle`, then `parts` in order, each a picture (a uint8 array [H, W] or [H, W, 3], or a float
    one in [0, 1] as to_grey reads it: [H, W] or [C, H, W]; or (array, caption) for a picture with
    a centred caption under it) or a caption (str). Text is
    escaped; pictures are PNG data URIs (png_uri, shared across sessions).

    One element where a column of st.image and st.caption calls made eight: Compare β draws up to
    eight columns, and each caption was a markdown element the browser parsed and laid out on
    every open (about 150 ms of its script on a five-column page)."""
    import html
    faded = "font-size:0.875rem;opacity:0.6;line-height:1.4;margin:0.1rem 0 0.6rem"
    out = [f'<div style="font-weight:600;margin-bottom:0.1rem">{html.escape(title)}</div>',
           f'<div style="{faded};margin-top:0">{html.escape(subtitle)}</div>']
    for part in parts:
        if isinstance(part, str):
            out.append(f'<div style="{faded}">{html.escape(part)}</div>')
            continue
        img, caption = part if isinstance(part, tuple) else (part, "")
        img = np.asarray(img)
        img = img if img.dtype == np.uint8 else to_grey(img)
        out.append(f'<img src="{png_uri(img)}" alt="{html.escape(caption)}" '
                   'style="width:100%;display:block">')
        if caption:
            out.append(f'<div style="{faded};text-align:center">{html.escape(caption)}</div>')
    return "<div>" + "".join(out) + "</div>"


def export_buttons(img: np.ndarray, file_stem: str, key: str, label: str = "Figure", **labels) -> None:
    """Two download buttons side by side, "<label> · PNG" and "· SVG", of a labelled export (made
    only on a click). Keep `label` short: the buttons share half a column."""
    import streamlit as st
    from functools import partial
    a, b = st.columns(2)
    a.download_button(f"{label} · PNG", partial(export_png, img, **labels), file_name=f"{file_stem}.png",
                      mime="image/png", key=f"{key}_png", on_click="ignore", icon=":material/download:",
                      help="Download, labelled for a slide")
    b.download_button(f"{label} · SVG", partial(export_svg, img, **labels), file_name=f"{file_stem}.svg",
                      mime="image/svg+xml", key=f"{key}_svg", on_click="ignore", icon=":material/download:",
                      help="Download, labelled for a slide; the labels stay editable text")


# ------------------------------------------------------------------ margins that plotly keeps

# Plotly lays a figure out with its base margins, then measures the tick labels, axis titles and
# legend; when they need more room it grows the margins and draws the whole figure a second time.
# The page sends a new layout on every rerun, so every chart on every move was drawn twice: about
# 100 ms of the browser's time per 2,000-dot map (measured with Chromium's profiler on Latent
# map). steady_margins sets base margins that already hold what plotly would push out, so it draws
# once; where the estimate falls short plotly still grows them (a correct figure, drawn twice).
# Pixel sizes are those of plotly's default 12-px font, measured on the app's charts.
_CHAR_PX = 6.6            # one character of a tick label
_TITLE_PX = 26            # a y-axis title beside its tick labels
_LEGEND_ROW_PX = 39       # a horizontal legend's row
_LEGEND_CHAR_PX = 5.5      # one character of a legend entry (letters run narrower than digits)
_LEGEND_V_PX = 62         # a vertical legend's symbol, padding and gap, before its text


# Trace types plotly leaves out of the legend unless asked (showlegend=True).
_NO_LEGEND = {"contour", "heatmap", "histogram2d", "histogram2dcontour", "image"}


def _numbers(values) -> np.ndarray:
    try:
        a = np.asarray(values, dtype=np.float64).ravel()
    except (TypeError, ValueError):
        return np.zeros(0)
    return a[np.isfinite(a)]


def _tick_label(v: float) -> str:
    """A tick value as plotly writes it by default (exponentformat "B": 12k, 1.5M)."""
    a = abs(v)
    for size, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if a >= 10 * size:
            return f"{v / size:g}{suffix}"
    return f"{v:g}"


def _auto_ticks(lo: float, hi: float, length_px: float) -> np.ndarray:
    """The ticks plotly picks on a linear y axis of length_px over [lo, hi] padded by 5 %: about
    clamp(length / 40, 4, 9) + 1 of them, steps of 1, 2 or 5 times a power of ten."""
    pad = 0.05 * max(hi - lo, abs(hi), 1e-12)
    return nice_ticks(lo - pad, hi + pad, count=min(max(length_px / 40, 4), 9) + 1, steps=(1, 2, 5, 10))


def _tick_chars(axis, values: list, length_px: float) -> int:
    """The characters of an axis's longest tick label: its ticktext or tickvals when set, its
    categories, or the ticks plotly would choose over its range or its data."""
    if axis.showticklabels is False or axis.visible is False:
        return 0
    if axis.ticktext is not None and len(axis.ticktext):
        return max(len(str(t)) for t in axis.ticktext)
    if axis.tickvals is not None and len(axis.tickvals):
        return max(len(v) if isinstance(v, str) else len(_tick_label(float(v))) for v in axis.tickvals)
    texts = []
    for vals in values:
        a = np.asarray(vals if vals is not None else [])
        if a.dtype.kind in "OUS":
            texts += [v for v in a.ravel() if isinstance(v, str)]
    if axis.type in ("category", "date") or texts:
        return max((len(t) for t in texts), default=10)
    nums = np.concatenate([_numbers(v) for v in values] + [np.zeros(0)])
    if axis.range is not None and None not in axis.range:
        lo, hi = (float(r) for r in axis.range)
        if axis.type == "log":
            lo, hi = 10.0 ** min(lo, 300), 10.0 ** min(hi, 300)
    elif nums.size:
        lo, hi = float(nums.min()), float(nums.max())
    else:
        return 1
    if axis.type == "log":
        lo, hi = max(lo, 1e-300), max(hi, 1e-300)
        ticks = 10.0 ** np.arange(np.floor(np.log10(lo)), np.ceil(np.log10(hi)) + 1)
    else:
        ticks = _auto_ticks(lo, hi, length_px)
    return max(len(_tick_label(float(t)).replace("-", "−")) for t in ticks)


def _steady(fig: go.Figure) -> tuple:
    """(margins (l, r, t, b), whether the legend moves to x = 1) that hold fig's labels."""
    lay = fig.layout
    props = set(lay)
    height = lay.height or 450
    m = lay.margin
    left, right = (m.l if m.l is not None else 80), (m.r if m.r is not None else 80)
    top, bottom = (m.t if m.t is not None else 100), (m.b if m.b is not None else 80)
    traces = list(fig.data)
    # The bottom edge first (the y axes' length depends on it): x tick labels and titles.
    x_axes = [lay[k] for k in props if k.startswith("xaxis")]
    bottom = max(bottom, 22)
    if any(a.showticklabels is not False and a.visible is not False for a in x_axes):
        bottom = max(bottom, 40)
    if any(a.title and a.title.text for a in x_axes):
        bottom = max(bottom, 70)
    # The legend: plotly shows one when two or more traces have an entry (or when asked to);
    # a trace without a name is listed as "trace N".
    names = [str(t.name) if t.name else f"trace {i}" for i, t in enumerate(traces)
             if t.showlegend is True or (t.showlegend is None and t.type not in _NO_LEGEND)]
    move_legend = False
    if lay.showlegend is not False and (len(names) >= 2 or (lay.showlegend and names)):
        legend = lay.legend
        if legend.orientation == "h" and legend.y is not None and legend.y < 0:
            # Placed |y| plot heights below the plot: solve b = |y| (height - top - b) + rows.
            # Rows: the entries laid out on a plot 420 px wide (a chart in a column at 1280 px).
            y = abs(float(legend.y))
            rows = 1 + int(sum(40 + _CHAR_PX * len(n) for n in names) // 420)
            bottom = max(bottom, int(np.ceil((y * (height - top) + _LEGEND_ROW_PX * rows + 2) / (1 + y))))
        elif legend.orientation != "h" and (legend.x is None or legend.x >= 1):
            # plotly puts the legend at x = 1.02, a gap that grows with the plot's width (20 px
            # more on a projector's full-width chart); at x = 1 its width alone decides.
            move_legend = legend.x is None
            right = max(right, int(np.ceil(_LEGEND_V_PX + _LEGEND_CHAR_PX * max(len(n) for n in names))))
    # The left edge: tick labels and titles of the y axes at the figure's left (not of panels
    # further right, nor of axes on the right side).
    for name in [k for k in props if k.startswith("yaxis")]:
        axis = lay[name]
        anchor = axis.anchor if axis.anchor and axis.anchor.startswith("x") else "x" + name[5:]
        x_axis = lay["xaxis" + anchor[1:]] if "xaxis" + anchor[1:] in props else None
        if axis.side == "right" or (x_axis is not None and x_axis.domain is not None and x_axis.domain[0] > 0.01):
            continue
        ref = "y" + name[5:]
        vals = [t.y for t in traces if (getattr(t, "yaxis", None) or "y") == ref and hasattr(t, "y")]
        chars = _tick_chars(axis, vals, height - top - bottom)
        title = _TITLE_PX if axis.title and axis.title.text else 0
        if chars or title:
            left = max(left, int(np.ceil(30 + title + _CHAR_PX * (chars + 0.5))))
    return (left, right, top, bottom), move_legend


def steady_margins(fig: go.Figure) -> go.Figure:
    """Raise fig's base margins to what its tick labels, axis titles and legend will take, so
    that plotly draws it once (see above). Margins already larger are kept; a figure whose
    margins already hold them is not touched (a shared figure is read by many sessions at once).
    An estimate that fails leaves the figure as it is (plotly then lays it out itself). Returns fig."""
    try:
        (left, right, top, bottom), move_legend = _steady(fig)
    except Exception:               # noqa: BLE001 - only speed is at stake: plotly still lays it out
        return fig
    m = fig.layout.margin
    if (m.l, m.r, m.t, m.b) != (left, right, top, bottom):
        fig.update_layout(margin=dict(l=left, r=right, t=top, b=bottom))
    if move_legend:
        fig.update_layout(legend=dict(x=1.0, xanchor="left"))
    return fig


def chart(fig: go.Figure, key: str, where=None, clickable: bool = False) -> None:
    """Draw fig under `key`, with steady margins and the app's toolbar (CONFIG), in `where` (a
    column or container; the page by default): explorer.charts.draw."""
    from explorer import charts  # noqa: PLC0415 - charts builds on this module
    charts.draw(fig, key, where, clickable)

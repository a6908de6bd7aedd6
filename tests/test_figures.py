"""The explorer's figure helpers: images round-trip through their PNG data URIs, repeated pixels
reuse one encoding, and the code maps carry what they claim."""
import base64
import io

import numpy as np
import plotly.graph_objects as go
from PIL import Image

from explorer import figures


def decode_uri(uri: str) -> np.ndarray:
    assert uri.startswith("data:image/png;base64,")
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))))


def test_png_uri_round_trips_and_is_reused_for_the_same_pixels():
    rng = np.random.default_rng(0)
    a = (rng.random((57, 43)) * 255).astype(np.uint8)
    uri = figures.png_uri(a)
    assert np.array_equal(decode_uri(uri), a)          # lossless, whatever the compression level
    assert figures.png_uri(a.copy()) is uri             # same pixels: the cached encoding
    b = a.copy()
    b[0, 0] ^= 1
    other = figures.png_uri(b)
    assert other != uri and np.array_equal(decode_uri(other), b)


def test_a_mosaic_on_the_page_shows_its_pixels_and_labels_where_its_ticks_say():
    import xml.etree.ElementTree as ET
    img = np.linspace(0, 1, 56 * 84, dtype=np.float32).reshape(56, 84)     # two rows of three 28-px cells
    ticks = figures.mosaic_ticks([-1.0, 0.0, 1.0], 28, pad=0)
    svg, width = figures.mosaic_svg(img, height=300, title="VAE: m", x_ticks=ticks,
                                    y_ticks=([13.5, 41.5], ["top", "bottom"]), x_title="z0", y_title="z1")
    root = ET.fromstring(svg)
    ns = "{http://www.w3.org/2000/svg}"
    assert float(root.get("height")) == 300 and abs(float(root.get("width")) - width) <= 1
    (pic,) = root.iter(ns + "image")
    assert np.array_equal(decode_uri(pic.get("href")), figures.to_grey(img))          # the pixels, unchanged
    x0, y0, w, h = (float(pic.get(k)) for k in ("x", "y", "width", "height"))
    assert abs(w / h - 84 / 56) < 1e-3                                                # square pixels
    scale = w / 84
    by_text = {t.text: t for t in root.iter(ns + "text")}
    assert by_text["z0"].get("class") == "x-title" and by_text["z1"].get("class") == "y-title"
    assert by_text["VAE: m"].get("class") == "title"
    # Each tick label sits at the centre of the cell it names.
    for pos, text in zip(*ticks):
        assert abs(float(by_text[text].get("x")) - (x0 + (pos + 0.5) * scale)) < 0.05
    assert abs(float(by_text["bottom"].get("y")) - (y0 + 42 * scale)) < 0.05
    assert float(by_text["bottom"].get("x")) < x0 < float(by_text["0"].get("x"))


def test_scatter_codes_has_one_trace_per_class_and_the_overlays():
    rng = np.random.default_rng(1)
    xy = rng.normal(size=(300, 2))
    labels = rng.integers(0, 3, 300)
    sigma = np.full((300, 2), 0.1)
    fig = figures.scatter_codes(xy, labels, ["a", "b", "c"], sigma=sigma, n_ellipses=20, prior=True,
                                rect=(-1, 1, -1, 1), path=np.zeros((5, 2)))
    names = [t.name for t in fig.data]
    assert {"a", "b", "c", "prior 1σ", "prior 2σ", "decoded grid", "path"} <= set(names)
    dots = [t for t in fig.data if t.name in ("a", "b", "c")]
    assert sum(len(t.x) for t in dots) == 300
    # Ellipses: 20 of them, 25 points each plus a gap, split over the classes of the first 20 codes.
    ellipses = [t for t in fig.data if t.showlegend is False and t.mode == "lines"]
    assert sum(len(t.x) for t in ellipses) == 20 * 26
    assert sum(int(np.isnan(np.asarray(t.x, dtype=float)).sum()) for t in ellipses) == 20
    assert fig.layout.yaxis.scaleanchor == "x"


def test_scatter_codes_as_a_picture_draws_every_dot_in_its_class_colour_where_it_lies():
    rng = np.random.default_rng(3)
    xy = np.concatenate([rng.normal(size=(100, 2)) * 0.3 + c for c in ((-4, 0), (4, 3), (0, -5))])
    labels = np.repeat([0, 1, 2], 100)
    fig = figures.scatter_codes(xy, labels, ["a", "b", "c"], prior=True, path=np.array([[-4, 0], [4, 3]]),
                                marker_size=3, picture=True)
    assert not [t for t in fig.data if t.type == "scattergl"]          # no WebGL to redraw
    legend = {t.name: t for t in fig.data if t.name in ("a", "b", "c")}
    assert set(legend) == {"a", "b", "c"} and all(t.x == (None,) for t in legend.values())
    assert fig.layout.legend.itemclick is False                         # a picture cannot hide a class
    (im,) = fig.layout.images
    x0, y1, w, h = im.x, im.y, im.sizex, im.sizey
    assert x0 < xy[:, 0].min() and x0 + w > xy[:, 0].max() and y1 > xy[:, 1].max() and y1 - h < xy[:, 1].min()
    assert x0 <= -2 and x0 + w >= 2                                     # the prior's 2σ circle fits in it too
    pic = decode_uri(im.source)
    assert pic.ndim == 3 and pic.shape[2] == 4
    rows, cols = pic.shape[:2]
    for c, centre in zip(range(3), ((-4, 0), (4, 3), (0, -5))):      # each cluster's centre has its colour
        px = int((centre[0] - x0) / w * cols)
        py = int((y1 - centre[1]) / h * rows)
        colour = "#{:02X}{:02X}{:02X}".format(*pic[py, px, :3])
        assert pic[py, px, 3] == 255 and colour == figures.class_colour(c).upper(), (c, colour)
    assert pic[0, 0, 3] == 0                                            # empty space stays transparent


def test_codes_thumbnail_puts_each_cluster_where_its_axes_say_and_leaves_out_what_is_beyond_them():
    centres = ((-3.0, 0.0), (3.0, 3.0), (0.0, -3.0))
    xy = np.concatenate([np.full((20, 2), c) for c in centres] + [np.full((20, 2), 9.0)])   # the last: outside
    labels = np.repeat([0, 1, 2, 3], 20)
    pic = figures.codes_thumbnail(xy, labels, reach=5, prior=True, size=360)
    assert pic.dtype == np.uint8 and pic.ndim == 3 and pic.shape[1] == 360
    colours = {"#{:02X}{:02X}{:02X}".format(*p) for p in pic.reshape(-1, 3)}
    assert figures.class_colour(3).upper() not in colours               # beyond ±5: not drawn
    # Find the plot box (the frame's grey) and check each centre's pixel has its class colour.
    frame = np.argwhere((pic == (0xD0, 0xD0, 0xD0)).all(axis=2))
    top, left = frame.min(0)
    bottom, right = frame.max(0)
    for c, (x, y) in enumerate(centres):
        px = int(round(left + (x + 5) / 10 * (right - left)))
        py = int(round(top + (5 - y) / 10 * (bottom - top)))
        assert "#{:02X}{:02X}{:02X}".format(*pic[py, px]) == figures.class_colour(c).upper(), c


def test_bar_kl_row_puts_every_model_on_one_y_axis_largest_first():
    fig = figures.bar_kl_row({"β=1": np.array([0.1, 3.0, 1.0]), "β=4": np.array([2.0, 0.0, 0.5])})
    bars = [t for t in fig.data if t.type == "bar"]
    assert [list(b.y) for b in bars] == [[3.0, 1.0, 0.1], [2.0, 0.5, 0.0]]
    assert [list(b.x) for b in bars] == [["z1", "z2", "z0"], ["z0", "z2", "z1"]]
    assert fig.layout.yaxis2.matches == "y" and fig.layout.yaxis2.showticklabels is False
    # Each model's bars on its own panel, titled by it; the y title on the first panel only.
    assert [(b.xaxis, b.yaxis) for b in bars] == [("x", "y"), ("x2", "y2")]
    assert [a.text for a in fig.layout.annotations] == ["β=1", "β=4"]
    assert fig.layout.yaxis.title.text == "nats" and not fig.layout.yaxis2.title.text
    assert fig.layout.xaxis.domain[1] < fig.layout.xaxis2.domain[0]


def test_the_versus_beta_figure_puts_each_metric_on_its_own_panel_against_beta():
    from explorer.training import versus_beta_figure
    rows = [{"name": "a", "beta": 4.0, "active_units": 6, "log_px": -110.0},
            {"name": "b", "beta": 1.0, "active_units": 15, "log_px": -100.0},
            {"name": "ae", "beta": None, "active_units": 20, "log_px": None}]
    fig = versus_beta_figure(rows, [("active_units", "Active units vs β", "dimensions in use"),
                                    ("log_px", "log p(x) vs β", "nats")])
    assert [(t.xaxis, t.yaxis) for t in fig.data] == [("x", "y"), ("x2", "y2")]
    assert [list(t.x) for t in fig.data] == [[1.0, 4.0], [1.0, 4.0]]       # VAEs only, by β
    assert [list(t.y) for t in fig.data] == [[15, 6], [-100.0, -110.0]]
    assert [a.text for a in fig.layout.annotations] == ["Active units vs β", "log p(x) vs β"]
    assert (fig.layout.yaxis.title.text, fig.layout.yaxis2.title.text) == ("dimensions in use", "nats")
    assert fig.layout.xaxis.type == fig.layout.xaxis2.type == "log"
    assert list(fig.layout.xaxis2.tickvals) == [1.0, 4.0]


def click_event(point: dict) -> dict:
    """A selection event as st.plotly_chart(on_select="rerun") returns it for one clicked point
    (the shape in Streamlit's PlotlySelectionState docs), read back through Streamlit's own
    deserialiser when it is importable."""
    import json
    event = {"selection": {"points": [point], "point_indices": [point.get("point_index", 0)],
                           "box": [], "lasso": []}}
    try:
        from streamlit.elements.plotly_chart import PlotlyChartSelectionSerde
    except ImportError:          # a Streamlit that moved it: the plain dict has the same shape
        return event
    return PlotlyChartSelectionSerde().deserialize(json.dumps(event))


def test_selected_index_reads_the_data_index_of_a_clicked_dot():
    rng = np.random.default_rng(2)
    labels = rng.integers(0, 3, 50)
    indices = np.arange(100, 150)
    fig = figures.scatter_codes(rng.normal(size=(50, 2)), labels, ["a", "b", "c"], indices=indices, prior=True)
    trace = next(t for t in fig.data if t.name == "b")
    k = 3                                           # the 4th dot of class "b"
    point = {"curve_number": 1, "point_number": k, "point_index": k, "x": float(trace.x[k]),
             "y": float(trace.y[k]), "customdata": int(trace.customdata[k]), "legendgroup": "class 1"}
    expected = int(indices[labels == 1][k])
    assert figures.selected_index(click_event(point)) == expected
    assert figures.selected_index(click_event({**point, "customdata": [expected]})) == expected
    assert figures.selected_index(click_event({**point, "customdata": float(expected)})) == expected


def test_selected_index_is_none_without_a_dot():
    assert figures.selected_index(None) is None
    assert figures.selected_index({"selection": {"points": [], "point_indices": [], "box": [], "lasso": []}}) is None
    # A click on the ring or a prior circle: a point, but no customdata.
    assert figures.selected_index(click_event({"curve_number": 4, "point_number": 0, "x": 1.0, "y": 0.0})) is None
    assert figures.selected_index(click_event({"curve_number": 4, "point_number": 0, "customdata": []})) is None


def test_an_export_carries_its_title_row_labels_and_axes_in_png_and_svg():
    import io
    import xml.etree.ElementTree as ET

    from PIL import Image
    img = np.zeros((58, 88), np.float32)
    labels = dict(title="VAE: mnist-d2-vae-b1", rows=([14, 43], ["VAE: a", "AE: b"]),
                  cols=([14, 43, 72], ["0", "1", "2"]), x_title="step", y_title="z1", scale=4)
    png = Image.open(io.BytesIO(figures.export_png(img, **labels))).convert("L")
    arr = np.asarray(png)
    assert arr.shape[0] > 58 * 4 and arr.shape[1] > 88 * 4           # margins around the mosaic
    assert (arr[:40] < 128).any()                                     # the title is drawn above it
    assert (arr[:, :40] < 128).any()                                  # row labels / axis title at the left
    svg = ET.fromstring(figures.export_svg(img, **labels))
    texts = [t.text for t in svg.iter("{http://www.w3.org/2000/svg}text")]
    assert set(texts) == {"VAE: mnist-d2-vae-b1", "VAE: a", "AE: b", "0", "1", "2", "step", "z1"}
    assert svg.find("{http://www.w3.org/2000/svg}image").get("href").startswith("data:image/png;base64,")


def test_nice_ticks_are_round_and_cover_the_range():
    np.testing.assert_allclose(figures.nice_ticks(101.2, 180.7, 4), [120, 140, 160, 180])
    np.testing.assert_allclose(figures.nice_ticks(0, 1, 5), [0, 0.2, 0.4, 0.6, 0.8, 1.0])
    np.testing.assert_allclose(figures.nice_ticks(1, 30), [10, 20, 30])
    assert len(figures.nice_ticks(5, 5)) >= 2                     # a flat line still gets an axis


def test_line_svg_puts_each_value_where_its_axes_say_and_leaves_gaps():
    import xml.etree.ElementTree as ET
    svg = figures.line_svg({"train": [200, 150, None, 120], "test": [210, 160, 130, 125]}, x=[1, 2, 3, 4],
                           title="Loss per epoch", x_title="epoch", y_title="nats / image")
    root = ET.fromstring(svg)
    ns = "{http://www.w3.org/2000/svg}"
    texts = [t.text for t in root.iter(ns + "text")]
    for label in ("Loss per epoch", "epoch", "nats / image", "train", "test"):
        assert label in texts
    lines = root.findall(ns + "polyline")
    train = [l for l in lines if l.get("stroke") == "#009E73"]
    test = [l for l in lines if l.get("stroke") == "#CC79A7"]
    dots = [c for c in root.iter(ns + "circle") if c.get("fill") == "#009E73"]
    # The missing epoch splits the train line: a line, then a lone value drawn as a dot.
    assert len(train) == 1 and len(dots) == 1 and len(test) == 1
    # Read the y axis back from its tick labels and gridlines, and check the test line's values.
    grid = [(float(l.get("y1")), float(t.text.replace(",", ""))) for l, t in
            zip([l for l in root.iter(ns + "line") if l.get("stroke") == "#e6e6e6"],
                [t for t in root.iter(ns + "text") if t.get("text-anchor") == "end"])]
    (p0, v0), (p1, v1) = grid[0], grid[-1]
    ys = [float(pt.split(",")[1]) for pt in test[0].get("points").split()]
    values = [v0 + (y - p0) * (v1 - v0) / (p1 - p0) for y in ys]
    np.testing.assert_allclose(values, [210, 160, 130, 125], atol=0.1)
    xs = [float(pt.split(",")[0]) for pt in test[0].get("points").split()]
    np.testing.assert_allclose(np.diff(xs), np.diff(xs)[0], atol=0.2)   # evenly spaced epochs
    assert np.diff(xs)[0] > 0


def test_a_thumbnails_prior_circles_stay_inside_its_box_when_the_axes_are_short():
    # Axes reaching ±1.5 cut the 2σ circle: what is cut must not spill over the margins.
    pic = figures.codes_thumbnail(np.zeros((1, 2)), np.array([0]), reach=1.5, prior=True, size=360)
    blank = figures.codes_thumbnail(np.zeros((0, 2)), np.zeros(0, int), reach=1.5, prior=False, size=360)
    left, bottom, top, right = 360 // 9, 360 // 14, 6, 10
    side = 360 - left - right
    changed = np.argwhere((pic.astype(int) - blank.astype(int)).any(axis=2))
    assert len(changed)                                              # the circles and the dot are drawn
    assert changed[:, 0].min() >= top and changed[:, 0].max() <= top + side
    assert changed[:, 1].min() >= left and changed[:, 1].max() <= left + side


def test_line_svg_never_writes_minus_zero():
    import re
    svg = figures.line_svg({"loss": [0, 0.5, 2.1, 0.4, 0.0]}, x=list(range(5)))
    labels = re.findall(r">(-?[0-9.,]+)</text>", svg)
    assert "0" in labels and "-0" not in labels


def test_line_svg_copes_with_what_a_history_may_hold():
    import xml.etree.ElementTree as ET
    ns = "{http://www.w3.org/2000/svg}"

    def x_labels(svg):
        return [t.text for t in ET.fromstring(svg).iter(ns + "text") if t.get("text-anchor") == "middle"
                and t.text not in ("epoch",)]

    # Three epochs: whole-number ticks only.
    three = figures.line_svg({"train": [3, 2, 1]}, x=[1, 2, 3], x_title="epoch")
    assert x_labels(three) == ["1", "2", "3"]
    # One epoch: a dot, since a line needs two points, and a whole-number tick.
    one = ET.fromstring(figures.line_svg({"train": [5.0], "test": [None]}, x=[1], x_title="epoch"))
    assert len(list(one.iter(ns + "circle"))) == 1 and not list(one.iter(ns + "polyline"))
    # No epochs recorded: the index stands in, and nothing raises.
    ET.fromstring(figures.line_svg({"train": [3, 2, 1]}, x=[None, None, None]))
    ET.fromstring(figures.line_svg({"train": []}, x=[]))


def test_steady_margins_make_room_for_ticks_titles_and_legend_and_keep_larger_margins():
    rng = np.random.default_rng(0)
    xy, labels = rng.normal(size=(200, 2)), rng.integers(0, 10, 200)
    short = figures.steady_margins(figures.scatter_codes(xy, labels, [str(c) for c in range(10)],
                                                         axis_titles=("z0", "z1")))
    long = figures.steady_margins(figures.scatter_codes(xy, labels, [f"class number {c}" for c in range(10)],
                                                        axis_titles=("z0", "z1")))
    assert long.layout.margin.r > short.layout.margin.r > 10          # a legend beside the plot
    assert short.layout.legend.x == 1 and short.layout.legend.xanchor == "left"
    assert short.layout.margin.l >= 56 and short.layout.margin.b >= 70   # y title + ticks, x title
    wide = figures.steady_margins(figures.scatter_codes(xy * 1000, labels, axis_titles=("z0", "z1")))
    assert wide.layout.margin.l > short.layout.margin.l                # "2000" is longer than "2"
    one = figures.steady_margins(go.Figure(go.Scatter(x=[1, 2], y=[3, 4], name="only"),
                                           layout=dict(margin=dict(l=10, r=10, t=10, b=10))))
    assert one.layout.margin.r == 10                                   # one trace: plotly shows no legend
    below = go.Figure([go.Scatter(x=[1, 2], y=[3, 4], name=n) for n in ("a", "b")],
                      layout=dict(height=300, margin=dict(l=10, r=10, t=10, b=10), legend=dict(orientation="h", y=-0.3)))
    assert figures.steady_margins(below).layout.margin.b > 40 and below.layout.margin.r == 10
    kept = go.Figure(go.Scatter(x=[1], y=[1]), layout=dict(margin=dict(l=200, r=10, t=10, b=10)))
    assert figures.steady_margins(kept).layout.margin.l == 200
    before = (short.layout.margin.to_plotly_json(), short.layout.legend.to_plotly_json())
    figures.steady_margins(short)
    assert (short.layout.margin.to_plotly_json(), short.layout.legend.to_plotly_json()) == before  # once is enough
    from plotly.subplots import make_subplots
    panels = make_subplots(1, 2)
    panels.add_trace(go.Scatter(x=[1, 2], y=[1, 2]), 1, 1)
    panels.add_trace(go.Scatter(x=[1, 2], y=[1e6, 2e6]), 1, 2)       # the right panel's ticks lie inside
    panels.update_layout(margin=dict(l=10, r=10, t=10, b=10), showlegend=False)
    assert figures.steady_margins(panels).layout.margin.l < 60
    odd = go.Figure(go.Scatter(x=["2026-01-01", "2026-02-01"], y=[1, 2]),
                    layout=dict(yaxis=dict(tickvals=np.array([0.5, 1.5]), range=[None, 3])))
    figures.steady_margins(odd)                                        # numpy tickvals, dates: no error


def test_a_vector_is_written_as_a_person_writes_it():
    assert figures.vector_text(np.array([2.0, -1.954])) == "(2.00, −1.95)"
    assert figures.vector_text([0.5], digits=1) == "(0.5)"


def test_a_card_keeps_its_parts_in_order_escapes_its_text_and_shows_each_pictures_pixels():
    import html.parser
    grey = np.linspace(0, 1, 12, dtype=np.float32).reshape(3, 4)          # float [0, 1]: made uint8
    colour = np.zeros((5, 6, 3), np.uint8)
    colour[..., 0] = 200
    card = figures.card_html("β=4 · d=2", "a<b>&c", [colour, "plain <i>text</i>", (grey, "under it")])

    class Parts(html.parser.HTMLParser):
        def __init__(self):
            super().__init__()
            self.seen = []

        def handle_starttag(self, tag, attrs):
            if tag == "img":
                self.seen.append(("img", dict(attrs)["src"]))
            if tag == "i":
                self.seen.append(("markup", tag))

        def handle_data(self, data):
            self.seen.append(("text", data))

    p = Parts()
    p.feed(card)
    assert [k for k, _ in p.seen] == ["text", "text", "img", "text", "img", "text"]   # no <i> got through
    assert [v for k, v in p.seen if k == "text"] == ["β=4 · d=2", "a<b>&c", "plain <i>text</i>", "under it"]
    pixels = [np.asarray(Image.open(io.BytesIO(base64.b64decode(v.split(",", 1)[1])))) for k, v in p.seen if k == "img"]
    assert np.array_equal(pixels[0], colour)
    assert np.array_equal(pixels[1], figures.to_grey(grey))


def test_panels_are_laid_out_where_make_subplots_puts_them():
    """panels_layout writes out what make_subplots(1, n) computes (it costs 20-40 ms a figure)."""
    from plotly.subplots import make_subplots
    for n, gap, shared in ((1, 0.02, True), (3, 0.06, False), (5, 0.02, True), (2, 0.12, False)):
        titles = [f"panel {i}" for i in range(n)]
        ref = make_subplots(rows=1, cols=n, subplot_titles=titles, horizontal_spacing=gap,
                            shared_yaxes=shared).layout
        ours = go.Figure(layout=figures.panels_layout(titles, gap, shared_y=shared)).layout
        for i in range(n):
            sfx = "" if i == 0 else str(i + 1)
            assert np.allclose(ours[f"xaxis{sfx}"].domain, ref[f"xaxis{sfx}"].domain)
            assert ours[f"xaxis{sfx}"].anchor == ref[f"xaxis{sfx}"].anchor
            assert ours[f"yaxis{sfx}"].anchor == ref[f"yaxis{sfx}"].anchor
            assert ours[f"yaxis{sfx}"].matches == ref[f"yaxis{sfx}"].matches
            assert ours[f"yaxis{sfx}"].showticklabels == ref[f"yaxis{sfx}"].showticklabels
        for a, b in zip(ours.annotations, ref.annotations, strict=True):
            assert (a.text, a.xanchor, a.yanchor, a.y) == (b.text, b.xanchor, b.yanchor, b.y)
            assert abs(a.x - b.x) < 1e-9

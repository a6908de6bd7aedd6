"""explorer/charts.py: the Latent map's own plotly component, its plotly.js and its fallback.
(A click in a real browser: tests/test_browser.py.)"""
import json
from pathlib import Path

import numpy as np
import plotly
import pytest
from streamlit import config

from explorer import figures, charts
from chart_support import chart_spec as plotly_spec
from test_app_explorer import run_page

PLOTLY_JS = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"


def a_map(shift: float = 0.0):
    rng = np.random.default_rng(0)
    xy = rng.normal(size=(50, 2)) + shift
    return figures.scatter_codes(xy, rng.integers(0, 10, 50), [str(i) for i in range(10)], title="m")


def test_plotly_js_is_copied_once_from_the_installed_plotly(tmp_path, monkeypatch):
    monkeypatch.setattr(charts, "STATIC_DIR", tmp_path / "static")
    assert charts.install_plotly_js()
    served = tmp_path / "static" / charts.PLOTLY_JS
    assert served.read_bytes() == PLOTLY_JS.read_bytes()
    assert plotly.__version__ in served.name          # a new plotly gets a new name, so browsers reload it
    mtime = served.stat().st_mtime_ns
    assert charts.install_plotly_js() and served.stat().st_mtime_ns == mtime    # not copied again
    assert not list((tmp_path / "static").glob("*.part"))


def test_a_static_folder_that_cannot_be_written_leaves_the_maps_to_st_plotly_chart(tmp_path, monkeypatch):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the folder should be")
    monkeypatch.setattr(charts, "STATIC_DIR", blocker / "static")
    assert charts.install_plotly_js() is False


def test_the_browser_moves_only_the_ring_when_nothing_else_changed():
    fig = a_map()
    plain = charts.figure_payload(fig)
    ringed = charts.figure_payload(a_map().add_shape(charts.ring(0.5, -0.5, "image 3")))
    assert ringed["base"] == plain["base"]            # same dots: a relayout of the shapes will do
    assert json.loads(ringed["figure"])["layout"]["shapes"][0]["name"] == "image 3"
    assert charts.figure_payload(a_map(shift=1.0))["base"] != plain["base"]    # new dots: redraw
    assert charts.figure_payload(a_map().update_layout(title="n"))["base"] != plain["base"]


def test_the_ring_is_a_fixed_size_circle_on_the_picked_code():
    ring = charts.ring(1.25, -2.0, "image 7")
    assert (ring["xanchor"], ring["yanchor"]) == (1.25, -2.0)
    assert ring["xsizemode"] == ring["ysizemode"] == "pixel" and ring["x1"] - ring["x0"] == 20


@pytest.mark.parametrize("static_serving", [True, False])
def test_the_latent_map_draws_its_maps_with_or_without_static_serving(app_env, static_serving):
    before = config.get_option("server.enableStaticServing")
    config.set_option("server.enableStaticServing", static_serving)
    try:
        at = run_page("app_pages/1_Latent_map.py")
        at.session_state["map_picked"] = 4
        at.run()
        kinds = {el.type for el in at.get("bidi_component") + at.get("plotly_chart")}
        assert kinds == ({"bidi_component"} if static_serving else {"plotly_chart"})
        for key in ("map_chart_VAE", "map_chart_AE"):
            spec = plotly_spec(at, key)
            assert [s["name"] for s in spec["layout"]["shapes"]] == ["image 4"]
            assert any(t.get("customdata") is not None for t in spec["data"])     # clickable dots
    finally:
        config.set_option("server.enableStaticServing", before)


def test_the_dots_go_to_the_canvas_and_their_classes_stay_in_the_legend():
    rng = np.random.default_rng(1)
    xy, labels = rng.normal(size=(300, 2)), rng.integers(0, 3, 300)
    labels[:3] = [0, 1, 2]
    fig = figures.scatter_codes(xy, labels, ["zero", "one", "two"], indices=np.arange(300) + 1000,
                                sigma=np.full((300, 2), 0.1), n_ellipses=20, prior=True)
    spec = json.loads(charts.figure_payload(fig)["figure"])
    dots = spec["dots"]
    # Every dot once, in data order, where scatter_codes put it, with its data index and class.
    assert dots["id"] == list(range(1000, 1300))
    assert np.allclose(dots["x"], xy[:, 0], atol=1e-5) and np.allclose(dots["y"], xy[:, 1], atol=1e-5)
    groups = dots["groups"]
    assert [groups[g]["label"] for g in dots["g"][:3]] == ["class zero, ", "class one, ", "class two, "]
    assert [groups[g]["colour"] for g in dots["g"]] == [figures.class_colour(c) for c in labels]
    # Each class keeps a legend entry, in its legend group (a click hides its dots and bubbles),
    # with no points of its own for plotly to draw.
    for k, g in enumerate(groups):
        trace = spec["data"][g["trace"]]
        assert trace["name"] == ["zero", "one", "two"][k] and trace["legendgroup"] == f"class {k}"
        assert trace["x"] == [None] and trace["showlegend"]
    assert sum(len(t.get("x") or []) for t in spec["data"] if t.get("customdata") is not None) == 0
    # One invisible trace spans the dots, so the axes still cover them; the backgrounds let the
    # canvas under them show; the bubbles and prior circles stay plotly's.
    extent = [t for t in spec["data"] if t.get("meta") == "dots extent"]
    assert len(extent) == 1 and extent[0]["marker"]["opacity"] == 0
    assert np.allclose(extent[0]["x"] + extent[0]["y"],
                       [xy[:, 0].min(), xy[:, 0].max(), xy[:, 1].min(), xy[:, 1].max()], atol=1e-6)
    assert spec["layout"]["plot_bgcolor"] == spec["layout"]["paper_bgcolor"] == "rgba(0,0,0,0)"
    assert {"prior 1σ", "prior 2σ"} <= {t.get("name") for t in spec["data"]}
    # The figure itself is not changed (cached figures are shared by sessions).
    assert sum(len(t.x) for t in fig.data if t.meta == "dots") == 300


def test_a_figure_without_dots_is_sent_as_it_is():
    fig = figures.line_chart({"a": [1.0, 2.0]}, title="t")
    spec = json.loads(charts.figure_payload(fig)["figure"])
    assert "dots" not in spec and "plot_bgcolor" not in spec["layout"]

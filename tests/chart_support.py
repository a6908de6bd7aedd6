"""The plotly figures an AppTest run drew: the app draws them with its own component
(explorer/charts.py), or with st.plotly_chart where static serving is off."""
import json

import numpy as np


def charts(at) -> list:
    """Every chart element of the run, both kinds."""
    return at.get("bidi_component") + at.get("plotly_chart")


def chart_keys(at) -> set:
    return {el.proto.id.rsplit("-", 1)[-1] for el in charts(at) if el.type == "plotly_chart"
            or json.loads(el.proto.json or "{}").get("figure")}


def with_dots(spec: dict) -> dict:
    """A component's figure with the dots its canvas draws (spec["dots"], explorer/charts.py) put
    back into their traces, in data order, and the invisible trace that holds their extent taken
    out: the figure as st.plotly_chart would draw it."""
    dots = spec.pop("dots", None)
    if dots is None:
        return spec
    g = np.asarray(dots["g"])
    for k, group in enumerate(dots["groups"]):
        trace = spec["data"][group["trace"]]
        trace["x"], trace["y"] = np.asarray(dots["x"])[g == k].tolist(), np.asarray(dots["y"])[g == k].tolist()
        trace["customdata"] = np.asarray(dots["id"])[g == k].tolist()
        trace.pop("hoverinfo", None)
    spec["data"] = [t for t in spec["data"] if t.get("meta") != "dots extent"]
    return spec


def chart_spec(at, key: str) -> dict:
    """The JSON figure drawn with `key` (its canvas's dots back in their traces: with_dots)."""
    for el in charts(at):
        if el.proto.id.endswith("-" + key):
            if el.type == "bidi_component":
                return with_dots(json.loads(json.loads(el.proto.json)["figure"]))
            return json.loads(el.proto.spec)
    raise AssertionError(f"no chart with key {key!r}; keys: {sorted(chart_keys(at))}")

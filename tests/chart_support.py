"""The plotly figures an AppTest run drew: the app draws them with its own component
(explorer/charts.py), or with st.plotly_chart where static serving is off."""
import json


def charts(at) -> list:
    """Every chart element of the run, both kinds."""
    return at.get("bidi_component") + at.get("plotly_chart")


def chart_keys(at) -> set:
    return {el.proto.id.rsplit("-", 1)[-1] for el in charts(at) if el.type == "plotly_chart"
            or json.loads(el.proto.json or "{}").get("figure")}


def chart_spec(at, key: str) -> dict:
    """The JSON figure drawn with `key`."""
    for el in charts(at):
        if el.proto.id.endswith("-" + key):
            if el.type == "bidi_component":
                return json.loads(json.loads(el.proto.json)["figure"])
            return json.loads(el.proto.spec)
    raise AssertionError(f"no chart with key {key!r}; keys: {sorted(chart_keys(at))}")

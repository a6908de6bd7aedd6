"""The explorer's figure helpers: images round-trip through their PNG data URIs, repeated pixels
reuse one encoding, and the code maps carry what they claim."""
import base64
import io

import numpy as np
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


def test_image_figure_shows_the_image_it_was_given():
    img = np.linspace(0, 1, 28 * 28, dtype=np.float32).reshape(28, 28)
    fig = figures.image_figure(img, title="t", x_title="z0", y_title="z1")
    shown = decode_uri(fig.data[0].source)
    assert np.array_equal(shown, figures.to_grey(img))
    assert fig.layout.xaxis.title.text == "z0" and fig.layout.yaxis.title.text == "z1"


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

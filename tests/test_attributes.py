"""Attributes measured on images and attribute vectors in latent space (vae_core.attributes)."""
from pathlib import Path

import numpy as np
import pytest

from vae_core import attributes as A
from vae_core.errors import DataError

CKPT = Path(__file__).resolve().parent.parent / "checkpoints"


def bar(width: int = 1, shear: float = 0.0, size: int = 28, length: int = 16) -> np.ndarray:
    """A vertical bar [1, 1, size, size] `width` pixels wide, its top moved `shear` pixels to the
    right per pixel of height above the centre (shear > 0 leans right, like "/")."""
    img = np.zeros((size, size), np.float32)
    top = (size - length) // 2
    for r in range(top, top + length):
        height = (size - 1) / 2 - r                  # above the centre: positive
        left = int(round(size / 2 + shear * height - width / 2))
        img[r, max(0, left):max(0, left) + width] = 1.0
    return img[None, None]


def test_a_thicker_stroke_has_more_ink():
    thin, thick = bar(width=1), bar(width=3)
    assert A.ink(thick)[0] == pytest.approx(3 * A.ink(thin)[0])
    assert A.ink(np.zeros((2, 1, 28, 28))).tolist() == [0.0, 0.0]
    # shapes: [N, C, H, W], [N, H, W] and one [H, W] all give one value per image
    assert A.ink(np.concatenate([thin, thick])).shape == (2,)
    assert A.ink(thick[:, 0]).shape == (1,) and A.ink(thick[0, 0]).shape == (1,)


def test_slant_has_the_sign_of_the_lean():
    upright, right, left = bar(width=2), bar(width=2, shear=0.4), bar(width=2, shear=-0.4)
    s = A.slant(np.concatenate([upright, right, left]))
    assert abs(s[0]) < 0.02
    assert s[1] == pytest.approx(0.4, abs=0.05)          # the shear μ11/μ02 is the lean itself
    assert s[2] == pytest.approx(-0.4, abs=0.05)
    # moving the bar does not change its slant; thickening it barely does
    moved = np.roll(right, (3, -4), axis=(2, 3))
    assert A.slant(moved)[0] == pytest.approx(s[1], abs=1e-6)
    assert A.slant(bar(width=4, shear=0.4))[0] == pytest.approx(s[1], abs=0.05)
    assert A.slant(np.zeros((1, 1, 28, 28)))[0] == 0.0


def test_attribute_vector_recovers_a_planted_direction():
    rng = np.random.default_rng(0)
    n, d = 4000, 12
    u = rng.normal(size=d)
    u /= np.linalg.norm(u)
    score = rng.normal(size=n)
    codes = rng.normal(size=(n, d)) + 2.0 * score[:, None] * u[None]
    v = A.attribute_vector(codes, score)
    assert v.shape == (d,)
    assert float(v @ u / np.linalg.norm(v)) > 0.97
    # the top quarter of a standard normal averages +1.27, the bottom -1.27: |v| ≈ 2 · 2 · 1.27
    assert np.linalg.norm(v) == pytest.approx(2 * 2 * 1.271, rel=0.1)
    # a score that has nothing to do with the codes gives a short vector of no direction
    noise = A.attribute_vector(codes, rng.normal(size=n))
    assert np.linalg.norm(noise) < 0.3 * np.linalg.norm(v)


def test_within_class_vector_is_not_confused_with_the_class():
    """Class 1 sits 5 units along w and its images score 3 higher (as 0s have more ink than 1s):
    pooled quarters mix "is a 1" into v; within-class quarters find u alone."""
    rng = np.random.default_rng(1)
    n, d = 4000, 10
    u, w = np.eye(d)[0], np.eye(d)[1]
    labels = rng.integers(0, 2, size=n)
    style = rng.normal(size=n)
    score = style + 3.0 * labels
    codes = rng.normal(scale=0.5, size=(n, d)) + style[:, None] * u + 5.0 * labels[:, None] * w
    pooled = A.attribute_vector(codes, score)
    within = A.attribute_vector(codes, score, labels=labels)
    cos = lambda a, b: float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))  # noqa: E731
    assert cos(pooled, w) > 0.8                # the pooled vector mostly says "a 1, not a 0"
    assert cos(within, u) > 0.97 and abs(cos(within, w)) < 0.1


def test_class_vector_is_the_difference_of_class_means():
    codes = np.array([[0.0, 0.0], [2.0, 0.0], [10.0, 4.0], [12.0, 6.0]])
    labels = np.array([3, 3, 7, 7])
    assert A.class_vector(codes, labels, 3, 7).tolist() == [10.0, 5.0]
    z = A.shift([1.0, 1.0], [10.0, 5.0], [0, 0.5, 1])
    assert z.tolist() == [[1.0, 1.0], [6.0, 3.5], [11.0, 6.0]]
    with pytest.raises(DataError):
        A.class_vector(codes, labels, 3, 5)


def test_attribute_vector_refuses_bad_input():
    with pytest.raises(DataError):
        A.attribute_vector(np.zeros((10, 3)), np.zeros(9))
    with pytest.raises(DataError):
        A.attribute_vector(np.zeros((10, 3)), np.zeros(10), frac=0.7)
    with pytest.raises(DataError):
        A.attribute_vector(np.zeros((2, 3)), np.zeros(2))


# ---------------------------------------------------------------- on the shipped 20-D pair

@pytest.fixture(scope="module")
def shipped():
    from vae_core.checkpoints import load_checkpoint
    from vae_core.data import load_exploration
    paths = {k: CKPT / f"{n}.safetensors" for k, n in (("VAE", "mnist-d20-vae-b1"), ("AE", "mnist-d20-ae"))}
    if not all(p.is_file() for p in paths.values()):
        pytest.skip("the shipped 20-D MNIST pair is not in checkpoints/")
    data = load_exploration("mnist", CKPT / "data")
    return {k: load_checkpoint(p) for k, p in paths.items()}, data


@pytest.mark.parametrize("label", ["VAE", "AE"])
def test_the_thickness_vector_thickens_the_decoded_digits(shipped, label):
    """v from the first 2,000 test codes (as the page computes it), applied to 300 other test codes.
    Measured: mean ink of the decoded digits at α = -1, 0, +1 is about 51, 98, 155 for
    the VAE and 47, 96, 157 for the AE: on this pair both models follow the vector on average."""
    from vae_core.latent import encode_data
    models, data = shipped
    model = models[label].model
    x, y = data.x[:2000].numpy(), data.y[:2000].numpy()
    mu, _ = encode_data(model, x)
    v = A.attribute_vector(mu, A.ink(x), labels=y)
    held, _ = encode_data(model, data.x[2000:2300].numpy())
    e = A.effect(model, held, v, [-1.0, 0.0, 1.0], A.ink)
    lo, mid, hi = e["mean"]
    assert hi > 1.3 * mid and lo < 0.75 * mid, e["mean"]


def test_the_slant_vector_slants_and_the_class_vector_changes_the_digit(shipped):
    from vae_core.latent import encode_data
    from vae_core.metrics import load_classifier
    models, data = shipped
    model = models["VAE"].model
    clf = load_classifier(CKPT / "classifiers" / "mnist-classifier.safetensors")
    x, y = data.x[:2000].numpy(), data.y[:2000].numpy()
    mu, _ = encode_data(model, x)
    v = A.attribute_vector(mu, A.slant(x), labels=y)
    held_x, held_y = data.x[2000:2300].numpy(), data.y[2000:2300].numpy()
    held, _ = encode_data(model, held_x)
    e = A.effect(model, held, v, [-1.0, 0.0, 1.0], A.slant, classifier=clf, target=held_y)
    assert e["mean"][0] < e["mean"][1] - 0.2 and e["mean"][2] > e["mean"][1] + 0.2, e["mean"]
    assert e["clear"][1] > 0.7                     # α = 0: the reconstructions are read as themselves
    # 7 -> 3: at α = 0 the held-out 7s are 7s; at α = 1.5 most are read as clear 3s
    sevens = held[held_y == 7]
    c = A.effect(model, sevens, A.class_vector(mu, y, 7, 3), [0.0, 1.5], A.ink, classifier=clf, target=3)
    assert c["clear"][0] < 0.05 and c["clear"][1] > 0.5, c["clear"]

"""Latent tools: encoding, grids over planes, interpolation, prior samples, traversals, mosaics."""
import numpy as np
import pytest
import torch

from vae_core import latent
from vae_core.config import ModelConfig
from vae_core.errors import ConfigError, DataError
from vae_core.models import build_model


def tiny(kind="vae", d=4):
    torch.manual_seed(0)
    return build_model(ModelConfig(kind=kind, image_shape=(1, 8, 8), latent_dim=d, hidden=(16,))).eval()


@pytest.mark.parametrize("kind", ["vae", "ae"])
def test_encode_data_shapes_and_inputs(digits, kind):
    model = tiny(kind)
    test = digits[1]
    mu, logvar = latent.encode_data(model, test, batch_size=64)
    assert mu.shape == (len(test), 4)
    assert (logvar is None) == (kind == "ae")
    if logvar is not None:
        assert logvar.shape == mu.shape
    with torch.no_grad():
        np.testing.assert_allclose(mu[:5], model.embed(test.x[:5]).numpy(), rtol=1e-5, atol=1e-6)
    # a numpy array without the channel axis gives the same codes
    mu2, _ = latent.encode_data(model, test.x[:, 0].numpy(), batch_size=1000)
    np.testing.assert_allclose(mu, mu2, rtol=1e-5, atol=1e-6)
    with pytest.raises(DataError, match="do not fit"):
        latent.encode_data(model, np.zeros((2, 28, 28), np.float32))


def test_mosaic_layout():
    images = np.arange(5 * 2 * 3, dtype=np.float32).reshape(5, 1, 2, 3)
    m = latent.mosaic(images, ncols=2, pad=1, pad_value=-1)
    assert m.shape == (3 * 2 + 2, 2 * 3 + 1)
    np.testing.assert_array_equal(m[0:2, 0:3], images[0, 0])
    np.testing.assert_array_equal(m[0:2, 4:7], images[1, 0])
    np.testing.assert_array_equal(m[6:8, 0:3], images[4, 0])
    assert (m[6:8, 4:7] == -1).all()          # the missing sixth cell
    assert (m[2, :] == -1).all()              # a padding row


@pytest.mark.parametrize("plane", ["dims", "pca"])
@pytest.mark.parametrize("span", ["prior", "data"])
@pytest.mark.parametrize("d", [2, 5])
def test_grid_shapes_and_coordinates(digits, plane, span, d):
    model = tiny("vae", d)
    codes, _ = latent.encode_data(model, digits[1])
    g = latent.latent_grid(model, codes, n=6, plane=plane, dims=(1, 0), span=span)
    assert g.image.shape == (6 * 8, 6 * 8)
    assert g.image.min() >= 0 and g.image.max() <= 1
    assert g.z.shape == (36, d) and g.uv.shape == (36, 2)
    np.testing.assert_allclose(g.basis @ g.basis.T, np.eye(2), atol=1e-9)
    np.testing.assert_allclose(g.z, g.origin + g.uv @ g.basis, atol=1e-5)
    # the top-left tile is the decoded first code, the mosaic is what the decoder gives
    np.testing.assert_allclose(g.image[:8, :8], latent.decode(model, g.z[:1])[0, 0], atol=1e-6)
    assert g.uv[0, 1] == g.v.max() and g.uv[0, 0] == g.u.min()   # v points up
    if d == 2:
        np.testing.assert_array_equal(g.basis, np.eye(2))     # identity plane, whatever was asked
        np.testing.assert_array_equal(g.origin, 0)
    if span == "prior":
        np.testing.assert_allclose([g.u[0], g.u[-1]], [-1.6448536, 1.6448536], atol=1e-6)
    else:
        proj = (codes - g.origin) @ g.basis.T
        np.testing.assert_allclose([g.u[0], g.u[-1]], np.percentile(proj[:, 0], [5, 95]), rtol=1e-5)


def test_dims_plane_holds_other_dimensions_at_the_data_mean(digits):
    model = tiny("vae", 5)
    codes, _ = latent.encode_data(model, digits[1])
    g = latent.latent_grid(model, codes, n=3, plane="dims", dims=(3, 1))
    others = [0, 2, 4]
    np.testing.assert_allclose(g.z[:, others], np.broadcast_to(codes.mean(0)[others], (9, 3)), rtol=1e-5)
    np.testing.assert_allclose(np.unique(g.z[:, 3]), g.u, rtol=1e-5)
    with pytest.raises(ConfigError):
        latent.latent_grid(model, codes, plane="dims", dims=(2, 2))
    with pytest.raises(ConfigError):
        latent.latent_grid(model, codes, plane="tsne")


def test_pca_plane_spans_the_main_variation():
    rng = np.random.default_rng(0)
    codes = rng.normal(size=(500, 4)) * np.array([0.1, 5.0, 0.1, 2.0]) + 3.0
    origin, basis, _ = latent.latent_plane(codes, "pca")
    np.testing.assert_allclose(origin, codes.mean(0))
    assert abs(basis[0, 1]) > 0.99 and abs(basis[1, 3]) > 0.99


def test_slerp_endpoints_and_unit_norm():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=8), rng.normal(size=8)
    a, b = a / np.linalg.norm(a), b / np.linalg.norm(b)
    path = latent.slerp(a, b, np.linspace(0, 1, 11))
    np.testing.assert_allclose(path[0], a, atol=1e-12)
    np.testing.assert_allclose(path[-1], b, atol=1e-12)
    np.testing.assert_allclose(np.linalg.norm(path, axis=1), 1.0, atol=1e-12)
    mid_lerp = latent.lerp(a, b, 0.5)
    assert np.linalg.norm(mid_lerp) < 1 - 1e-3            # lerp cuts inside the sphere; slerp does not
    # parallel and zero vectors fall back to lerp instead of dividing by sin 0
    np.testing.assert_allclose(latent.slerp(a, 3 * a, 0.5), 2 * a)
    np.testing.assert_allclose(latent.slerp(np.zeros(8), b, 0.25), 0.25 * b)
    assert np.isfinite(latent.slerp(a, -a, np.linspace(0, 1, 5))).all()


@pytest.mark.parametrize("method", ["lerp", "slerp"])
def test_interpolation_endpoints_decode_to_the_endpoint_images(method):
    model = tiny("vae", 4)
    codes = np.array([[-2.0, 1.0, 0.5, -1.0], [1.5, -1.0, 2.0, 1.0]], np.float32)
    path = latent.interpolate(codes[0], codes[1], steps=7, method=method)
    assert path.shape == (7, 4)
    images = latent.decode(model, path)
    ends = latent.decode(model, codes)
    np.testing.assert_allclose(images[[0, -1]], ends, atol=1e-5)
    assert not np.allclose(images[3], ends[0], atol=1e-3)   # the middle is neither end
    with pytest.raises(ConfigError):
        latent.interpolate(codes[0], codes[1], steps=5, method="cubic")


def test_prior_samples_are_seeded_and_scaled():
    model = tiny("vae", 4)
    z, images = latent.prior_samples(model, n=400, seed=3, temperature=0.5)
    assert z.shape == (400, 4) and images.shape == (400, 1, 8, 8)
    assert images.min() >= 0 and images.max() <= 1
    assert abs(z.std() - 0.5) < 0.05
    z2, images2 = latent.prior_samples(model, n=400, seed=3, temperature=0.5)
    np.testing.assert_array_equal(images, images2)
    assert not np.array_equal(z, latent.prior_samples(model, n=400, seed=4)[0])


def test_traverse_changes_only_one_dimension(monkeypatch):
    model = tiny("ae", 3)
    seen = []
    real = latent.decode
    monkeypatch.setattr(latent, "decode", lambda m, z: seen.append(np.array(z)) or real(m, z))
    images = latent.traverse(model, [0.5, -1.0, 2.0], dim=1, values=[-2, 0, 2])
    assert images.shape == (3, 1, 8, 8)
    np.testing.assert_allclose(seen[0], [[0.5, -2, 2], [0.5, 0, 2], [0.5, 2, 2]])
    grid = latent.traversal_grid(model, [0, 0, 0], dims=[0, 2], values=np.linspace(-1, 1, 4))
    assert grid.shape == (2 * 8, 4 * 8)
    with pytest.raises(ConfigError):
        latent.traverse(model, [0, 0, 0], dim=3, values=[0])


def test_class_direction():
    codes = np.array([[0, 0], [2, 0], [10, 4], [12, 6]], np.float32)
    labels = np.array([1, 1, 7, 7])
    np.testing.assert_allclose(latent.class_direction(codes, labels, 1, 7), [10, 5])
    with pytest.raises(DataError, match="class 3"):
        latent.class_direction(codes, labels, 1, 3)

"""Model shapes over kinds, architectures, latent and image sizes; config validation;
the reparameterisation lets gradients reach the encoder."""
import math

import pytest
import torch

from vae_core import AE, MODELS, VAE, ConfigError, ForwardOutput, ModelConfig, TrainConfig, build_model
from vae_core.losses import loss_terms

KINDS = ["ae", "vae"]
ARCHS = ["mlp", "conv"]
LATENTS = [1, 2, 20, 256]
SHAPES = [(1, 8, 8), (1, 28, 28), (1, 13, 17)]

pytestmark = pytest.mark.usefixtures("one_thread")


def tiny(kind="vae", arch="mlp", latent=2, shape=(1, 8, 8), **kw):
    # Small widths keep 48 parametrized builds well under a second each.
    kw.setdefault("hidden", (32,))
    kw.setdefault("channels", (4, 8))
    return ModelConfig(kind=kind, arch=arch, latent_dim=latent, image_shape=shape, **kw)


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"{s[1]}x{s[2]}")
@pytest.mark.parametrize("latent", LATENTS)
@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("kind", KINDS)
def test_shapes(kind, arch, latent, shape):
    torch.manual_seed(0)
    model = build_model(tiny(kind, arch, latent, shape))
    assert isinstance(model, MODELS[kind])
    assert model.latent_dim == latent
    for b in (1, 3):
        x = torch.rand(b, *shape)
        mu, logvar = model.encode(x)
        assert mu.shape == (b, latent)
        if kind == "vae":
            assert logvar.shape == (b, latent)
        else:
            assert logvar is None

        logits = model.decode(torch.randn(b, latent))
        assert logits.shape == (b, *shape)

        out = model(x)
        assert isinstance(out, ForwardOutput)
        assert out.logits.shape == (b, *shape)
        assert out.mu.shape == (b, latent) and out.z.shape == (b, latent)
        if kind == "vae":
            assert out.logvar.shape == (b, latent)
        else:
            assert out.logvar is None
            assert torch.equal(out.z, out.mu)
        assert torch.isfinite(out.logits).all()

        # Large codes push logits far out; the image must still be a valid one.
        img = model.decode_image(torch.randn(b, latent) * 50)
        assert img.shape == (b, *shape)
        assert img.min() >= 0 and img.max() <= 1
        assert not img.requires_grad

        emb = model.embed(x)
        assert emb.shape == (b, latent)
        assert not emb.requires_grad
        assert torch.allclose(emb, mu.detach())


@pytest.mark.parametrize("shape", [(1, 8, 8), (1, 13, 17), (3, 9, 31), (1, 64, 64)])
def test_conv_restores_odd_and_colour_sizes(shape):
    model = build_model(tiny("vae", "conv", 3, shape, channels=(4, 8, 16)))
    x = torch.rand(2, *shape)
    assert model(x).logits.shape == (2, *shape)


def test_vae_without_sampling_decodes_the_mean():
    torch.manual_seed(0)
    model = build_model(tiny("vae"))
    x = torch.rand(4, 1, 8, 8)
    out = model(x, sample=False)
    assert torch.equal(out.z, out.mu)
    assert torch.allclose(out.logits, model.decode(out.mu))


def test_registry_and_learned_variance_parameter():
    assert MODELS == {"vae": VAE, "ae": AE}
    m = build_model(tiny("ae", likelihood="gaussian_learned", shape=(1, 13, 17)))
    assert isinstance(m, AE)
    assert m.x_logvar.shape == (1, 13, 17) and m.x_logvar.requires_grad
    assert build_model(tiny("vae")).x_logvar is None


# ---------------------------------------------------------------- reparameterisation

def test_gradients_reach_the_encoder_through_the_sample():
    torch.manual_seed(0)
    model = build_model(tiny("vae", "conv", 4, (1, 13, 17)))
    x = torch.rand(5, 1, 13, 17)
    out = model(x)
    loss_terms(model, out, x, beta=1.0).loss.backward()
    enc = list(model.encoder.parameters()) + list(model.head.parameters())
    assert enc
    for p in enc:
        assert p.grad is not None and torch.isfinite(p.grad).all()
        assert p.grad.abs().sum() > 0


def test_gradient_reaches_logvar_only_through_the_sample():
    # With beta = 0 the loss sees logvar only through z = mu + eps * sigma: a non-zero
    # gradient on logvar proves the sample is differentiable.
    torch.manual_seed(0)
    model = build_model(tiny("vae"))
    x = torch.rand(5, 1, 8, 8)
    mu, logvar = model.encode(x)
    logvar.retain_grad()
    z = model.reparameterize(mu, logvar)
    torch.nn.functional.binary_cross_entropy_with_logits(model.decode(z), x).backward()
    assert logvar.grad is not None and logvar.grad.abs().sum() > 0


def test_sample_is_random_but_mean_is_not():
    torch.manual_seed(0)
    model = build_model(tiny("vae", latent=8))
    x = torch.rand(3, 1, 8, 8)
    a, b = model(x), model(x)
    assert torch.equal(a.mu, b.mu) and torch.equal(a.logvar, b.logvar)
    assert not torch.equal(a.z, b.z)
    # AE codes are deterministic.
    ae = build_model(tiny("ae", latent=8))
    assert torch.equal(ae(x).z, ae(x).z)


def test_reparameterize_has_the_right_moments():
    torch.manual_seed(0)
    mu = torch.full((200_000, 1), 1.5)
    logvar = torch.full((200_000, 1), math.log(0.25))
    z = VAE.reparameterize(mu, logvar)
    assert abs(z.mean().item() - 1.5) < 0.01
    assert abs(z.std().item() - 0.5) < 0.01


# ---------------------------------------------------------------- config validation

@pytest.mark.parametrize("kwargs, named", [
    (dict(latent_dim=0), "0"),
    (dict(latent_dim=257), "257"),
    (dict(latent_dim=2.5), "2.5"),
    (dict(arch="transformer"), "transformer"),
    (dict(kind="gan"), "gan"),
    (dict(likelihood="poisson"), "poisson"),
    (dict(hidden=()), "()"),
    (dict(hidden=(0,)), "(0,)"),
    (dict(hidden=(64, -3)), "-3"),
    (dict(hidden=("wide",)), "wide"),
    (dict(hidden=None), "None"),
    (dict(channels=(0, 8), arch="conv"), "(0, 8)"),
    (dict(image_shape=(28, 28)), "(28, 28)"),
    (dict(image_shape=(1, 4, 4), arch="conv"), "4x4"),
    (dict(gaussian_sigma=0.0), "0.0"),
])
def test_model_config_refuses_bad_values(kwargs, named):
    with pytest.raises(ConfigError) as e:
        ModelConfig(**kwargs)
    assert named in str(e.value)


@pytest.mark.parametrize("kwargs, named", [
    (dict(beta=-1.0), "-1.0"),
    (dict(lr=-0.001), "-0.001"),
    (dict(lr=0.0), "0.0"),
    (dict(lr=float("nan")), "nan"),
    (dict(epochs=0), "0"),
    (dict(epochs=2.5), "2.5"),
    (dict(batch_size=0), "0"),
    (dict(warmup_epochs=-1.0), "-1.0"),
    (dict(free_bits=-0.5), "-0.5"),
    (dict(lr_decay=1.5), "1.5"),
    (dict(lr_decay=0.0), "0.0"),
    (dict(device="tpu"), "tpu"),
])
def test_train_config_refuses_bad_values(kwargs, named):
    with pytest.raises(ConfigError) as e:
        TrainConfig(**kwargs)
    msg = str(e.value)
    assert named in msg
    assert "use" in msg   # the message says what to do instead


def test_config_errors_are_value_errors():
    with pytest.raises(ValueError):
        ModelConfig(latent_dim=0)


def test_configs_round_trip_through_dicts():
    cfg = tiny("ae", "conv", 7, (1, 13, 17), likelihood="gaussian", gaussian_sigma=0.2)
    again = ModelConfig.from_dict(cfg.to_dict())
    assert again == cfg
    assert isinstance(again.image_shape, tuple)
    # Lists (as JSON gives them) become tuples.
    d = cfg.to_dict()
    d["image_shape"] = list(d["image_shape"])
    assert ModelConfig.from_dict(d) == cfg
    with pytest.raises(ConfigError, match="bogus"):
        ModelConfig.from_dict({**cfg.to_dict(), "bogus": 1})
    tc = TrainConfig(dataset="digits", epochs=3, beta=4.0, warmup_epochs=1.5)
    assert TrainConfig.from_dict(tc.to_dict()) == tc


def test_numpy_numbers_are_accepted_and_stored_as_python_numbers():
    import json

    import numpy as np
    mc = ModelConfig(latent_dim=np.int64(3), image_shape=(np.int64(1), 8, 8), hidden=np.array([16, 8]),
                     gaussian_sigma=np.float32(0.25))
    tc = TrainConfig(epochs=np.int64(2), seed=np.int64(7), max_train=np.int32(100), beta=np.float32(4.0))
    assert (mc.latent_dim, mc.hidden, tc.seed, tc.beta) == (3, (16, 8), 7, 4.0)
    assert type(mc.latent_dim) is int and type(tc.seed) is int and type(tc.beta) is float
    json.dumps(mc.to_dict()), json.dumps(tc.to_dict())   # a checkpoint can hold them
    with pytest.raises(ConfigError, match="257"):
        ModelConfig(latent_dim=np.int64(257))

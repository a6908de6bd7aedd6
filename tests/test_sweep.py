"""The sweep trains an AE and one VAE per beta and saves each under a predictable name."""
import dataclasses

import pytest
import torch
from safetensors import safe_open

from vae_core import ModelConfig, TrainConfig
from vae_core.checkpoints import load_checkpoint, read_info
from vae_core.sweep import run_name, sweep

pytestmark = pytest.mark.usefixtures("one_thread")


def configs(**kw):
    # image_shape is deliberately wrong: the sweep takes it from the data.
    model = ModelConfig(kind="vae", arch="mlp", image_shape=(1, 28, 28), latent_dim=2, hidden=(16,))
    train = TrainConfig(dataset="digits", epochs=1, batch_size=64, max_train=128, seed=5, device="cpu", **kw)
    return model, train


def test_run_names():
    assert run_name("mnist", "ae", 0.0) == "mnist-ae"
    assert run_name("mnist", "vae", 1.0) == "mnist-vae-b1"
    assert run_name("mnist", "vae", 0.5) == "mnist-vae-b0.5"


def test_sweep_writes_an_ae_and_one_vae_per_beta(tmp_path):
    model_cfg, train_cfg = configs(warmup_epochs=0.5)
    seen = []
    paths = sweep(model_cfg, train_cfg, [1, 4.0], tmp_path, "dg",
                  on_model=lambda name, i, n: seen.append((name, i, n)))
    names = ["dg-ae", "dg-vae-b1", "dg-vae-b4"]
    assert [p.name for p in paths] == [n + ".safetensors" for n in names]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in paths)
    assert seen == [(n, i, 3) for i, n in enumerate(names)]
    for path, kind, beta in zip(paths, ["ae", "vae", "vae"], [0.0, 1.0, 4.0]):
        info = read_info(path)
        mc, tc = info["model_config"], info["train_config"]
        assert mc.kind == kind and mc.image_shape == (1, 8, 8)
        assert (mc.latent_dim, mc.hidden, mc.arch) == (2, (16,), "mlp")
        assert tc.beta == beta
        assert (tc.seed, tc.epochs, tc.warmup_epochs, tc.dataset) == (5, 1, 0.5, "digits")
        assert info["dataset"] == "digits"
        # The one evaluation policy: the cheap metrics at the run's own β, no importance sampling.
        assert info["metrics"]["beta"] == (beta if kind == "vae" else 1.0) and info["metrics"]["log_px"] is None
        assert {"loss", "recon", "kl", "active_units"} <= set(info["metrics"])
        assert info["run"]["kind"] == kind and info["run"]["beta"] == beta and info["run"]["owner"] == "cli"
        assert len(info["history"]) == 1 and info["history"][0]["images"] == 128
        with safe_open(str(path), framework="pt") as f:   # half precision by default
            assert {f.get_tensor(k).dtype for k in f.keys()} == {torch.float16}
        assert info["run"]["group"] == read_info(paths[0])["run"]["group"]   # one run group
        ck = load_checkpoint(path)
        assert ck.model.cfg.kind == kind
        assert ck.model.decode_image(torch.zeros(1, 2)).shape == (1, 1, 8, 8)
    # The VAEs at different beta learned different weights from the same start.
    a, b = (load_checkpoint(p).model.state_dict() for p in paths[1:])
    assert any(not torch.equal(a[k], b[k]) for k in a)


def test_sweep_without_ae_in_full_precision(tmp_path):
    model_cfg, train_cfg = configs()
    paths = sweep(model_cfg, train_cfg, [0.5], tmp_path, "only", include_ae=False, half=False)
    assert [p.name for p in paths] == ["only-vae-b0.5.safetensors"]
    with safe_open(str(paths[0]), framework="pt") as f:
        assert {f.get_tensor(k).dtype for k in f.keys()} == {torch.float32}


def test_sweep_stops_after_the_model_in_progress(tmp_path):
    model_cfg, train_cfg = configs()
    calls = []

    def stop():
        calls.append(1)
        return len(calls) >= 1

    paths = sweep(model_cfg, train_cfg, [1, 2, 3], tmp_path, "halt", should_stop=stop)
    # The stopped model is still saved (with its partial history); the rest are not trained.
    assert [p.name for p in paths] == ["halt-ae.safetensors"]
    assert [p.name for p in tmp_path.iterdir()] == ["halt-ae.safetensors"]
    info = read_info(paths[0])
    assert info["history"][0]["images"] == 64


def test_sweep_repeats_under_its_seed(tmp_path):
    model_cfg, train_cfg = configs()
    runs = []
    for i, folder in enumerate([tmp_path / "a", tmp_path / "b"]):
        torch.manual_seed(1000 + i)   # a different global RNG state before each sweep
        torch.rand(17)
        paths = sweep(model_cfg, train_cfg, [2], folder, "rep", half=False)
        ckpts = [load_checkpoint(p) for p in paths]
        runs.append(([c.model.state_dict() for c in ckpts],
                     [[{k: v for k, v in r.items() if k != "seconds"} for r in c.history] for c in ckpts]))
    (sa, ha), (sb, hb) = runs
    assert ha == hb
    for a, b in zip(sa, sb):
        assert all(torch.equal(a[k], b[k]) for k in a)


def test_sweep_refuses_existing_names_before_training(tmp_path):
    from vae_core.errors import CheckpointError
    model_cfg, train_cfg = configs()
    (tmp_path / "dup-vae-b2.safetensors").write_bytes(b"an earlier model")
    trained = []
    with pytest.raises(CheckpointError, match="dup-vae-b2.*--overwrite"):
        sweep(model_cfg, train_cfg, [1, 2], tmp_path, "dup", on_model=lambda *a: trained.append(a))
    assert trained == []   # refused before the first model trained
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dup-vae-b2.safetensors"]
    assert (tmp_path / "dup-vae-b2.safetensors").read_bytes() == b"an earlier model"
    paths = sweep(model_cfg, train_cfg, [2], tmp_path, "dup", include_ae=False, half=False, overwrite=True)
    assert load_checkpoint(paths[0]).train_config.beta == 2.0


def test_a_diverging_beta_is_skipped_and_reported(tmp_path):
    from vae_core import TrainingDiverged
    model_cfg, train_cfg = configs()
    train_cfg = dataclasses.replace(train_cfg, lr=1e6)
    failed = []
    paths = sweep(model_cfg, train_cfg, [1], tmp_path, "boom",
                  on_diverged=lambda name, e: failed.append((name, str(e))))
    assert paths == [] and list(tmp_path.iterdir()) == []
    assert [n for n, _ in failed] == ["boom-ae", "boom-vae-b1"]
    assert all("Lower the learning rate" in msg for _, msg in failed)
    with pytest.raises(TrainingDiverged):   # without a handler the error is the caller's
        sweep(model_cfg, train_cfg, [1], tmp_path, "boom", include_ae=False)

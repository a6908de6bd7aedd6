"""The training loop's behaviour on the 8x8 digits with tiny models: it learns, it repeats
itself under a seed, it reports and stops when asked, and it survives divergence."""
import copy

import pytest
import torch

from vae_core import ModelConfig, TrainConfig, TrainingDiverged, build_model
from vae_core.data import ImageData
from vae_core.train import Progress, beta_at, binarized, evaluate_terms, fit

pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_model(kind="vae", seed=0, **kw):
    torch.manual_seed(seed)
    kw.setdefault("hidden", (32,))
    return build_model(ModelConfig(kind=kind, image_shape=(1, 8, 8), latent_dim=kw.pop("latent_dim", 2), **kw))


def cfg(**kw):
    kw.setdefault("dataset", "digits")
    kw.setdefault("epochs", 1)
    kw.setdefault("batch_size", 64)
    kw.setdefault("max_train", 256)
    kw.setdefault("device", "cpu")
    return TrainConfig(**kw)


def state(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def same_state(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def finite(model):
    return all(torch.isfinite(p).all() for p in model.parameters())


@pytest.mark.parametrize("kind", ["ae", "vae"])
def test_one_step_changes_every_weight(digits, kind):
    train, _ = digits
    model = tiny_model(kind)
    before = state(model)
    steps = []
    fit(model, train, None, cfg(max_train=64, batch_size=64), callback=lambda p: steps.append(p.kind))
    assert steps == ["batch", "epoch"]   # exactly one optimiser step
    after = state(model)
    for k in before:
        assert not torch.equal(before[k], after[k]), f"{k} did not change"
    assert not model.training   # fit leaves the model in eval mode


@pytest.mark.parametrize("kind", ["ae", "vae"])
def test_same_seed_gives_the_same_losses_exactly(digits, kind):
    train, test = digits
    runs = []
    for _ in range(2):
        model = tiny_model(kind, seed=3)
        result = fit(model, train, test.subset(100), cfg(epochs=2, seed=7, binarize=True))
        runs.append(([{k: v for k, v in r.items() if k != "seconds"} for r in result.history], state(model)))
    assert runs[0][0] == runs[1][0]
    assert same_state(runs[0][1], runs[1][1])
    # A different seed gives a different run, so the equality above is not vacuous.
    model = tiny_model(kind, seed=3)
    other = fit(model, train, None, cfg(epochs=2, seed=8, binarize=True))
    assert other.history[-1]["train_loss"] != runs[0][0][-1]["train_loss"]


@pytest.mark.parametrize("kind", ["ae", "vae"])
def test_tiny_model_overfits_a_tiny_batch(digits, kind):
    train, _ = digits
    # Binary pixels, so a perfect reconstruction costs 0 nats and the floor is far below the start.
    batch = ImageData((train.x[:16] > 0.5).float(), train.y[:16], "digits")
    model = tiny_model(kind, latent_dim=8, hidden=(64,))
    losses = []
    result = fit(model, batch, None, cfg(epochs=150, batch_size=16, max_train=0, lr=1e-2, beta=0.01),
                 callback=lambda p: losses.append(p.loss) if p.kind == "batch" else None)
    first, last = losses[0], result.history[-1]["train_recon"]
    assert first > 30          # 64 pixels at about log 2 nats each
    assert last < 0.02 * first, (first, last)


def test_history_records_and_test_metrics(digits):
    train, test = digits
    result = fit(tiny_model(), train, test.subset(50), cfg(epochs=2, beta=2.0))
    assert [r["epoch"] for r in result.history] == [1, 2]
    r = result.history[-1]
    assert r["images"] == 256
    for key in ("train_loss", "train_recon", "train_kl", "test_loss", "test_recon", "test_kl", "seconds"):
        assert key in r and r[key] == r[key]   # present and not NaN
    assert r["train_loss"] == pytest.approx(r["train_recon"] + 2.0 * r["train_kl"], rel=1e-5)
    assert r["test_loss"] == pytest.approx(r["test_recon"] + 2.0 * r["test_kl"], rel=1e-5)
    assert result.stopped is False and result.seconds > 0
    assert "test_loss" not in fit(tiny_model(), train, None, cfg()).history[0]


def test_callback_gets_batch_and_epoch_events(digits):
    train, _ = digits
    events = []
    fit(tiny_model(), train, None, cfg(epochs=2, max_train=200, batch_size=64), callback=events.append)
    assert all(isinstance(e, Progress) for e in events)
    batches = [e for e in events if e.kind == "batch"]
    epochs = [e for e in events if e.kind == "epoch"]
    assert len(batches) == 2 * 4 and len(epochs) == 2            # ceil(200 / 64) = 4 steps an epoch
    assert [(e.epoch, e.step) for e in batches[:4]] == [(1, 1), (1, 2), (1, 3), (1, 4)]
    assert all(e.steps_per_epoch == 4 for e in events)
    assert [e.record["epoch"] for e in epochs] == [1, 2]
    assert [e.step for e in epochs] == [4, 4]   # the last, partial batch counts too
    assert events[4].kind == "epoch" and events[-1].kind == "epoch"
    assert all(e.record is None for e in batches)
    elapsed = [e.elapsed for e in events]
    assert elapsed == sorted(elapsed)


def test_batch_progress_carries_the_loss_terms(digits):
    seen = []
    fit(tiny_model("vae"), digits[0], None, cfg(beta=2.0), callback=seen.append)
    batches = [p for p in seen if p.kind == "batch"]
    assert batches
    for p in batches:
        assert p.recon > 0 and p.kl > 0
        assert p.loss == pytest.approx(p.recon + 2.0 * p.kl, rel=1e-5)
    epoch = [p for p in seen if p.kind == "epoch"][0]
    assert epoch.recon == pytest.approx(epoch.record["train_recon"]) and epoch.kl == pytest.approx(epoch.record["train_kl"])


def test_callback_returning_false_stops_early(digits):
    train, _ = digits
    events = []

    def cb(p):
        events.append(p)
        return not (p.kind == "batch" and p.epoch == 1 and p.step == 2)

    result = fit(tiny_model(), train, None, cfg(epochs=5, batch_size=32), callback=cb)
    assert result.stopped is True
    assert [(e.kind, e.epoch, e.step) for e in events] == [("batch", 1, 1), ("batch", 1, 2), ("epoch", 1, 2)]
    assert len(result.history) == 1 and result.history[0]["images"] == 64


def test_should_stop_stops_early(digits):
    train, _ = digits
    calls = []

    def stop():
        calls.append(1)
        return len(calls) >= 3

    result = fit(tiny_model(), train, None, cfg(epochs=5, batch_size=32), should_stop=stop)
    assert result.stopped is True
    assert len(calls) == 3
    assert len(result.history) == 1 and result.history[0]["images"] == 3 * 32
    # A callback returning None does not stop training.
    assert fit(tiny_model(), train, None, cfg(epochs=2), callback=lambda p: None).stopped is False


def test_kl_warmup_raises_beta_linearly(digits):
    train, _ = digits
    c = cfg(epochs=3, batch_size=32, max_train=128, beta=2.0, warmup_epochs=2.0)
    events = []
    fit(tiny_model(), train, None, c, callback=events.append)
    betas = [e.beta for e in events if e.kind == "batch"]
    assert len(betas) == 12
    # beta(t) = 2 * min(1, t / 2) with t = (epoch - 1) + (step - 1) / 4.
    expected = [2.0 * min(1.0, (i / 4) / 2.0) for i in range(12)]
    assert betas == pytest.approx(expected)
    assert betas[0] == 0.0 and betas[-1] == 2.0
    rises = [b - a for a, b in zip(betas[:8], betas[1:8])]
    assert rises == pytest.approx([0.25] * 7)       # linear over the warm-up
    assert beta_at(c, 10.0) == 2.0
    # The AE ignores beta entirely.
    ae_events = []
    fit(tiny_model("ae"), train, None, c, callback=ae_events.append)
    assert {e.beta for e in ae_events} == {0.0}


def test_no_warmup_means_constant_beta(digits):
    train, _ = digits
    events = []
    fit(tiny_model(), train, None, cfg(epochs=2, beta=3.0), callback=events.append)
    assert {e.beta for e in events} == {3.0}


def _epoch_changes(digits, lr_decay):
    train, _ = digits
    model = tiny_model()
    snaps = [state(model)]
    fit(model, train, None, cfg(epochs=2, lr=1e-2, lr_decay=lr_decay),
        callback=lambda p: snaps.append(state(model)) if p.kind == "epoch" else None)

    def dist(a, b):
        return sum((a[k] - b[k]).abs().sum().item() for k in a)
    return dist(snaps[0], snaps[1]), dist(snaps[1], snaps[2])


def test_lr_decay_shrinks_later_steps(digits):
    first, second = _epoch_changes(digits, lr_decay=1e-3)
    assert second < 0.01 * first
    # Without decay the second epoch moves the weights by a comparable amount.
    first, second = _epoch_changes(digits, lr_decay=1.0)
    assert second > 0.1 * first


def test_huge_learning_rate_raises_and_keeps_the_start_weights(digits):
    train, _ = digits
    model = tiny_model()
    before = state(model)
    with pytest.raises(TrainingDiverged) as e:
        fit(model, train, None, cfg(epochs=3, lr=1e6))
    msg = str(e.value)
    assert "Lower the learning rate" in msg and "1e+06" in msg
    assert finite(model)
    assert same_state(before, state(model))
    assert e.value.result is not None and e.value.result.history == []


def test_a_finite_but_exploding_run_is_stopped_too(digits):
    """An AE at learning rate 1 keeps a finite loss, but its reconstruction ends the epoch many
    times worse than the untrained network's: that is divergence, and it must say so."""
    train, _ = digits
    model = tiny_model("ae")
    before = state(model)
    with pytest.raises(TrainingDiverged) as e:
        fit(model, train, None, cfg(epochs=3, lr=1.0, batch_size=32, precision="float32"))
    msg = str(e.value)   # the reconstruction message, so no loss was NaN: only the new check caught it
    assert "reconstruction error grew" in msg and "untrained network" in msg and "try 0.1" in msg
    assert same_state(before, state(model)) and e.value.result.history == []


def test_a_sound_run_is_never_called_exploding(digits):
    # The default learning rate, tiny batches (noisy first batch) and a huge beta all learn.
    train, _ = digits
    for kw in [dict(lr=1e-3, batch_size=8), dict(lr=1e-2, batch_size=1, max_train=64), dict(beta=1000.0),
               dict(beta=50.0, warmup_epochs=2, free_bits=0.5)]:
        result = fit(tiny_model(), train, None, cfg(epochs=3, **kw))
        assert len(result.history) == 3, kw


def test_nan_input_raises_training_diverged(digits):
    train, _ = digits
    x = train.x[:128].clone()
    x[5] = float("nan")
    model = tiny_model()
    before = state(model)
    with pytest.raises(TrainingDiverged, match="Lower the learning rate"):
        fit(model, ImageData(x, None, "nan"), None, cfg(epochs=2, max_train=0))
    assert same_state(before, state(model))


def test_divergence_restores_the_last_good_epoch(digits):
    train, _ = digits
    model = tiny_model()
    good = {}

    def cb(p):
        if p.kind == "epoch" and p.epoch == 1:
            good.update(state(model))
        if p.kind == "batch" and p.epoch == 2 and p.step == 1:
            with torch.no_grad():   # poison a weight mid-epoch: the next batch's loss is NaN
                next(model.parameters())[0, 0] = float("nan")

    with pytest.raises(TrainingDiverged) as e:
        fit(model, train, None, cfg(epochs=3, batch_size=32), callback=cb)
    assert "epoch 2" in str(e.value) and "epoch 1" in str(e.value)
    assert finite(model)
    assert same_state(good, state(model))
    assert [r["epoch"] for r in e.value.result.history] == [1]


def test_nan_weights_at_an_epochs_end_are_never_kept(digits):
    # The last step of an epoch can leave NaN weights behind a finite loss (an infinite
    # gradient through Adam). They must not be kept as the "good" weights.
    train, _ = digits
    model = tiny_model()
    good = {}

    def cb(p):
        if p.kind == "epoch" and p.epoch == 1:
            good.update(state(model))
        if p.kind == "batch" and p.epoch == 2 and p.step == p.steps_per_epoch:
            with torch.no_grad():
                next(model.parameters())[0, 0] = float("inf")

    with pytest.raises(TrainingDiverged, match="Lower the learning rate"):
        fit(model, train, None, cfg(epochs=2, batch_size=64), callback=cb)
    assert finite(model)
    assert same_state(good, state(model))


def test_binarize_trains_on_binary_pixels(digits):
    train, test = digits
    model = tiny_model()
    before = state(model)
    result = fit(model, train, test.subset(100), cfg(epochs=2, binarize=True))
    assert not same_state(before, state(model))
    assert all(torch.isfinite(torch.tensor(r["train_loss"])) for r in result.history)
    plain = fit(tiny_model(), train, test.subset(100), cfg(epochs=2))
    assert plain.history[-1]["train_loss"] != result.history[-1]["train_loss"]
    b = binarized(test.subset(100), seed=0)
    assert set(b.x.unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(b.x, binarized(test.subset(100), seed=0).x)


def test_evaluate_terms_is_repeatable(digits):
    _, test = digits
    model = tiny_model()
    a = evaluate_terms(model, test, beta=1.0, seed=3)
    b = evaluate_terms(model, test, beta=1.0, seed=3)
    assert a == b
    assert a["loss"] == pytest.approx(a["recon"] + a["kl"])
    assert evaluate_terms(model, test, beta=1.0, seed=4)["recon"] != a["recon"]


def test_fit_does_not_modify_the_data(digits):
    train, _ = digits
    x = train.x[:128].clone()
    data = ImageData(x, None, "copy")
    fit(tiny_model(), data, None, cfg(max_train=0, binarize=True))
    assert torch.equal(x, train.x[:128])


# ---------------------------------------------------------------- mixed precision

def test_precision_is_validated():
    with pytest.raises(Exception, match="precision"):
        cfg(precision="fp8")


def test_matmul_dtype_follows_the_setting():
    from vae_core.train import matmul_dtype
    cpu = torch.device("cpu")
    assert matmul_dtype("float32", cpu) is None
    assert matmul_dtype("bfloat16", cpu) is torch.bfloat16
    native = torch.ops.mkldnn._is_mkldnn_bf16_supported()
    assert matmul_dtype("auto", cpu) is (torch.bfloat16 if native else None)
    # With the model's own layer as a probe, "auto" keeps float32 unless bf16 is measurably faster.
    from vae_core.train import _bf16_speedup
    probe = (128, 784, 400)
    picked = matmul_dtype("auto", cpu, probe=probe)
    assert picked in (None, torch.bfloat16)
    if not native:
        assert picked is None


def test_mixed_precision_keeps_float32_weights_and_float32_loss_inputs(digits):
    from vae_core.train import _forward
    model = tiny_model("vae")
    x = digits[0].x[:16]
    out = _forward(model, x, torch.Generator().manual_seed(0), torch.bfloat16)
    assert out.logits.dtype == out.mu.dtype == out.logvar.dtype == out.z.dtype == torch.float32
    result = fit(model, digits[0], digits[1], cfg(precision="bfloat16", epochs=2))
    assert result.precision == "bfloat16"
    assert all(p.dtype == torch.float32 for p in model.parameters())


@pytest.mark.parametrize("kind", ["ae", "vae"])
def test_bfloat16_training_learns_like_float32(digits, kind):
    """Mixed precision changes rounding, not the objective: after a few epochs both runs reach
    nearly the same test loss, and both improve on the untrained model."""
    train, test = digits
    losses = {}
    for precision in ("float32", "bfloat16"):
        model = tiny_model(kind, seed=3)
        before = evaluate_terms(model, test, beta=1.0)["loss"]
        result = fit(model, train, test, cfg(precision=precision, epochs=6, max_train=0, seed=3))
        assert result.precision == precision
        losses[precision] = result.history[-1]["test_loss"]
        assert losses[precision] < 0.8 * before
    assert losses["bfloat16"] == pytest.approx(losses["float32"], rel=0.03)

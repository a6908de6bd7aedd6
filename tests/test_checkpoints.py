"""Checkpoints: exact round trips, refusal of every kind of bad file (without running its
code), safe names, and atomic saves that leave the previous file whole."""
import json
import os
import pickle
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save
from safetensors.torch import save_file

from vae_core import CheckpointError, ModelConfig, TrainConfig, build_model
from vae_core import checkpoints as ck
from vae_core.checkpoints import (check_name, from_bytes, list_checkpoints, load_checkpoint, path_in,
                                  read_info, save_checkpoint, update_metrics)

pytestmark = pytest.mark.usefixtures("one_thread")

REPO = Path(__file__).resolve().parent.parent
HISTORY = [{"epoch": 1, "beta": 4.0, "train_loss": 123.456789, "train_recon": 100.0, "train_kl": 5.864,
            "images": 1497, "seconds": 0.25}]
METRICS = {"iw_elbo": -98.7654321, "active_units": 7, "knn": {"k": 5, "accuracy": 0.9}}
# The models here take odd-sized 13 x 17 images (none of the named datasets has them), as a model
# the CLI trained on a user's .npz file does; a checkpoint of this machine may name that file.
DATASET = "/data/bars-13x17.npz"


def make_model(kind="vae", arch="mlp", latent=3, seed=0, **kw):
    torch.manual_seed(seed)
    kw.setdefault("hidden", (16,))
    kw.setdefault("channels", (4, 8))
    return build_model(ModelConfig(kind=kind, arch=arch, latent_dim=latent, image_shape=(1, 13, 17), **kw))


def save(path, model, **kw):
    kw.setdefault("dataset", DATASET)
    kw.setdefault("history", HISTORY)
    kw.setdefault("metrics", METRICS)
    return save_checkpoint(path, model, TrainConfig(dataset=DATASET, epochs=3, beta=4.0), **kw)


def outputs(model, x):
    with torch.no_grad():
        return model(x, sample=False)


# ---------------------------------------------------------------- round trips

@pytest.mark.parametrize("kind, arch, likelihood", [
    ("vae", "mlp", "bernoulli"), ("ae", "conv", "gaussian"), ("vae", "conv", "gaussian_learned")])
def test_round_trip_is_exact(tmp_path, kind, arch, likelihood):
    model = make_model(kind, arch, likelihood=likelihood)
    path = save(tmp_path / "m", model)
    assert path == tmp_path / "m.safetensors" and path.is_file()
    ck = load_checkpoint(path)
    assert ck.path == path and ck.name == "m"
    assert ck.model_config == model.cfg
    assert ck.train_config == TrainConfig(dataset=DATASET, epochs=3, beta=4.0)
    assert ck.dataset == DATASET
    assert ck.history == HISTORY and ck.metrics == METRICS
    a, b = model.state_dict(), ck.model.state_dict()
    assert a.keys() == b.keys()
    for k in a:
        assert a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]), k
    assert not ck.model.training
    x = torch.rand(4, 1, 13, 17)
    oa, ob = outputs(model, x), outputs(ck.model, x)
    assert torch.equal(oa.logits, ob.logits) and torch.equal(oa.mu, ob.mu)
    assert torch.equal(model.embed(x), ck.model.embed(x))


def test_half_round_trip_is_close_and_smaller(tmp_path):
    model = make_model("vae", "conv")
    full = save(tmp_path / "full", model)
    half = save(tmp_path / "half", model, half=True)
    assert half.stat().st_size < 0.6 * full.stat().st_size
    with safe_open(str(half), framework="pt") as f:
        assert {f.get_tensor(k).dtype for k in f.keys()} == {torch.float16}
    ck = load_checkpoint(half)
    assert all(v.dtype == torch.float32 for v in ck.model.state_dict().values())
    x = torch.rand(8, 1, 13, 17)
    oa, ob = outputs(model, x), outputs(ck.model, x)
    assert torch.allclose(torch.sigmoid(oa.logits), torch.sigmoid(ob.logits), atol=2e-3)
    assert torch.allclose(oa.mu, ob.mu, atol=5e-3)
    assert not torch.equal(oa.logits, ob.logits)   # it really was rounded


def test_read_info_gives_configs_without_weights(tmp_path):
    model = make_model("ae")
    path = save(tmp_path / "info-me", model)
    info = read_info(path)
    assert info["model_config"] == model.cfg
    assert info["train_config"].beta == 4.0
    assert info["name"] == "info-me" and info["path"] == path
    assert info["metrics"] == METRICS and info["history"] == HISTORY and info["dataset"] == DATASET


def test_defaults_and_no_train_config(tmp_path):
    path = save_checkpoint(tmp_path / "bare.safetensors", make_model())
    ck = load_checkpoint(path)
    assert ck.train_config is None and ck.history == [] and ck.metrics == {} and ck.dataset == ""


# ---------------------------------------------------------------- bad files

def _refused(path, *words, listed=False):
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(path)
    msg = str(e.value)
    assert str(path) in msg or Path(path).name in msg
    for w in words:
        assert w in msg, msg
    # The listing reads only the metadata: it skips files whose header is unreadable, but
    # lists one whose header is fine and whose weights are damaged (loading refuses it).
    names = [i["path"].name for i in list_checkpoints(Path(path).parent)]
    assert (Path(path).name in names) == listed
    return msg


def test_random_bytes_are_refused(tmp_path):
    p = tmp_path / "noise.safetensors"
    p.write_bytes(os.urandom(4096))
    _refused(p, "not a checkpoint")


def test_empty_file_is_refused(tmp_path):
    p = tmp_path / "empty.safetensors"
    p.write_bytes(b"")
    _refused(p, "not a checkpoint")
    with pytest.raises(CheckpointError):
        read_info(p)


@pytest.mark.parametrize("keep", [0.5, 0.99, 8 / 10_000])
def test_truncated_checkpoint_is_refused(tmp_path, keep):
    good = save(tmp_path / "good", make_model())
    data = good.read_bytes()
    p = tmp_path / "cut.safetensors"
    p.write_bytes(data[:max(4, int(len(data) * keep))])
    _refused(p, "truncated")


def test_missing_file_is_refused(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nothing.safetensors")
    with pytest.raises(CheckpointError, match="does not exist"):
        update_metrics(tmp_path / "nothing.safetensors", {"a": 1})
    with pytest.raises(CheckpointError):
        read_info(tmp_path / "nothing.safetensors")


def test_pickle_is_refused_without_running_its_code(tmp_path):
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))   # unpickling would create the marker file

    blob = pickle.dumps({"state_dict": Payload()})
    # The same kind of payload is live: unpickling it does create its marker.
    live = tmp_path / "live"

    class Live:
        def __reduce__(self):
            return (open, (str(live), "w"))
    pickle.loads(pickle.dumps(Live())).close()
    assert live.exists()

    for name in ("model.safetensors", "model.pt"):
        p = tmp_path / name
        p.write_bytes(blob)
        with pytest.raises(CheckpointError, match="not a checkpoint"):
            load_checkpoint(p)
        with pytest.raises(CheckpointError):
            read_info(p)
    assert list_checkpoints(tmp_path) == []
    assert not marker.exists()


def test_plain_safetensors_without_metadata_is_refused(tmp_path):
    p = tmp_path / "plain.safetensors"
    save_file({k: v.contiguous() for k, v in make_model().state_dict().items()}, str(p))
    _refused(p, "not a VAE Latent Explorer checkpoint")
    with pytest.raises(CheckpointError, match="not a VAE Latent Explorer checkpoint"):
        read_info(p)


def _rewrite(path, out, edit_state=None, edit_meta=None):
    data = path.read_bytes()
    state = st_load(data)
    n = int.from_bytes(data[:8], "little")
    meta = json.loads(data[8:8 + n])["__metadata__"]
    if edit_state:
        edit_state(state)
    if edit_meta:
        edit_meta(meta)
    out.write_bytes(st_save(state, metadata=meta))
    return out


def test_weights_that_do_not_fit_the_config_are_refused(tmp_path):
    good = save(tmp_path / "good", make_model(latent=3))

    def bump_latent(meta):
        cfg = json.loads(meta["model_config"])
        cfg["latent_dim"] = 5
        meta["model_config"] = json.dumps(cfg)

    p = _rewrite(good, tmp_path / "misfit.safetensors", edit_meta=bump_latent)
    _refused(p, "do not fit its config", "wrong shape", listed=True)

    p = _rewrite(good, tmp_path / "missing.safetensors", edit_state=lambda s: s.pop("head.bias"))
    _refused(p, "missing", "head.bias", listed=True)

    p = _rewrite(good, tmp_path / "extra.safetensors",
                 edit_state=lambda s: s.__setitem__("backdoor", torch.zeros(2)))
    _refused(p, "unexpected", "backdoor", listed=True)


def _peak_rss_mb() -> float:
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024   # Linux: KiB


def _with_config(path, out, **changes):
    def edit(meta):
        cfg = json.loads(meta["model_config"])
        cfg.update(changes)
        meta["model_config"] = json.dumps(cfg)
    return _rewrite(path, out, edit_meta=edit)


@pytest.mark.parametrize("changes, words", [
    # 2 x 100,000 x 100,000 weights would be 80 GB; the config bounds refuse it outright.
    (dict(hidden=[100000, 100000]), ["hidden sizes (100000, 100000) are too large", "8192 units"]),
    (dict(hidden=[16] * 9), ["at most 8 layers"]),
    (dict(image_shape=[1, 4096, 4096]), ["image shape (1, 4096, 4096) is too large", "64 pixels a side"]),
    (dict(image_shape=[100, 28, 28]), ["too large", "at most 4 channels"]),
    (dict(arch="conv", channels=[100000]), ["conv channels (100000,) are too large"]),
    (dict(arch="conv", channels=[4] * 7), ["at most 6 layers"]),
    # Within every bound, yet 1.2 billion weights (4.8 GB): refused by the weight count, computed
    # on the meta device.
    (dict(hidden=[8192] * 8, image_shape=[4, 64, 64]), ["1,208,180,742 weights", "over the limit"]),
    # 40 million weights (160 MB): under the limit, but not in the file; refused before any is allocated.
    (dict(hidden=[4096, 4096], image_shape=[1, 28, 28]), ["do not fit its config", "wrong shape"]),
])
def test_a_tiny_file_cannot_make_the_loader_allocate_a_huge_model(tmp_path, changes, words):
    good = save(tmp_path / "good", make_model(), dataset="")
    p = _with_config(good, tmp_path / "huge.safetensors", **changes)
    assert p.stat().st_size < 50_000
    before = _peak_rss_mb()
    with pytest.raises(CheckpointError) as e:
        from_bytes(p.read_bytes(), p.name, local_file=True)
    for w in words:
        assert w in str(e.value), str(e.value)
    assert _peak_rss_mb() - before < 100, "the loader allocated the model before checking it"
    _refused(p, *words, listed="weights" in words[0] or "fit" in words[0])


def test_config_bounds_leave_the_shipped_and_usual_models_alone():
    for cfg in [dict(hidden=(8192,) * 8), dict(image_shape=(1, 64, 64)), dict(image_shape=(4, 8, 8)),
                dict(hidden=(512, 512)), dict(arch="conv", channels=(1024,) * 6, image_shape=(1, 64, 64))]:
        ModelConfig(**cfg)          # at the limits: accepted
    for path in sorted((REPO / "checkpoints").glob("*.safetensors")):
        assert load_checkpoint(path).model_config.hidden in ((400,), (128,), (512, 512)), path


def _with_dataset(path, out, dataset):
    return _rewrite(path, out, edit_meta=lambda m: m.__setitem__("dataset", dataset))


@pytest.mark.parametrize("dataset", ["../../etc/passwd", "/etc/shadow", "mnist/../../x", "MNIST", "a\0b.npz"])
def test_a_dataset_name_that_could_reach_a_file_path_is_refused(tmp_path, dataset):
    good = save(tmp_path / "good", make_model())
    p = _with_dataset(good, tmp_path / "bad.safetensors", dataset)
    for load in (lambda: from_bytes(p.read_bytes(), p.name), lambda: load_checkpoint(p), lambda: read_info(p)):
        with pytest.raises(CheckpointError) as e:
            load()
        assert f"trained on {dataset!r}, which is not one of this app's datasets (mnist, fashion-mnist, digits)" \
            in str(e.value), str(e.value)
    assert list_checkpoints(tmp_path) == [read_info(good)]   # the listing skips it


def test_only_a_file_of_this_machine_may_name_an_npz_file_or_no_dataset(tmp_path):
    good = save(tmp_path / "good", make_model())             # names DATASET, an .npz path
    bare = save(tmp_path / "bare", make_model(), dataset="")
    assert load_checkpoint(good).dataset == DATASET and load_checkpoint(bare).dataset == ""
    with pytest.raises(CheckpointError, match="trained on '/data/bars-13x17.npz', which is not one of"):
        from_bytes(good.read_bytes())
    with pytest.raises(CheckpointError, match="does not say which dataset it was trained on"):
        from_bytes(bare.read_bytes())


@pytest.mark.parametrize("dataset, shape", [("mnist", "1 x 28 x 28"), ("fashion-mnist", "1 x 28 x 28"),
                                            ("digits", "1 x 8 x 8")])
def test_a_model_that_does_not_take_its_datasets_images_is_refused(tmp_path, dataset, shape):
    good = save(tmp_path / "good", make_model())             # 13 x 17 images
    p = _with_dataset(good, tmp_path / "misfit.safetensors", dataset)
    expect = f"trained on {dataset}, whose images are {shape}, but its model takes images of 1 x 13 x 17"
    for load in (lambda: from_bytes(p.read_bytes(), p.name), lambda: load_checkpoint(p)):
        with pytest.raises(CheckpointError, match=expect):
            load()
    # A model of the right shape loads from anywhere.
    torch.manual_seed(0)
    fits = save(tmp_path / "fits", build_model(ModelConfig(latent_dim=2, hidden=(8,), image_shape=(1, 8, 8))),
                dataset="digits")
    assert from_bytes(fits.read_bytes()).dataset == "digits"


@pytest.mark.parametrize("edit, words", [
    (lambda m: m.__setitem__("model_config", "{not json"), ["damaged"]),
    (lambda m: m.__setitem__("model_config", "[" * 100_000 + "]" * 100_000), ["damaged", "recursion"]),
    (lambda m: m.__setitem__("train_config", "[1, 2]"), ["damaged"]),
    (lambda m: m.__setitem__("history", "7"), ["damaged", "history"]),
    (lambda m: m.__setitem__("metrics", "[1]"), ["damaged", "metrics"]),
    (lambda m: m.__setitem__("model_config", json.dumps({"latent_dim": 0})), ["damaged", "0"]),
    (lambda m: m.__setitem__("model_config", json.dumps({"kind": "vae", "evil": 1})), ["evil"]),
    (lambda m: m.__setitem__("format", "someone-else/9"), ["not a VAE Latent Explorer checkpoint"]),
    (lambda m: m.pop("model_config"), ["damaged"]),
])
def test_damaged_metadata_is_refused(tmp_path, edit, words):
    good = save(tmp_path / "good", make_model())
    p = _rewrite(good, tmp_path / "bad.safetensors", edit_meta=edit)
    _refused(p, *words)


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_weights_in_a_file_are_refused(tmp_path, value):
    good = save(tmp_path / "good", make_model())

    def poison(state):
        state["head.weight"][0, 0] = value

    p = _rewrite(good, tmp_path / "nan.safetensors", edit_state=poison)
    _refused(p, "head.weight", "NaN or infinite", listed=True)


def test_oversized_file_is_refused(tmp_path, monkeypatch):
    p = save(tmp_path / "big", make_model())
    monkeypatch.setattr(ck, "MAX_CHECKPOINT_BYTES", 1000)
    with pytest.raises(CheckpointError, match="size limit"):
        load_checkpoint(p)
    with pytest.raises(CheckpointError, match="over the limit"):
        from_bytes(p.read_bytes())


def test_save_refuses_nan_weights_and_keeps_the_old_file(tmp_path):
    path = save(tmp_path / "keep", make_model(seed=1))
    before = path.read_bytes()
    broken = make_model(seed=2)
    with torch.no_grad():
        broken.decoder.net[0].bias[3] = float("nan")
    with pytest.raises(CheckpointError, match="NaN or infinite") as e:
        save(path, broken)
    assert "decoder.net.0.bias" in str(e.value)
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["keep.safetensors"]


# ---------------------------------------------------------------- names

@pytest.mark.parametrize("name", ["../x", "/abs/path", "", "   ", "a" * 200, "a/b", "a\\b", "modèle",
                                  "..", ".hidden", "-dash", "two words", "x..y", "名前", None, 7])
def test_bad_names_are_refused(tmp_path, name):
    with pytest.raises(CheckpointError) as e:
        check_name(name)
    assert str(e.value)
    with pytest.raises(CheckpointError) as e2:
        path_in(tmp_path, name)
    msg = str(e2.value)
    if isinstance(name, str) and name.strip() and len(name) <= 80:
        assert repr(name.strip()) in msg   # the message names the bad value
    assert "letters" in msg or "characters" in msg or "empty" in msg
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("name, expect", [
    ("my-vae_beta4.0", "my-vae_beta4.0"), ("AE", "AE"), ("x.safetensors", "x"), (" padded ", "padded"),
    ("a" * 80, "a" * 80)])
def test_good_names_stay_in_the_folder(tmp_path, name, expect):
    assert check_name(name) == expect
    p = path_in(tmp_path, name)
    assert p == tmp_path.resolve() / (expect + ".safetensors")


def test_overwrite_false_refuses_an_existing_name(tmp_path):
    path = save(tmp_path / "taken", make_model(seed=1))
    before = path.read_bytes()
    with pytest.raises(CheckpointError, match="taken.safetensors already exists"):
        save(tmp_path / "taken", make_model(seed=2), overwrite=False)
    assert path.read_bytes() == before
    save(tmp_path / "taken", make_model(seed=2))      # overwrite=True replaces it
    assert path.read_bytes() != before


def test_overwrite_false_loses_no_race_to_a_save_that_finishes_first(tmp_path, monkeypatch):
    """Another session saves the same name while this one is writing (after its exists() check):
    this save is refused, and the other session's file stays byte for byte as it wrote it."""
    target = tmp_path / "contested.safetensors"
    other = ck.to_bytes(make_model(seed=1), dataset=DATASET)
    real_fsync = ck.os.fsync

    def the_other_session_finishes_first(fd):
        real_fsync(fd)
        if not target.exists():
            target.write_bytes(other)

    monkeypatch.setattr(ck.os, "fsync", the_other_session_finishes_first)
    with pytest.raises(CheckpointError, match="contested.safetensors already exists: choose another name"):
        save(target, make_model(seed=2), overwrite=False)
    monkeypatch.undo()
    assert target.read_bytes() == other
    assert sorted(os.listdir(tmp_path)) == ["contested.safetensors"]   # no temporary file left
    assert save(target, make_model(seed=2)) == target                  # overwrite=True still replaces
    assert target.read_bytes() != other


def test_two_saves_to_one_new_name_at_once_leave_exactly_one_whole_file(tmp_path):
    import threading
    for round_ in range(10):
        target = tmp_path / f"race-{round_}.safetensors"
        models = [make_model(seed=s) for s in (1, 2)]
        start, outcomes = threading.Barrier(2), [None, None]

        def run(i):
            start.wait()
            try:
                save(target, models[i], overwrite=False)
                outcomes[i] = "saved"
            except CheckpointError as e:
                outcomes[i] = str(e)

        threads = [threading.Thread(target=run, args=(i,)) for i in (0, 1)]
        [t.start() for t in threads]
        [t.join() for t in threads]
        assert sorted(outcomes)[1] == "saved" and "already exists" in sorted(outcomes)[0], outcomes
        winner = models[outcomes.index("saved")]
        assert torch.equal(load_checkpoint(target).model.head.weight, winner.head.weight)
    assert all(not p.name.startswith(".") for p in tmp_path.iterdir())


# ---------------------------------------------------------------- atomic saves

@pytest.mark.parametrize("where", ["fsync", "replace", "write"])
def test_failed_save_leaves_the_previous_file_whole(tmp_path, monkeypatch, where):
    path = save(tmp_path / "safe", make_model(seed=1))
    before = path.read_bytes()

    def boom(*a, **k):
        raise OSError(28, "No space left on device")

    if where == "write":
        # A failure after half the bytes went out: the temp file is half written.
        real = ck.os.fdopen

        class Half:
            def __init__(self, f):
                self.f = f

            def __enter__(self):
                return self

            def __exit__(self, *exc):
                self.f.close()

            def write(self, data):
                self.f.write(data[:len(data) // 2])
                boom()

        monkeypatch.setattr(ck.os, "fdopen", lambda fd, mode: Half(real(fd, mode)))
    else:
        monkeypatch.setattr(ck.os, where, boom)
    with pytest.raises(CheckpointError, match="No space left on device") as e:
        save(path, make_model(seed=2))
    assert "nothing was overwritten" in str(e.value)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["safe.safetensors"]   # no temp file left behind
    assert torch.equal(load_checkpoint(path).model.head.weight, make_model(seed=1).head.weight)


def test_interrupt_during_save_cleans_up(tmp_path, monkeypatch):
    path = save(tmp_path / "safe", make_model(seed=1))
    before = path.read_bytes()

    def interrupt(*a):
        raise KeyboardInterrupt

    monkeypatch.setattr(ck.os, "fsync", interrupt)
    with pytest.raises(KeyboardInterrupt):
        save(path, make_model(seed=2))
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["safe.safetensors"]


def test_killed_save_leaves_the_previous_file_whole(tmp_path):
    """A process killed with SIGKILL while its new bytes are on disk but not yet renamed."""
    path = save(tmp_path / "victim", make_model(seed=1))
    before = path.read_bytes()
    child = textwrap.dedent(f"""
        import os, sys, time, torch
        sys.path.insert(0, {str(REPO)!r})
        from vae_core import ModelConfig, build_model
        from vae_core import checkpoints as ck
        def stall(fd):
            print("writing", flush=True)
            time.sleep(60)
        ck.os.fsync = stall
        torch.manual_seed(2)
        big = build_model(ModelConfig(kind="vae", image_shape=(1, 13, 17), latent_dim=3, hidden=(2048, 1024)))
        ck.save_checkpoint({str(path)!r}, big)
        print("finished", flush=True)
    """)
    proc = subprocess.Popen([sys.executable, "-c", child], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "writing"
        temps = [p for p in tmp_path.iterdir() if p.name != "victim.safetensors"]
        assert len(temps) == 1 and temps[0].stat().st_size > 5_000_000   # the new model is on disk
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert path.read_bytes() == before
    ckpt = load_checkpoint(path)
    assert ckpt.model_config.hidden == (16,)
    # The orphaned temp file is hidden from the listing, which shows only the real checkpoint.
    assert [i["name"] for i in list_checkpoints(tmp_path)] == ["victim"]


def test_each_save_writes_its_own_temporary_file(tmp_path, monkeypatch):
    """Temporary names are unique per save: a leftover from a killed save blocks nothing, and
    the listing hides it."""
    leftover = tmp_path / ".m.safetensors.tmp"
    leftover.write_bytes(b"from a killed save")
    seen = []
    real_fsync = ck.os.fsync

    def note_temps(fd):
        seen.append(sorted(p.name for p in tmp_path.iterdir() if p.name != leftover.name))
        real_fsync(fd)

    monkeypatch.setattr(ck.os, "fsync", note_temps)
    save(tmp_path / "m", make_model(seed=1), overwrite=False)
    save(tmp_path / "m", make_model(seed=2))
    monkeypatch.undo()
    temps = [n for names in seen for n in names if n.startswith(".")]   # each save's temporary file
    assert len(set(temps)) == 2 and all(t.startswith(".m.safetensors") and t.endswith(".tmp") for t in temps)
    assert sorted(p.name for p in tmp_path.iterdir()) == [leftover.name, "m.safetensors"]
    assert [i["name"] for i in list_checkpoints(tmp_path)] == ["m"]


# ---------------------------------------------------------------- listing and metrics

def test_list_checkpoints_skips_unreadable_files(tmp_path):
    save(tmp_path / "b-second", make_model("ae"))
    save(tmp_path / "a-first", make_model("vae"))
    (tmp_path / "junk.safetensors").write_bytes(b"\x00" * 100)
    (tmp_path / "empty.safetensors").write_bytes(b"")
    (tmp_path / "notes.txt").write_text("not a model")
    other = tmp_path / "other"
    save(other / "c-third", make_model("vae", latent=1))
    infos = list_checkpoints(tmp_path, other, tmp_path / "missing-folder")
    assert [i["name"] for i in infos] == ["a-first", "b-second", "c-third"]
    assert [i["model_config"].kind for i in infos] == ["vae", "ae", "vae"]


@pytest.mark.parametrize("half", [False, True])
def test_update_metrics_merges_and_keeps_weights(tmp_path, half):
    path = save(tmp_path / "m", make_model(), half=half)
    weights = {k: v.clone() for k, v in st_load(path.read_bytes()).items()}
    update_metrics(path, {"active_units": 2, "fid_like": 1.5})
    ckpt = load_checkpoint(path)
    assert ckpt.metrics == {**METRICS, "active_units": 2, "fid_like": 1.5}
    assert ckpt.history == HISTORY and ckpt.dataset == DATASET and ckpt.train_config.beta == 4.0
    after = st_load(path.read_bytes())
    assert after.keys() == weights.keys()
    for k in weights:
        assert after[k].dtype == weights[k].dtype and torch.equal(after[k], weights[k]), k


def test_half_save_refuses_weights_beyond_float16(tmp_path):
    path = save(tmp_path / "keep", make_model(seed=1), half=True)
    before = path.read_bytes()
    big = make_model(seed=2)
    with torch.no_grad():
        big.head.weight[0, 0] = 1e6   # finite in float32, infinite in float16
    with pytest.raises(CheckpointError, match="head.weight.*half=False"):
        save(path, big, half=True)
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["keep.safetensors"]
    # In full precision it saves and loads.
    full = save(tmp_path / "full", big)
    assert load_checkpoint(full).model.head.weight[0, 0].item() == 1e6


# ---------------------------------------------------------------- values read from files

def _tiny_bytes(**kw):
    import torch
    from vae_core.checkpoints import to_bytes
    from vae_core.config import ModelConfig, TrainConfig
    from vae_core.models import build_model
    model = build_model(ModelConfig(latent_dim=2, hidden=(8,), image_shape=(1, 8, 8)),
                        generator=torch.Generator().manual_seed(0))
    return to_bytes(model, TrainConfig(dataset="digits"), dataset="digits", **kw)


def test_text_where_a_number_belongs_is_dropped_and_named_never_kept(tmp_path):
    from vae_core.checkpoints import read_info
    path = tmp_path / "bad-metrics.safetensors"
    path.write_bytes(_tiny_bytes(metrics={"recon": "lots", "kl": 1.5, "kl_per_dim": [0.1, "x"],
                                          "source": "stored", "knn": {"accuracy": "high", "k": 5}},
                                 history=[{"epoch": 1, "train_loss": "nan?", "test_loss": 3.0}]))
    info = read_info(path)
    assert info["metrics"] == {"kl": 1.5, "source": "stored", "knn": {"k": 5}}
    assert set(info["dropped"]) == {"metrics.recon", "metrics.kl_per_dim", "metrics.knn.accuracy",
                                    "history[0].train_loss"}
    assert info["history"] == [{"epoch": 1, "test_loss": 3.0}]


def test_a_broken_entry_never_breaks_the_list_and_is_reported(tmp_path, caplog):
    import json
    from safetensors.torch import save
    import torch
    from vae_core.checkpoints import FORMAT, list_checkpoints
    (tmp_path / "good.safetensors").write_bytes(_tiny_bytes())
    (tmp_path / "dangling.safetensors").symlink_to(tmp_path / "nowhere")
    (tmp_path / "a-folder.safetensors").mkdir()
    cfg = {"kind": "vae", "arch": "mlp", "latent_dim": 2, "hidden": [float("inf")], "image_shape": [1, 8, 8]}
    (tmp_path / "infinite.safetensors").write_bytes(save({"w": torch.zeros(1)}, metadata={
        "format": FORMAT, "model_config": json.dumps(cfg), "dataset": "digits"}))
    (tmp_path / "noise.safetensors").write_bytes(b"\x00" * 64)
    skipped = []
    infos = list_checkpoints(tmp_path, skipped=skipped)
    assert [i["name"] for i in infos] == ["good"]
    assert sorted(p.rsplit("/", 1)[1] for p, _ in skipped) == [
        "a-folder.safetensors", "dangling.safetensors", "infinite.safetensors", "noise.safetensors"]
    assert all(reason for _, reason in skipped)
    assert sum("skipped" in r.message for r in caplog.records) == 4
    list_checkpoints(tmp_path)                                # logged once per file version, not per call
    assert sum("skipped" in r.message for r in caplog.records) == 4

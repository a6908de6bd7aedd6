"""The command line as a user meets it: `python -m vae_core ...` in a real subprocess, on a tiny
.npz dataset the tests write (8x8 bars in three orientations), one thread per process."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent
TINY_IN = ["--latent-dim", "2", "--hidden", "32", "--batch-size", "32", "--seed", "3"]
TINY = TINY_IN + ["--threads", "1"]   # subprocesses only: in-process it would change the test runner


def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env.setdefault("VAE_DATA_DIR", str((REPO / ".." / "shared" / "data").resolve()))
    # One thread: the CI machine has two cores shared with the test runner itself.
    env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = "1"
    env.pop("VAE_DEBUG", None)
    return env


def cli(*args, cwd=None, timeout=120):
    return subprocess.run([sys.executable, "-m", "vae_core", *map(str, args)], capture_output=True,
                          text=True, env=_env(), cwd=cwd, timeout=timeout)


def main_in_process(*args):
    """main() in this process (for variants whose subprocess start-up would dominate): (code, out, err)."""
    import contextlib
    import io
    from vae_core.cli import main
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main([str(a) for a in args])
        except SystemExit as e:       # argparse's own checks and --help exit from inside parse_args
            code = e.code
    return subprocess.CompletedProcess(args, code, out.getvalue(), err.getvalue())


def bars(n: int = 240, seed: int = 0):
    """n noisy 8x8 images of a horizontal, vertical or diagonal bar; labels 0, 1, 2."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    x = rng.uniform(0, 0.2, (n, 8, 8)).astype(np.float32)
    for i, (label, pos) in enumerate(zip(y, rng.integers(1, 7, n))):
        if label == 0:
            x[i, pos, :] = 0.9
        elif label == 1:
            x[i, :, pos] = 0.9
        else:
            x[i][np.eye(8, dtype=bool)] = 0.9
    return x, y


@pytest.fixture(scope="module")
def tiny_npz(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "bars.npz"
    x, y = bars()
    np.savez(path, x=x, y=y)
    return path


@pytest.fixture(scope="module")
def trained(tiny_npz, tmp_path_factory):
    """One checkpoint trained by the CLI (2 epochs), shared by the evaluate and project tests."""
    out = tmp_path_factory.mktemp("models") / "tiny-vae.safetensors"
    run = cli("train", "--dataset", tiny_npz, "--epochs", 2, "--beta", 2, *TINY, "--out", out)
    assert run.returncode == 0, run.stderr
    return out, run


def assert_one_line_error(run, *words):
    assert run.returncode != 0
    assert "Traceback" not in run.stderr
    lines = [l for l in run.stderr.splitlines() if l.strip()]
    assert len(lines) == 1, run.stderr
    assert lines[0].startswith("error: "), lines[0]
    for w in words:
        assert w in lines[0], (w, lines[0])
    assert run.stdout == ""


# ---------------------------------------------------------------- commands that work

def test_help_lists_the_subcommands():
    run = main_in_process("--help")
    assert run.returncode == 0
    # The subcommand list (between "COMMAND" and "options:"), not the examples further down.
    listed = run.stdout.split("positional arguments:")[1].split("options:")[0]
    names = {line.split()[0] for line in listed.splitlines() if line.startswith("    ") and line.split()}
    assert {"train", "evaluate", "sweep", "project"} <= names
    for cmd in ("train", "evaluate", "sweep", "project"):
        sub = main_in_process(cmd, "--help")
        assert sub.returncode == 0 and sub.stdout.startswith(f"usage: python -m vae_core {cmd}")


def test_train_writes_a_loadable_checkpoint_with_its_history(trained, tiny_npz):
    from vae_core.checkpoints import load_checkpoint
    out, run = trained
    ckpt = load_checkpoint(out)
    assert [h["epoch"] for h in ckpt.history] == [1, 2]
    assert all(np.isfinite(h["train_loss"]) and np.isfinite(h["test_loss"]) for h in ckpt.history)
    assert ckpt.model_config.kind == "vae" and ckpt.model_config.latent_dim == 2
    assert ckpt.model_config.hidden == (32,) and ckpt.model_config.image_shape == (1, 8, 8)
    assert ckpt.train_config.beta == 2.0 and ckpt.train_config.seed == 3 and ckpt.train_config.batch_size == 32
    assert ckpt.dataset == str(tiny_npz)
    # The quick metrics travel with every trained model; log p(x) only with --evaluate.
    assert {"loss", "recon", "kl", "active_units", "kl_per_dim", "knn_acc"} <= set(ckpt.metrics)
    assert ckpt.metrics["log_px"] is None and ckpt.metrics["iw_samples"] == 0
    # The progress bar is driven by fit's callback: one bar per epoch, the loss in its postfix.
    assert "epoch 2/2" in run.stderr and "loss=" in run.stderr
    assert "saved" in run.stderr


def test_train_is_repeatable_with_a_seed(tiny_npz, tmp_path):
    import torch
    from vae_core.checkpoints import load_checkpoint
    # In this process (two runs with the same thread count), not against the subprocess above:
    # float sums may differ between thread counts.
    runs = []
    for name in ("again", "and-again"):
        run = main_in_process("train", "--dataset", tiny_npz, "--epochs", 2, "--beta", 2, *TINY_IN, "--quiet",
                              "--out", tmp_path / name)
        assert run.returncode == 0, run.stderr
        runs.append(load_checkpoint(tmp_path / f"{name}.safetensors"))
    a, b = runs[0].history, runs[1].history
    assert all(torch.equal(runs[0].model.state_dict()[k], v) for k, v in runs[1].model.state_dict().items())
    assert [h["train_loss"] for h in a] == [h["train_loss"] for h in b]


def test_train_ae_half_precision(tiny_npz, tmp_path):
    from safetensors.torch import load_file
    from vae_core.checkpoints import load_checkpoint
    out = tmp_path / "ae"
    run = main_in_process("train", "--dataset", tiny_npz, "--model", "ae", "--epochs", 1, *TINY_IN, "--half",
                          "--quiet", "--out", out)
    assert run.returncode == 0, run.stderr
    path = tmp_path / "ae.safetensors"        # the suffix is added
    assert all(str(v.dtype) == "torch.float16" for v in load_file(path).values())
    assert load_checkpoint(path).model_config.kind == "ae"


def test_evaluate_json_prints_one_object_and_write_stores_it(trained, tmp_path):
    import shutil
    from vae_core.checkpoints import read_info
    out = tmp_path / "copy.safetensors"
    shutil.copy(trained[0], out)
    run = cli("evaluate", out, "--json", "--iw-samples", 8, "--write")
    assert run.returncode == 0, run.stderr
    lines = run.stdout.strip().splitlines()
    assert len(lines) == 1
    metrics = json.loads(lines[0])
    for key in ("loss", "recon", "kl", "log_px", "active_units", "knn_acc"):
        assert key in metrics, key
    assert np.isfinite(metrics["loss"]) and metrics["kl"] >= 0
    # The importance-weighted bound is at least the ELBO (on average over the test set).
    assert metrics["log_px"] >= -(metrics["recon"] + metrics["kl"]) - 1.0
    assert 0 <= metrics["knn_acc"] <= 1
    stored = read_info(out)["metrics"]
    assert stored["log_px"] == pytest.approx(metrics["log_px"])


def test_sweep_writes_one_checkpoint_per_model(tiny_npz, tmp_path):
    from vae_core.checkpoints import load_checkpoint
    run = cli("sweep", "--dataset", tiny_npz, "--betas", "1,4", "--epochs", 1, *TINY,
              "--out-dir", tmp_path / "sweep", "--prefix", "bars")
    assert run.returncode == 0, run.stderr
    names = sorted(p.name for p in (tmp_path / "sweep").iterdir())
    assert names == ["bars-ae.safetensors", "bars-vae-b1.safetensors", "bars-vae-b4.safetensors"]
    assert sorted(run.stdout.split()) == [str(tmp_path / "sweep" / n) for n in
                                          ["bars-ae.safetensors", "bars-vae-b1.safetensors", "bars-vae-b4.safetensors"]]
    kinds = {n: load_checkpoint(tmp_path / "sweep" / n) for n in names}
    assert kinds["bars-ae.safetensors"].model_config.kind == "ae"
    assert kinds["bars-vae-b4.safetensors"].train_config.beta == 4.0
    assert all(len(c.history) == 1 for c in kinds.values())
    # On Ray, in parallel: one progress bar per model, each run to its end.
    for name in ("bars-ae", "bars-vae-b1", "bars-vae-b4"):
        assert f"{name}: 100%" in run.stderr, name


def test_sweep_no_ae(tiny_npz, tmp_path):
    run = main_in_process("sweep", "--dataset", tiny_npz, "--betas", "2", "--no-ae", "--epochs", 1, *TINY_IN,
                          "--quiet", "--out-dir", tmp_path, "--prefix", "p")
    assert run.returncode == 0, run.stderr
    assert sorted(p.name for p in tmp_path.glob("*.safetensors")) == ["p-vae-b2.safetensors"]


@pytest.mark.parametrize("suffix", [".npz", ".csv"])
def test_project_writes_a_map(trained, tmp_path, suffix):
    from vae_core.checkpoints import load_checkpoint
    from vae_core.data import load_dataset
    ckpt = load_checkpoint(trained[0])
    test = load_dataset(ckpt.dataset, "test")
    out = tmp_path / ("map" + suffix)
    runner = cli if suffix == ".npz" else main_in_process   # one real process is enough
    run = runner("project", trained[0], "--method", "pca", "--points", 10, "--out", out)
    assert run.returncode == 0, run.stderr
    if suffix == ".npz":
        with np.load(out) as f:
            xy, labels, indices = f["xy"], f["labels"], f["indices"]
    else:
        rows = np.loadtxt(out, delimiter=",", skiprows=1)
        xy, labels, indices = rows[:, :2], rows[:, 2].astype(int), rows[:, 3].astype(int)
    assert xy.shape == (10, 2) and np.isfinite(xy).all()
    assert len(set(indices.tolist())) == 10 and indices.max() < len(test)
    # Each point keeps the label of the image it came from.
    assert labels.tolist() == test.y.numpy()[indices].tolist()
    # The map is the library's projection of exactly these images' codes.
    import torch
    from vae_core.projections import project
    with torch.no_grad():
        codes = ckpt.model.embed(test.x[torch.from_numpy(np.asarray(indices))]).numpy()
    assert np.allclose(xy, project(codes, "pca", seed=0), atol=1e-4)


def test_ctrl_c_stops_and_saves_the_model_so_far(tiny_npz, tmp_path):
    from vae_core.checkpoints import load_checkpoint
    out = tmp_path / "stopped.safetensors"
    proc = subprocess.Popen([sys.executable, "-m", "vae_core", "train", "--dataset", str(tiny_npz),
                             "--epochs", "100000", *TINY, "--out", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_env())
    seen, deadline = b"", time.monotonic() + 60
    while b"epoch 2/" not in seen and time.monotonic() < deadline:   # wait until training runs
        chunk = os.read(proc.stderr.fileno(), 4096)
        if not chunk:
            break
        seen += chunk
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    err = (seen + err).decode()
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    ckpt = load_checkpoint(out)
    assert 1 <= len(ckpt.history) < 100000
    assert "stopped early" in err


# ---------------------------------------------------------------- mistakes: one line, no traceback

BAD = [
    (["train", "--dataset", "digits", "--beta", "-1", "--out", "x"], ["beta", "-1"]),
    (["train", "--dataset", "digits", "--model", "ae", "--beta", "-1", "--out", "x"], ["beta", "-1"]),
    (["train", "--dataset", "digits", "--latent-dim", "0", "--out", "x"], ["latent size 0"]),
    (["train", "--dataset", "no-such-set", "--out", "x"], ["no-such-set", "mnist"]),
    (["train", "--dataset", "missing.npz", "--out", "x"], ["missing.npz"]),
    (["train", "--dataset", "digits", "--epochs", "0", "--out", "x"], ["epochs"]),
    (["train", "--dataset", "digits", "--hidden", "4x0", "--out", "x"], ["4x0"]),
    (["train", "--dataset", "digits", "--lr", "nan", "--out", "x"], ["learning rate"]),
    (["train", "--dataset", "digits", "--model", "gan", "--out", "x"], ["gan"]),
    (["train", "--dataset", "digits", "--precision", "fp8", "--out", "x"], ["fp8"]),
    (["train", "--dataset", "digits", "--out", "bad name"], ["bad name"]),
    (["train", "--dataset", "digits"], ["--out"]),
    (["sweep", "--dataset", "digits", "--betas", "1,-2", "--out-dir", "s"], ["-2"]),
    (["sweep", "--dataset", "digits", "--betas", "one", "--out-dir", "s"], ["one"]),
    (["evaluate", "no-such.safetensors"], ["no-such.safetensors"]),
    (["project", "no-such.safetensors", "--out", "m.npz"], ["no-such.safetensors"]),
    (["frobnicate"], ["frobnicate"]),
]


@pytest.mark.parametrize("args, words", [BAD[0], BAD[-3]])
def test_bad_arguments_exit_with_one_clear_line(args, words, tmp_path):
    run = cli(*args, cwd=tmp_path)
    assert_one_line_error(run, *words)
    assert not list(tmp_path.iterdir())     # nothing was written


@pytest.mark.parametrize("args, words", BAD)
def test_bad_arguments_in_process(args, words, tmp_path, monkeypatch):
    """Every mistake through main() itself (the subprocess test above covers a sample of them:
    a new interpreter per case would cost seconds each)."""
    monkeypatch.chdir(tmp_path)
    assert_one_line_error(main_in_process(*args), *words)
    assert not list(tmp_path.iterdir())


def test_corrupt_checkpoint_is_one_line(tmp_path):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all")
    assert_one_line_error(cli("evaluate", bad, "--json"), "bad.safetensors")
    assert_one_line_error(main_in_process("project", bad, "--out", tmp_path / "m.npz"), "bad.safetensors")


def test_project_refuses_an_unknown_output_type(trained, tmp_path):
    assert_one_line_error(main_in_process("project", trained[0], "--out", tmp_path / "map.png"), "map.png", ".npz")


def test_evaluate_refuses_negative_iw_samples(trained):
    assert_one_line_error(main_in_process("evaluate", trained[0], "--iw-samples", "-5"), "-5")


def test_divergence_is_one_line(tiny_npz, tmp_path):
    run = main_in_process("train", "--dataset", tiny_npz, "--lr", "1e6", "--epochs", 3, *TINY_IN, "--quiet",
                          "--out", tmp_path / "boom")
    assert_one_line_error(run, "learning rate")


def test_a_run_that_diverges_later_never_replaces_an_existing_file(tiny_npz, tmp_path):
    """Learning rate 3 on the bars: epoch 1 ends sound, epoch 2 explodes. The good epoch is kept,
    beside the file that was already there, never over it, even with --overwrite (which is for a
    finished model, not a failed one)."""
    out = tmp_path / "boom.safetensors"
    out.write_bytes(b"an earlier model, not to be touched")
    run = main_in_process("train", "--dataset", tiny_npz, "--lr", 3, "--epochs", 4, *TINY_IN, "--quiet",
                          "--precision", "float32", "--overwrite", "--out", out)
    assert_one_line_error(run, "epoch 2", "boom-diverged-epoch1.safetensors")
    assert out.read_bytes() == b"an earlier model, not to be touched"
    from vae_core.checkpoints import load_checkpoint
    kept = load_checkpoint(tmp_path / "boom-diverged-epoch1.safetensors")
    assert [r["epoch"] for r in kept.history] == [1]


def test_classifier_maps_and_table_build_a_shipped_folder(tiny_npz, tmp_path):
    """The steps of checkpoints/rebuild.sh after the sweeps, on tiny data: a classifier that
    evaluate then uses by default, maps for every model with d > 2, and the README table."""
    folder = tmp_path / "ckpts"
    run = main_in_process("sweep", "--dataset", tiny_npz, "--epochs", 1, "--betas", "1", "--latent-dim", 3,
                          "--hidden", 16, "--quiet", "--out-dir", folder, "--prefix", "bars")
    assert run.returncode == 0, run.stderr
    clf = folder / "classifiers" / "bars.npz-classifier.safetensors"
    run = main_in_process("classifier", "--dataset", tiny_npz, "--epochs", 1, "--out", clf)
    assert run.returncode == 0, run.stderr
    assert clf.is_file() and "test accuracy" in run.stdout
    run = main_in_process("evaluate", folder / "bars-vae-b1.safetensors", "--json", "--iw-samples", 5, "--write")
    assert run.returncode == 0, run.stderr
    assert 1.0 <= json.loads(run.stdout)["prior_classifier_score"] <= 3.0   # 3 classes at most

    run = main_in_process("maps", folder)
    assert run.returncode == 0, run.stderr
    assert len(list((folder / "maps").glob("*.npz"))) == 2 * 3   # two models with d = 3, three methods

    readme = folder / "README.md"
    readme.write_text("# Models\n\n<!-- table -->\nold\n<!-- /table -->\n\nMore text.\n")
    run = main_in_process("table", folder, "--readme", readme)
    assert run.returncode == 0, run.stderr
    text = readme.read_text()
    assert "old" not in text and "More text." in text
    assert "| bars-vae-b1 |" in text and "| bars-ae |" in text
    no_markers = tmp_path / "plain.md"
    no_markers.write_text("no table here\n")
    assert_one_line_error(main_in_process("table", folder, "--readme", no_markers), "<!-- table -->")


def test_exact_stores_the_ranking_of_each_2d_vae_and_no_other(tiny_npz, tmp_path):
    """rebuild.sh's `exact` step: a 2-D VAE gets its file in FOLDER/exact, the AE none."""
    from vae_core.checkpoints import load_checkpoint
    from vae_core.exact import RANK_KEYS, ranking_id, read_ranking
    folder = tmp_path / "ckpts"
    run = main_in_process("sweep", "--dataset", tiny_npz, "--epochs", 1, "--betas", "1", "--latent-dim", 2,
                          "--hidden", 16, "--quiet", "--out-dir", folder, "--prefix", "bars")
    assert run.returncode == 0, run.stderr
    run = main_in_process("exact", folder)
    assert run.returncode == 0, run.stderr
    assert "1 models' rankings" in run.stdout
    assert len(list((folder / "exact").glob("*.json"))) == 1
    vae = load_checkpoint(folder / "bars-vae-b1.safetensors")
    values = read_ranking(folder, ranking_id(vae.model, vae.digest), vae.dataset)
    assert values is not None and set(values) == set(RANK_KEYS)
    assert values["exact log p(x)"] >= values["IWAE, K = 1000"] - 0.05 >= values["ELBO"] - 0.1
    ae = load_checkpoint(folder / "bars-ae.safetensors")
    assert read_ranking(folder, ranking_id(ae.model, ae.digest), ae.dataset) is None
    assert_one_line_error(main_in_process("exact", tmp_path / "nowhere"), "not a folder")


# ---------------------------------------------------------------- the command line loses nothing

def test_train_refuses_an_existing_out_before_training_and_replaces_it_only_when_asked(tiny_npz, tmp_path):
    out = tmp_path / "kept.safetensors"
    out.write_bytes(b"an earlier model")
    run = main_in_process("train", "--dataset", tiny_npz, "--epochs", 1, *TINY_IN, "--out", out)
    assert run.returncode == 2 and "already exists" in run.stderr and "--overwrite" in run.stderr
    assert "epoch" not in run.stderr                       # refused before any training
    assert out.read_bytes() == b"an earlier model"
    run = main_in_process("train", "--dataset", tiny_npz, "--epochs", 1, *TINY_IN, "--out", out, "--overwrite")
    assert run.returncode == 0, run.stderr
    from vae_core.checkpoints import load_checkpoint
    assert load_checkpoint(out).model_config.latent_dim == 2


def test_train_into_a_folder_it_cannot_write_stops_before_training(tiny_npz, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    run = main_in_process("train", "--dataset", tiny_npz, "--epochs", 50, *TINY_IN,
                          "--out", blocker / "sub" / "m.safetensors")
    assert run.returncode == 2 and "before training" in run.stderr and "Traceback" not in run.stderr
    assert "epoch" not in run.stderr


def test_a_saved_checkpoint_gets_the_umask_mode_and_stale_temporaries_go(tiny_npz, tmp_path):
    import os
    import time
    stale = tmp_path / ".old.safetensors1234abcd.tmp"
    fresh = tmp_path / ".busy.safetensors5678efgh.tmp"
    for p in (stale, fresh):
        p.write_bytes(b"left by a killed save")
    two_hours_ago = time.time() - 7200
    os.utime(stale, (two_hours_ago, two_hours_ago))
    old = os.umask(0o027)
    try:
        run = main_in_process("train", "--dataset", tiny_npz, "--epochs", 1, *TINY_IN,
                              "--out", tmp_path / "m.safetensors")
    finally:
        os.umask(old)
    assert run.returncode == 0, run.stderr
    assert (tmp_path / "m.safetensors").stat().st_mode & 0o777 == 0o640
    assert not stale.exists() and fresh.exists()            # a save in progress elsewhere is left alone


@pytest.mark.parametrize("flag, value, words", [
    ("--seed", str(2**70), "seed"), ("--seed", "-1", "seed"), ("--epochs", "0", "epochs"),
    ("--lr", "nan", "learning rate"), ("--batch-size", "-3", "batch"),
])
def test_every_bad_number_gets_its_own_one_line_message(tiny_npz, tmp_path, flag, value, words):
    run = main_in_process("train", "--dataset", tiny_npz, *TINY_IN, flag, value, "--out", tmp_path / "m")
    assert run.returncode == 2, (run.returncode, run.stderr)
    lines = [line for line in run.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and words in lines[0], run.stderr
    assert "unexpected" not in lines[0]

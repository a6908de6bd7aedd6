"""Work done once when the server starts, so that its first visitor does not wait for it.

app.py's start-up hook runs `run()` in a thread as soon as the server listens. It imports the
heavy libraries (the `explorer` package imports PyTorch, plotly and pandas in one fixed order)
and loads what the home page shows first: the model list, the default pair and the test images.
A visitor who arrives before it has finished simply waits for the rest (Python lets one thread
initialise a module while the others wait; the caches below are Streamlit's, shared by every
session). A failure here costs only speed: the page then does the work itself and shows any error.

A few seconds later (VAE_WARM_VIEWS_DELAY_S, 3 by default: after the first page has been drawn),
in a thread of its own at a lower priority, and one step at a time in the gaps when no page or
fragment runs (wait_for_quiet: a lower priority does not stop a thread from holding the GIL), it
computes what some views take seconds to compute on a first visit, for the models a class starts
with: the Few labels page's accuracy curves and the Latent arithmetic page's vectors (each vector
on its default image, and its effect on the held-out images), for the default pair and for the
20-D pair both pages' buttons offer, the Few labels curves standardised for the default pair, and
the True posterior page's first image for the default VAE; then these pages for each other
shipped model (MNIST's first, then the other datasets'). VAE_WARM_VIEWS=0 leaves that to the
first visitors.
"""
from __future__ import annotations

import logging
import os
import sys
import threading
import time

from explorer import background


def _split(infos: list) -> tuple[list, list]:
    """(VAEs, AEs) among the model infos."""
    return ([i for i in infos if i["model_config"]["kind"] == "vae"],
            [i for i in infos if i["model_config"]["kind"] == "ae"])


def _pair(vaes: list, aes: list, name) -> list:
    """The checkpoints the sidebar shows for the VAE `name`: it and its AE (sidebar.preferred_ae)."""
    from explorer import models, sidebar  # noqa: PLC0415
    vae = next((i for i in vaes if i["name"] == name), None)
    if vae is None:
        return []
    ae_name = sidebar.preferred_ae(vae, aes)
    return [models.load_model(i["path"]) for i in [vae] + [i for i in aes if i["name"] == ae_name]]


def warm(started: float) -> dict:
    """List the models, load the default pair, the dataset's test images and the home page's
    first reconstructions; the seconds each step took (imports: since `started`)."""
    from explorer import models, sidebar  # noqa: PLC0415
    took = {"imports": time.perf_counter() - started}
    t = time.perf_counter()
    infos = models.list_models()
    took["model list"] = time.perf_counter() - t
    mnist = [i for i in infos if i["dataset"] == "mnist"] or infos
    if mnist:
        t = time.perf_counter()
        vaes, aes = _split(mnist)
        pair = _pair(vaes, aes, sidebar.preferred_vae(vaes, aes))
        took["default pair"] = time.perf_counter() - t
        t = time.perf_counter()
        dataset = mnist[0]["dataset"] or "mnist"
        data = models.exploration_data(dataset)
        took["test images"] = time.perf_counter() - t
        t = time.perf_counter()
        idx = models.shown_indices(len(data), 0)
        for ckpt in pair:
            models.reconstruct(ckpt, models.ckpt_key(ckpt), dataset, idx)
        took["home reconstructions"] = time.perf_counter() - t
    return took


def warm_views() -> dict:
    """Fill the Few labels, Latent arithmetic and True posterior pages' caches for the default
    pair and for the larger pair their buttons offer, then for every other shipped model (MNIST's
    first); the seconds each step took."""
    from explorer import arithmetic as ar  # noqa: PLC0415
    from explorer import families, models, posterior, sidebar  # noqa: PLC0415
    from explorer import fewlabels as fx  # noqa: PLC0415
    from vae_core import runmeta  # noqa: PLC0415
    took = {}
    infos = [i for i in models.list_models() if i["dataset"] == "mnist"]
    if not infos or models.labels("mnist") is None:
        return took
    vaes, aes = _split(infos)
    groups = families.groups(infos)

    def pair_of(vae_name: str) -> tuple:
        """(the pair's checkpoints, the other members of the VAE's β family)."""
        vae = next(i for i in vaes if i["name"] == vae_name)
        family = [i for i in groups.get(runmeta.family_key(vae), [vae])
                  if families.beta_of(i) is not None and i["name"] != vae["name"]]
        return _pair(vaes, aes, vae_name), [models.load_model(i["path"]) for i in family]

    default = sidebar.preferred_vae(vaes, aes)
    if default is None:
        return took
    big = [i for i in vaes if i["model_config"]["latent_dim"] > 2]
    larger = sidebar.preferred_vae(big, aes) if big else None
    steps = [("few labels, default pair", lambda: fx.warm("mnist", *pair_of(default), std=False)),
             ("latent arithmetic, default pair", lambda: ar.warm("mnist", pair_of(default)[0])),
             ("true posterior, default pair", lambda: posterior.warm("mnist", pair_of(default)[0]))]
    if larger:
        steps += [("few labels, larger pair", lambda: fx.warm("mnist", *pair_of(larger), std=False)),
                  ("latent arithmetic, larger pair", lambda: ar.warm("mnist", pair_of(larger)[0]))]
    steps.append(("few labels standardised, default pair", lambda: fx.warm("mnist", *pair_of(default), std=True)))
    # Then every other shipped model, one at a time (a teacher's first pick of another β or d on
    # these pages then answers at once: Few labels took 0.3 s for a 2-D VAE and 2.3 s for a 20-D
    # family, Latent arithmetic 0.3-0.5 s). About a second of CPU per model, at the lower priority.
    # The other datasets' shipped models come last (a class switches dataset less often).
    shipped = models.shipped_names()
    done = {default, larger} | {sidebar.preferred_ae(i, aes) for i in vaes if i["name"] in (default, larger)}
    # Each step loads its dataset itself: one that cannot be read fails that step alone.
    others = [i for i in models.list_models() if i["name"] in shipped and i["name"] not in done and i["dataset"]]
    for info in sorted(others, key=lambda i: (i["dataset"] != "mnist", i["dataset"],
                                              i["model_config"]["latent_dim"], i["name"])):
        views = [("few labels", lambda d, c: fx.warm(d, c, [], std=False)), ("latent arithmetic", ar.warm)]
        if info["model_config"]["kind"] == "vae" and info["model_config"]["latent_dim"] == 2:
            views.append(("true posterior", posterior.warm))
        for view, warm_one in views:
            steps.append((f"{view}, {info['name']}",
                          lambda path=info["path"], data=info["dataset"], warm_one=warm_one:
                          models.labels(data) is not None and warm_one(data, [models.load_model(path)])))
    for what, step in steps:
        wait_for_quiet()
        t = time.perf_counter()
        try:
            step()
        except Exception as e:      # noqa: BLE001 - one view's failure leaves the others warmed
            took[what] = f"failed ({type(e).__name__}: {e})"
            continue
        took[what] = time.perf_counter() - t
    return took


# How long no page or fragment must have run before a warm-up step starts. A page's run ends
# before its browser has drawn it (up to a second more on 2 cores, bench/bench_browser.py), and a
# step's PyTorch threads would take the CPU from that browser on the same machine.
QUIET_S = 2.0
MAX_WAIT_S = 300.0  # a server never that quiet still gets its steps, one per five minutes at most


def wait_for_quiet(quiet_s: float = QUIET_S, poll_s: float = 0.1, max_wait_s: float = MAX_WAIT_S) -> None:
    """Return once no page or fragment has run for quiet_s seconds (explorer.timing.quiet_for),
    or after max_wait_s: the warm-up works in the gaps between visitors' runs. A visitor who
    arrives during a step waits at most for that step to end (most take 0.2-0.8 s; the longest,
    the default pair's Few labels curves, about 2.5 s)."""
    from explorer import timing  # noqa: PLC0415
    deadline = time.monotonic() + max_wait_s
    while timing.quiet_for() < quiet_s and time.monotonic() < deadline:
        time.sleep(poll_s)


def _report(what: str, took: dict) -> None:
    print(f"{what}: " + ", ".join(f"{k} {v:.2f} s" if isinstance(v, float) else f"{k} {v}" for k, v in took.items()),
          file=sys.stderr, flush=True)


def _run_views(delay: float) -> None:
    """warm_views() after `delay` seconds, in a thread of its own at a lower priority (set before
    it starts PyTorch's thread pool, whose threads then inherit it)."""
    time.sleep(delay)
    background.give_way()
    try:
        took = warm_views()
    except Exception as e:          # noqa: BLE001 - only speed is lost
        print(f"start-up warm-up of the views failed ({type(e).__name__}: {e}); their first visitors "
              "compute them", file=sys.stderr, flush=True)
        return
    _report("start-up warm-up of the views", took)


def run(started: float) -> None:
    """warm(), reporting on the server's log; in the thread app.py starts at `started`
    (time.perf_counter()). Then warm_views() in a thread of its own, unless VAE_WARM_VIEWS=0."""
    # The loaders are Streamlit caches; called outside a visitor's session they log a warning
    # ("missing ScriptRunContext") that means nothing here.
    logging.getLogger("streamlit.runtime.scriptrunner_utils.script_run_context").addFilter(
        lambda record: threading.current_thread().name != "start-up-warm")
    try:
        took = warm(started)
    except Exception as e:          # noqa: BLE001 - only speed is lost; the page reports real errors
        print(f"start-up warm-up failed ({type(e).__name__}: {e}); the first page does the work",
              file=sys.stderr, flush=True)
        return
    _report("start-up warm-up", took)
    if os.environ.get("VAE_WARM_VIEWS", "1") == "0":
        return
    try:
        delay = min(600.0, max(0.0, float(os.environ.get("VAE_WARM_VIEWS_DELAY_S", "3"))))
    except ValueError:
        delay = 3.0
    # The same name: the log filter above keeps its cache warnings out of the server's log.
    threading.Thread(target=_run_views, args=(delay,), name="start-up-warm", daemon=True).start()

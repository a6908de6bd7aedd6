"""Load test: N browser sessions at once against a real `streamlit run app.py`.

Starts the app on a free 127.0.0.1 port, opens one headless Chromium with N contexts (one per
user), and has each user loop through the explorer pages and move a slider for --seconds; M of
them first start a training run on the Train page (--train-preset; by default the MNIST 2-D VAE,
about a minute alone, so it trains through most of the run; it goes on while its user browses). Every
action is timed from the action to the page settling (no stale element, no spinner, no running
indicator, element count steady for 0.5 s). Errors are exception elements, error alerts and
timeouts. The server's resident memory is sampled from /proc every 0.25 s.

Before the clock starts the server is warmed as a teacher would (every page opened once, UMAP's
one-off compilation finished; --cold skips this). Users wait --think seconds on average before
each action; an action's time ends when its page last changed. Server rerun times come from
Chromium's network events (rerun request sent -> script_finished received). Chromium runs niced
and on the last core (--browser-nice, --browser-cpus), since in a classroom the browsers run on
the students' machines, not on the server's two cores.

All traffic goes to 127.0.0.1; the run is bounded by --seconds (plus one action's timeout and the
start-up) and stops the server and browser itself. Quick mode: --sessions 2 --seconds 30.

    python bench/bench_load.py --sessions 10 --seconds 120
    python bench/bench_load.py --sessions 2 --seconds 30
"""
from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO))

from browser_support import CHROMIUM, CHROMIUM_ARGS, start_server, stop_server, wait_healthy  # noqa: E402

# page path -> (widget key of a slider on it, or None)
PAGES = [("", None), ("Latent_map", "map_n"), ("Latent_grid", "grid_n"),
         ("Interpolation", "interp_t"), ("Sampling", "samp_temp"), ("Compare_beta", None)]

SETTLED_JS = """() => [
    document.querySelectorAll('[data-testid=stElementContainer]').length,
    document.querySelectorAll('[data-stale=true]').length,
    document.querySelectorAll('[data-testid=stSpinner]').length,
    document.querySelectorAll('[data-testid=stStatusWidget] button').length,
    document.querySelectorAll('[data-testid=stException]').length,
    document.querySelectorAll('[data-testid=stAlertContentError]').length]"""


# ------------------------------------------------------------------ memory sampling

def _rss_kb(pid: int) -> int:
    """VmRSS of pid and its descendants, in kB (0 when gone)."""
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
            for t in Path(f"/proc/{p}/task").iterdir():
                children = (t / "children").read_text().split()
                todo.extend(int(c) for c in children)
        except (OSError, ValueError):
            pass
    return total


class RssSampler(threading.Thread):
    def __init__(self, pid: int, every_s: float = 0.25):
        super().__init__(daemon=True)
        self.pid, self.every_s = pid, every_s
        self.peak_kb = 0
        self.samples: list[tuple[float, int]] = []
        self.stop_event = threading.Event()

    def run(self):
        while not self.stop_event.is_set():
            kb = _rss_kb(self.pid)
            self.samples.append((time.monotonic(), kb))
            self.peak_kb = max(self.peak_kb, kb)
            self.stop_event.wait(self.every_s)

    def peak_hwm_kb(self) -> int:
        """The kernel's own high-water mark of the server process (VmHWM), for comparison."""
        try:
            for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
        except OSError:
            pass
        return 0


# ------------------------------------------------------------------ one simulated user

class Stats:
    def __init__(self):
        self.times: dict[str, list[float]] = {}
        self.errors: list[str] = []
        self.timeouts = 0
        self.trainings_started = 0
        self.trainings_stopped = 0    # still running at the level's end: stopped by their user
        self.trainings_finished = 0   # had finished before the level ended

    def add(self, kind: str, seconds: float):
        self.times.setdefault(kind, []).append(seconds)


async def settle(page, timeout_s: float, quiet_s: float = 0.5) -> tuple:
    """Wait until the page is idle for quiet_s; returns (the last state with its counts of
    exceptions/errors, the moment the page last changed: when it became idle)."""
    await page.wait_for_selector("[data-testid=stMainBlockContainer] [data-testid=stElementContainer]",
                                 timeout=timeout_s * 1000)
    deadline = time.monotonic() + timeout_s
    last, since = None, time.monotonic()
    while time.monotonic() < deadline:
        state = await page.evaluate(SETTLED_JS)
        busy = state[1] or state[2] or state[3]
        if state != last or busy:
            last, since = state, time.monotonic()
        elif time.monotonic() - since >= quiet_s:
            return state, since
        await asyncio.sleep(0.05)
    raise TimeoutError(f"page still busy after {timeout_s:.0f} s")


async def record_errors(page, stats: Stats, where: str, state: list) -> None:
    if state[4] or state[5]:
        texts = await page.locator("[data-testid=stException], [data-testid=stAlertContentError]").all_inner_texts()
        stats.errors.extend(f"{where}: {t[:160]!r}" for t in texts)


TRAIN_PRESET = "MNIST 2-D VAE (about a minute)"


async def start_training(page, url: str, stats: Stats, timeout_s: float) -> str:
    """Start TRAIN_PRESET on the Train page; returns the address's ?trainer= query ("" if none)."""
    t0 = time.monotonic()
    await page.goto(f"{url}/Train", wait_until="domcontentloaded")
    await page.wait_for_selector(".st-key-tr_train", timeout=timeout_s * 1000)
    await settle(page, timeout_s)
    # A rerun that lands while the list is open closes it: open it again, a few times at most.
    for attempt in range(4):
        try:
            await page.locator(".st-key-tr_preset").click(timeout=15_000)
            await page.get_by_role("option", name=TRAIN_PRESET).click(timeout=15_000)
            break
        except Exception as e:  # noqa: BLE001 - playwright's TimeoutError
            if "Timeout" not in type(e).__name__ or attempt == 3:
                raise
            await page.keyboard.press("Escape")
            await settle(page, timeout_s)
    await settle(page, timeout_s)
    button = page.locator(".st-key-tr_train button")
    if await button.is_enabled():
        await button.click()
        stats.trainings_started += 1
    state, _ = await settle(page, timeout_s)
    stats.add("train-start", time.monotonic() - t0)
    await record_errors(page, stats, "Train", state)
    return "?" + page.url.split("?", 1)[1] if "trainer=" in page.url else ""


async def stop_training(page, url: str, query: str, stats: Stats, timeout_s: float) -> None:
    """At the end of a load level the trainer comes back and presses Stop, freeing its job slot
    for the next level's trainers (the Ray queue's workers)."""
    await page.goto(f"{url}/Train{query}", wait_until="domcontentloaded")
    await settle(page, timeout_s)
    stop = page.locator(".st-key-tr_stop button").first   # the live fragment may hold a stale copy a moment
    if await stop.count() and await stop.is_enabled():
        await stop.click()
        stats.trainings_stopped += 1
        await page.get_by_text("Training was stopped").wait_for(timeout=timeout_s * 1000)
    else:
        stats.trainings_finished += 1


async def watch_reruns(page, stats: Stats) -> None:
    """Server rerun times from Chromium's network layer (DevTools Network.webSocketFrame* events,
    with their own timestamps, so a busy renderer does not delay them): from each `rerun_script`
    BackMsg the page sends to the next `script_finished` ForwardMsg it receives. Page opens,
    slider moves and the Train page's live refreshes all count."""
    import base64
    from streamlit.proto.BackMsg_pb2 import BackMsg
    from streamlit.proto.ForwardMsg_pb2 import ForwardMsg
    pending = []

    def kind(cls, payload):
        msg = cls()
        try:
            msg.ParseFromString(base64.b64decode(payload))
        except Exception:  # noqa: BLE001 - not one of Streamlit's messages
            return None
        return msg.WhichOneof("type")

    def sent(e):
        if e["response"].get("opcode") == 2 and kind(BackMsg, e["response"].get("payloadData", "")) == "rerun_script":
            pending.append(e["timestamp"])

    def received(e):
        if pending and e["response"].get("opcode") == 2 and \
                kind(ForwardMsg, e["response"].get("payloadData", "")) == "script_finished":
            stats.add("server rerun", e["timestamp"] - pending.pop(0))
            pending.clear()      # a newer request replaces older ones: Streamlit reruns once

    cdp = await page.context.new_cdp_session(page)
    await cdp.send("Network.enable")
    cdp.on("Network.webSocketFrameSent", sent)
    cdp.on("Network.webSocketFrameReceived", received)


async def user(browser, url: str, idx: int, trains: bool, end_at: float, stats: Stats,
               timeout_s: float, think_s: float = 0.0) -> None:
    rng = random.Random(idx)
    context = await browser.new_context(viewport={"width": 1400, "height": 1000})
    page = await context.new_page()
    page.set_default_timeout(timeout_s * 1000)
    await watch_reruns(page, stats)
    query = ""   # a trainer's ?trainer= token: kept in every address, as the app itself keeps it
    try:
        if trains:
            try:
                query = await start_training(page, url, stats, timeout_s)
            except Exception as e:  # noqa: BLE001 - a failed step is counted, the user goes on
                stats.timeouts += isinstance(e, TimeoutError) or "Timeout" in type(e).__name__
                stats.errors.append(f"user {idx} Train: {type(e).__name__}: {str(e)[:120]}")
        order = PAGES[:]
        rng.shuffle(order)
        i = 0
        while time.monotonic() < end_at:
            path, slider = order[i % len(order)]
            i += 1
            if think_s > 0:                  # a person looks at the page before the next action
                await asyncio.sleep(rng.uniform(0.5, 1.5) * think_s)
                if time.monotonic() >= end_at:
                    break
            try:
                t0 = time.monotonic()
                await page.goto(f"{url}/{path}{query}", wait_until="domcontentloaded")
                # On a slow server the first elements can sit still for a while before the script
                # has run: wait for the page's own slider (when it has one) before judging it idle.
                if slider:
                    await page.wait_for_selector(f".st-key-{slider}", timeout=timeout_s * 1000)
                state, done = await settle(page, timeout_s)
                stats.add("open page", done - t0)
                await record_errors(page, stats, path or "home", state)
                if slider and think_s > 0:
                    await asyncio.sleep(rng.uniform(0.5, 1.5) * think_s)
                if slider and time.monotonic() < end_at:
                    thumb = page.locator(f".st-key-{slider} input[type=range], .st-key-{slider} [role=slider]").first
                    if await thumb.count():
                        t0 = time.monotonic()
                        before = await thumb.get_attribute("aria-valuenow")
                        await thumb.focus()
                        # At the end of its range a slider ignores one direction: go the other way.
                        lo, hi = (await thumb.get_attribute("aria-valuemin"), await thumb.get_attribute("aria-valuemax"))
                        key = ("ArrowRight" if before == lo else "ArrowLeft" if before == hi
                               else rng.choice(["ArrowRight", "ArrowLeft"]))
                        await thumb.press(key)
                        await asyncio.sleep(0.1)   # let the rerun begin before waiting for it to end
                        state, done = await settle(page, timeout_s)
                        stats.add("move slider", done - t0)
                        await record_errors(page, stats, f"{path} slider", state)
            except Exception as e:  # noqa: BLE001
                if isinstance(e, TimeoutError) or "Timeout" in type(e).__name__:
                    stats.timeouts += 1
                stats.errors.append(f"user {idx} {path or 'home'}: {type(e).__name__}: {str(e)[:120]}")
        if query:
            try:
                await stop_training(page, url, query, stats, timeout_s)
            except Exception as e:  # noqa: BLE001
                stats.errors.append(f"user {idx} Stop: {type(e).__name__}: {str(e)[:120]}")
    finally:
        await context.close()


def pct(values: list, q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(round(q * (len(s) - 1))))]


async def warm_server(url: str, log: Path, timeout_s: float) -> float:
    """What a teacher does before the class arrives: open every page once (models, codes and maps
    load into the shared caches) and let the server's one-off UMAP compilation finish."""
    from playwright.async_api import async_playwright
    t0 = time.monotonic()
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            page = await (await browser.new_context(viewport={"width": 1400, "height": 1000})).new_page()
            for path, _ in PAGES + [("Train", None)]:
                await page.goto(f"{url}/{path}", wait_until="domcontentloaded")
                await settle(page, timeout_s)
        finally:
            await browser.close()
    while "UMAP warm-up" not in log.read_text(errors="replace") and time.monotonic() - t0 < timeout_s:
        await asyncio.sleep(0.5)
    return time.monotonic() - t0


def niced_chromium(nice: int, cpus: str = "") -> str:
    """A wrapper that starts Chromium at a lower scheduling priority and, with `cpus`, on those
    cores only. The simulated users' browsers share the server's 2 cores here; in a classroom they
    run on the students' own machines. (Chromium, run as root, raises some of its own processes'
    priority again, so the nice level alone does not keep it off the server's core.)"""
    if nice <= 0 and not cpus:
        return CHROMIUM
    prefix = (f"taskset -c {cpus} " if cpus else "") + (f"nice -n {int(nice)} " if nice > 0 else "")
    wrapper = Path(tempfile.mkdtemp(prefix="bench-load-")) / "chromium"
    wrapper.write_text(f'#!/bin/sh\nexec {prefix}{CHROMIUM} "$@"\n')
    wrapper.chmod(0o755)
    return str(wrapper)


async def run_load(url: str, n: int, m: int, seconds: float, timeout_s: float, sampler: RssSampler,
                   think_s: float = 0.0, browser_nice: int = 0, browser_cpus: str = "") -> dict:
    from playwright.async_api import async_playwright
    stats = Stats()
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=niced_chromium(browser_nice, browser_cpus), headless=True,
                                          args=CHROMIUM_ARGS)
        try:
            idle_kb = _rss_kb(sampler.pid)
            t0 = time.monotonic()
            end_at = t0 + seconds
            await asyncio.gather(*(user(browser, url, i, i < m, end_at, stats, timeout_s, think_s) for i in range(n)))
            wall = time.monotonic() - t0
        finally:
            await browser.close()
    return {"stats": stats, "idle_kb": idle_kb, "wall": wall}


def report(n: int, m: int, seconds: float, res: dict, sampler: RssSampler, start_kb: int,
           previous: tuple | None = None) -> None:
    stats = res["stats"]
    print(f"\n== {n} sessions ({m} training), {seconds:.0f} s requested, {res['wall']:.0f} s run ==")
    for kind, ts in sorted(stats.times.items()):
        print(f"  {kind:12s} n={len(ts):4d}  p50={pct(ts, 0.5):6.2f} s  p95={pct(ts, 0.95):6.2f} s  "
              f"max={max(ts):6.2f} s  mean={statistics.fmean(ts):6.2f} s")
    print(f"  trainings started: {stats.trainings_started} of {m}; at the level's end {stats.trainings_stopped} "
          f"were still training (then stopped), {stats.trainings_finished} had finished")
    print(f"  errors: {len(stats.errors)} (of which timeouts: {stats.timeouts})")
    for e in stats.errors[:8]:
        print(f"    {e}")
    peak = sampler.peak_kb
    print(f"  server RSS: after start-up {start_kb / 1024:.0f} MB, before this run {res['idle_kb'] / 1024:.0f} MB, "
          f"peak {peak / 1024:.0f} MB (kernel VmHWM {sampler.peak_hwm_kb() / 1024:.0f} MB)")
    print(f"  RSS per extra session: {(peak - res['idle_kb']) / 1024 / max(n, 1):.1f} MB "
          f"((peak - before) / sessions; includes the caches the first visits fill)")
    if previous:
        n0, peak0 = previous
        print(f"  RSS per extra session vs the {n0}-session level (caches warm): "
              f"{(peak - peak0) / 1024 / max(n - n0, 1):.1f} MB")


def server_runs(log: Path) -> list:
    """(what, ms) for each `rerun <what> <ms>` line the server logged (VAE_LOG_RERUNS=1)."""
    out = []
    for line in log.read_text(errors="replace").splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0] == "rerun":
            try:
                out.append((parts[1], float(parts[2])))
            except ValueError:
                pass
    return out


def report_server_runs(runs: list) -> None:
    """The server's own time per run, from its log: whole pages, slider fragments, the live view."""
    groups = {"page runs (whole script)": [t for w, t in runs if w.startswith("page:")],
              "slider fragment runs": [t for w, t in runs if not w.startswith("page:") and w != "live"],
              "training live-view runs": [t for w, t in runs if w == "live"]}
    print("  on the server itself (its log, VAE_LOG_RERUNS=1):")
    for name, ts in groups.items():
        if ts:
            print(f"    {name:26s} n={len(ts):4d}  p50={pct(ts, 0.5) / 1000:6.3f} s  p95={pct(ts, 0.95) / 1000:6.3f} s  "
                  f"max={max(ts) / 1000:6.3f} s")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sessions", type=int, nargs="+", default=[10, 20],
                    help="concurrent browser sessions; several values run one after another on one server")
    ap.add_argument("--train", type=int, default=2, help="sessions that start a training run (TRAIN_PRESET)")
    ap.add_argument("--seconds", type=float, default=120.0, help="how long each load level lasts")
    ap.add_argument("--timeout", type=float, default=120.0, help="seconds before one action counts as timed out")
    ap.add_argument("--think", type=float, default=2.0,
                    help="mean seconds a user looks before the next action (uniform 0.5x-1.5x; 0: none)")
    ap.add_argument("--browser-cpus", default=str(max(0, (os.cpu_count() or 1) - 1)),
                    help="cores Chromium may use (taskset list; default: the last core; '' for all)")
    ap.add_argument("--cold", action="store_true",
                    help="start the load on a cold server (no page opened before, UMAP warm-up still running)")
    ap.add_argument("--browser-nice", type=int, default=10,
                    help="run Chromium at this nice level so the server is served first (0: same priority)")
    args = ap.parse_args(argv)
    if any(n < 1 or n > 50 for n in args.sessions):
        ap.error("--sessions must be between 1 and 50")
    print(f"bench_load: {os.cpu_count()} CPUs; the machine may be shared with other work, so these "
          "figures are an upper bound on what a quiet machine would show")
    print(f"users think {args.think:g} s on average between actions; Chromium runs at nice {args.browser_nice} "
          f"on core(s) {args.browser_cpus or 'all'}; "
          "'open page' and 'move slider' run until the page last changed; 'server rerun' is request -> "
          "script_finished on the wire")
    with tempfile.TemporaryDirectory(prefix="bench-load-user-") as user_dir:
        env = {"VAE_USER_DIR": user_dir, "VAE_LOG_RERUNS": "1"}
        log = Path(user_dir) / "server.log"
        proc, url = start_server(env=env, log_path=log)
        sampler = None
        try:
            took = wait_healthy(url, proc, timeout=120)
            print(f"server healthy at {url} after {took:.1f} s")
            if not args.cold:
                warm = asyncio.run(warm_server(url, log, args.timeout))
                print(f"warmed up in {warm:.0f} s: every page opened once, UMAP compiled "
                      f"({next((l for l in log.read_text(errors='replace').splitlines() if 'UMAP warm-up' in l), 'no report')})")
            sampler = RssSampler(proc.pid)
            sampler.start()
            time.sleep(0.5)
            start_kb = _rss_kb(proc.pid)
            previous = None
            for n in args.sessions:
                sampler.peak_kb = 0
                logged = len(server_runs(log))
                res = asyncio.run(run_load(url, n, min(args.train, n), args.seconds, args.timeout, sampler,
                                           args.think, args.browser_nice, args.browser_cpus))
                report(n, min(args.train, n), args.seconds, res, sampler, start_kb, previous)
                report_server_runs(server_runs(log)[logged:])
                previous = (n, sampler.peak_kb)
        finally:
            if sampler:
                sampler.stop_event.set()
            stop_server(proc)


if __name__ == "__main__":
    main()

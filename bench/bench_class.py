"""A class trains at once: N students submit the Train page's fast preset within a minute.

    nice -n 10 python bench/bench_class.py                      # 30 students over 60 s, then two nodes
    nice -n 10 python bench/bench_class.py --students 6 --spread 10
    nice -n 10 python bench/bench_class.py --skip-browser --skip-two-node

Part A, local: a Ray head of ONE worker CPU (VAE_RAY_CPUS=1, its own VAE_RAY_DIR), started as the
server starts it (vae_core.cluster.connect). Each simulated student has its own random owner token
and submits "Fast demo (8x8 digits, seconds)" (the AE and the VAE, same seed: two models) through
vae_core.jobs.submit from a thread, at a random time within --spread seconds; their Train pages'
polls (jobs.view every 1 s, as the page's live fragment does) run from one thread. Printed: refusals,
finished jobs, makespan, throughput, each student's wait (submit -> first model starts) and
turnaround (submit -> last model ends) against an ideal first-come-first-served queue by owner (each
job's models one after another, in submit order, on the same number of workers, with the same
measured run times), and the page's first estimate of the start against the real start.

Meanwhile a real Chromium (niced, as bench_app's --browser-nice) moves the Interpolation page's
slider on `streamlit run app.py` about once a second until the queue has drained: time from the key
press to the new images drawn (goal p95 <= 300 ms), with the server's own fragment time.

Memory: the processes of the head's session (Ray's own: head, GCS, raylet, workers, the queue
actor) with no training, with one training, and with one training and ten jobs queued; and what
connecting adds to the driver process (the web server in production).

Part B, two nodes: a subprocess makes ray.cluster_utils.Cluster with a head of 1 CPU and a second
node of 1 CPU, both on this machine (two simulated nodes sharing its cores, not two machines),
joins it through RAY_ADDRESS with Ray's token authentication, and replays the same submissions.
Throughput of 2 workers against the 1 worker of part A.

Everything started here is stopped at the end, also on error. Run it niced on a shared machine.
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import random
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "tests"), str(REPO / "bench")]

FAST = "Fast demo (8x8 digits, seconds)"
GOAL_BROWSER_MS = 300.0


def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q / 100 * (len(xs) - 1))))] if xs else float("nan")


def load() -> float:
    return os.getloadavg()[0]


# ---------------------------------------------------------------- memory of processes

def _proc_mem(pid: int) -> tuple:
    """(rss kB, pss kB, name) of one process; (0, 0, '') when it is gone."""
    rss = pss = 0
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    pss = int(line.split()[1])
        except OSError:
            pss = rss
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        name = argv[0].decode(errors="replace")
        if name.endswith("python") or "python3" in name:     # `python -m ray... start`, `python .../default_worker.py`
            name = next((a.decode(errors="replace") for a in argv[1:] if a and not a.startswith(b"-")), name)
        name = Path(name.split()[0]).name if name else "?"
    except (OSError, ValueError, IndexError):
        return 0, 0, ""
    return rss, pss, name


def mem_of(pids) -> dict:
    rss = pss = n = 0
    names = collections.Counter()
    for pid in pids:
        r, p, name = _proc_mem(pid)
        if name:
            rss, pss, n = rss + r, pss + p, n + 1
            names[name] += 1
    return {"n": n, "rss_mb": rss / 1024, "pss_mb": pss / 1024,
            "names": ", ".join(f"{k}×{v}" if v > 1 else k for k, v in sorted(names.items()))}


def head_pids(folder: Path) -> list:
    from vae_core import cluster
    sid = int(json.loads((folder / "head.json").read_text())["pid"])
    return cluster._session_pids(sid)


def descendants(root: int) -> list:
    children = collections.defaultdict(list)
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                children[ppid].append(int(entry.name))
            except (OSError, IndexError, ValueError):
                pass
    out, todo = [], [root]
    while todo:
        for c in children.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


def show_mem(label: str, m: dict) -> None:
    print(f"  {label:<38} {m['n']:3d} processes  RSS {m['rss_mb']:7.0f} MB  PSS {m['pss_mb']:7.0f} MB")


# ---------------------------------------------------------------- the students

def fast_spec():
    import logging

    import streamlit.runtime.caching.cache_data_api   # noqa: F401 - its "no runtime" warning is expected here
    logging.getLogger("streamlit.runtime.caching.cache_data_api").setLevel(logging.ERROR)
    from explorer import training as tr
    return tr.spec_from_values({**tr.DEFAULTS, **tr.PRESETS[FAST]})


def plan(n: int, spread: float, seed: int) -> list:
    """Submission offsets (s after the start), sorted; the same for both parts."""
    rng = random.Random(seed)
    return sorted(rng.uniform(0, spread) for _ in range(n))


class Drain:
    """Submit at the planned offsets from one thread per student; poll every submitted job once a
    second (as each student's open Train page does) until all are done or `timeout` passes."""

    def __init__(self, offsets: list, timeout: float, sample=None):
        self.offsets, self.timeout, self.sample = offsets, timeout, sample
        self.students = [{"i": i, "owner": secrets.token_hex(16), "offset": o, "submit": None,
                          "submit_s": None, "refused": None, "first": None, "seen_running": None,
                          "done": False, "view": None} for i, o in enumerate(offsets)]
        self.finished = threading.Event()
        self.view_errors = 0
        self.loads: list = []
        self.mem: list = []
        self.lock = threading.Lock()

    def _student(self, s: dict, spec) -> None:
        from vae_core import jobs
        time.sleep(max(0.0, self.t0 + s["offset"] - time.time()))
        t = time.time()
        try:
            jobs.submit(s["owner"], spec)
        except Exception as e:      # noqa: BLE001 - any refusal is what we count
            s["refused"] = f"{type(e).__name__}: {e}"
        s["submit_s"] = time.time() - t
        with self.lock:
            s["submit"] = t

    def _poll(self) -> None:
        from vae_core import jobs
        last_sample = 0.0
        while time.time() < self.t0 + self.timeout:
            t_round = time.time()
            with self.lock:
                active = [s for s in self.students if s["submit"] is not None and not s["refused"] and not s["done"]]
            for s in active:
                try:
                    v = jobs.view(s["owner"])
                except Exception:       # noqa: BLE001 - counted; the page would show a warning
                    self.view_errors += 1
                    continue
                if v is None:
                    continue
                now = time.time()
                if s["first"] is None:
                    s["first"] = {"place": v.place, "eta_start": v.eta_start, "status": v.status}
                if s["seen_running"] is None and any(r.status in ("running", "evaluating") or r.started for r in v.runs):
                    s["seen_running"] = now
                if v.done:
                    s["done"] = True
                    s["view"] = {"status": v.status, "created": v.created,
                                 "runs": [{"status": r.status, "started": r.started, "ended": r.ended,
                                           "seconds": r.seconds} for r in v.runs]}
            if time.time() - last_sample >= 5.0:
                last_sample = time.time()
                self.loads.append(load())
                if self.sample is not None:
                    self.mem.append(self.sample())
            if all(s["submit"] is not None and (s["refused"] or s["done"]) for s in self.students):
                break
            time.sleep(max(0.05, 1.0 - (time.time() - t_round)))
        self.finished.set()

    def start(self) -> None:
        spec = fast_spec()
        self.t0 = time.time()
        self.threads = [threading.Thread(target=self._student, args=(s, spec), daemon=True) for s in self.students]
        for t in self.threads:
            t.start()
        self.poller = threading.Thread(target=self._poll, daemon=True)
        self.poller.start()

    def wait(self) -> None:
        self.poller.join()


def fifo_ideal(jobs: list, workers: int) -> list:
    """Ideal first-come-first-served by owner: the jobs' runs in submit order (a job's runs in its
    own order, back to back in the line), each started on the worker free first, no earlier than
    its job's submission. jobs: [(submit, [run seconds])]. Returns [(first start, last end)] in
    the same order. On 1 worker this is one job after another; on 2 a job's AE and VAE may train
    at once, as the real queue allows (2 runs per owner)."""
    free = [0.0] * workers
    out = [None] * len(jobs)
    for k in sorted(range(len(jobs)), key=lambda k: jobs[k][0]):
        submit, durations = jobs[k]
        starts, ends = [], []
        for d in durations:
            w = min(range(workers), key=lambda i: free[i])
            start = max(free[w], submit)
            free[w] = start + d
            starts.append(start)
            ends.append(start + d)
        out[k] = (min(starts), max(ends))
    return out


def analyse(d: Drain, workers: int) -> dict:
    st = d.students
    refused = [s for s in st if s["refused"]]
    done = [s for s in st if s["view"] is not None]
    finished = [s for s in done if s["view"]["status"] == "finished"]
    runs = [r for s in done for r in s["view"]["runs"] if r["started"] and r["ended"]]
    res = {"students": len(st), "workers": workers, "refused": len(refused),
           "refusals": sorted({s["refused"] for s in refused})[:3], "done": len(done), "finished": len(finished),
           "not_done": len(st) - len(refused) - len(done), "view_errors": d.view_errors,
           "submit_s_max": max((s["submit_s"] for s in st if s["submit_s"] is not None), default=float("nan")),
           "submit_s_p50": pct([s["submit_s"] for s in st if s["submit_s"] is not None], 50),
           "loads": d.loads}
    if not runs:
        return res
    first_submit = min(s["submit"] for s in st if s["submit"])
    first_start = min(r["started"] for r in runs)
    last_end = max(r["ended"] for r in runs)
    res.update(makespan=last_end - first_submit, busy=last_end - first_start, models=len(runs),
               models_per_min=60 * len(runs) / (last_end - first_start),
               models_per_min_makespan=60 * len(runs) / (last_end - first_submit),
               run_s_p50=pct([r["ended"] - r["started"] for r in runs], 50),
               capacity=60 * workers * len(runs) / sum(r["ended"] - r["started"] for r in runs),
               utilisation=sum(r["ended"] - r["started"] for r in runs) / (workers * (last_end - first_start)),
               run_s_max=max(r["ended"] - r["started"] for r in runs),
               train_s_p50=pct([r["seconds"] for r in runs if r["seconds"]], 50))
    rows = []
    for s in done:
        rs = [r for r in s["view"]["runs"] if r["started"] and r["ended"]]
        if not rs:
            continue
        rows.append({"i": s["i"], "submit": s["submit"], "start": min(r["started"] for r in rs),
                     "end": max(r["ended"] for r in rs), "durations": [r["ended"] - r["started"] for r in rs],
                     "eta_start": (s["first"] or {}).get("eta_start"), "place": (s["first"] or {}).get("place")})
    ideal = fifo_ideal([(r["submit"], r["durations"]) for r in rows], workers)
    for r, (a, b) in zip(rows, ideal):
        r.update(wait=r["start"] - r["submit"], turn=r["end"] - r["submit"], ideal_wait=a - r["submit"],
                 ideal_turn=b - r["submit"], offset=r["submit"] - first_submit)
    waits, turns = [r["wait"] for r in rows], [r["turn"] for r in rows]
    iwaits, iturns = [r["ideal_wait"] for r in rows], [r["ideal_turn"] for r in rows]
    eta_err = [r["start"] - r["eta_start"] for r in rows if r["eta_start"] is not None]
    res.update(rows=sorted(rows, key=lambda r: r["submit"]),
               wait_max=max(waits), wait_p50=pct(waits, 50), ideal_wait_max=max(iwaits), ideal_wait_p50=pct(iwaits, 50),
               turn_max=max(turns), turn_p50=pct(turns, 50), ideal_turn_max=max(iturns), ideal_turn_p50=pct(iturns, 50),
               wait_ratio=max(waits) / max(max(iwaits), 1e-9), turn_ratio=max(turns) / max(max(iturns), 1e-9),
               eta_err_p50=pct([abs(e) for e in eta_err], 50), eta_err_max=max((abs(e) for e in eta_err), default=0.0),
               eta_late_max=max(eta_err, default=0.0))
    return res


def show(res: dict, title: str) -> None:
    print(f"\n{title}")
    print(f"  students {res['students']}  refused {res['refused']}  finished {res['finished']}  "
          f"done {res['done']}  not done at the deadline {res['not_done']}  view errors {res['view_errors']}")
    for why in res["refusals"]:
        print(f"    refusal: {why[:200]}")
    print(f"  submit call: p50 {res['submit_s_p50']:.2f} s, max {res['submit_s_max']:.2f} s")
    if "makespan" not in res:
        print("  no run finished")
        return
    print(f"  {res['models']} models; run time (queue start -> end) p50 {res['run_s_p50']:.1f} s, max "
          f"{res['run_s_max']:.1f} s (training + metrics alone p50 {res['train_s_p50']:.1f} s)")
    print(f"  makespan (first submit -> last model done) {res['makespan']:.1f} s; workers busy "
          f"{res['busy']:.1f} s; throughput {res['models_per_min']:.1f} models/min over the busy time "
          f"({res['models_per_min'] / 2:.1f} jobs/min), {res['models_per_min_makespan']:.1f} over the makespan")
    print(f"  workers busy {100 * res['utilisation']:.0f}% of that time; capacity when saturated (workers x 60 / "
          f"mean run time) {res['capacity']:.1f} models/min (measured throughput is below it when students "
          "arrive slower than the workers train)")
    print(f"  wait (submit -> first model starts): max {res['wait_max']:.1f} s, p50 {res['wait_p50']:.1f} s; "
          f"ideal FIFO by owner on {res['workers']} worker(s): max {res['ideal_wait_max']:.1f} s, p50 "
          f"{res['ideal_wait_p50']:.1f} s; ratio of maxima {res['wait_ratio']:.2f}")
    print(f"  turnaround (submit -> last model done): max {res['turn_max']:.1f} s, p50 {res['turn_p50']:.1f} s; "
          f"ideal max {res['ideal_turn_max']:.1f} s, p50 {res['ideal_turn_p50']:.1f} s; ratio of maxima "
          f"{res['turn_ratio']:.2f}")
    print(f"  the page's first estimate of the start vs the real start: |error| p50 {res['eta_err_p50']:.1f} s, "
          f"max {res['eta_err_max']:.1f} s (latest start after its estimate: {res['eta_late_max']:+.1f} s)")
    if res["loads"]:
        print(f"  load average during the drain: mean {sum(res['loads']) / len(res['loads']):.1f}, "
              f"max {max(res['loads']):.1f} (2 cores)")
    print("    #  submit@   wait  ideal   turn  ideal  place-at-first-view")
    for r in res["rows"]:
        print(f"  {r['i']:3d} {r['offset']:7.1f} {r['wait']:6.1f} {r['ideal_wait']:6.1f} {r['turn']:6.1f} "
              f"{r['ideal_turn']:6.1f}  {r['place'] if r['place'] is not None else '-'}")


# ---------------------------------------------------------------- the browser

class Slider:
    """A real Chromium on the Interpolation page of `streamlit run app.py`: one move = one key
    press on its step slider, timed until the walk's images change."""

    def __init__(self, env: dict, nice: int, cpus: str, log: Path):
        from browser_support import start_server
        self.log, self.nice, self.cpus = log, nice, cpus
        self.proc, self.url = start_server(env={**env, "VAE_LOG_RERUNS": "1"}, log_path=log)
        self.pw = self.browser = None

    def open(self) -> None:
        from bench_app import WebsocketClock
        from bench_load import niced_chromium
        from browser_support import CHROMIUM_ARGS, wait_healthy, wait_rendered
        from playwright.sync_api import sync_playwright
        wait_healthy(self.url, self.proc, timeout=180)
        self.pw = sync_playwright().start()
        self.browser = self.pw.chromium.launch(executable_path=niced_chromium(self.nice, self.cpus),
                                               headless=True, args=CHROMIUM_ARGS)
        self.page = self.browser.new_page(viewport={"width": 1400, "height": 1000})
        self.frames = WebsocketClock(self.page)
        self.page.goto(f"{self.url}/Interpolation", wait_until="domcontentloaded", timeout=180_000)
        wait_rendered(self.page, timeout_ms=180_000, until="[data-testid=stImage] img")
        self.js = "() => Array.from(document.querySelectorAll('[data-testid=stImage] img')).map(i => i.src).join('|')"
        self.thumb = self.page.locator(".st-key-interp_t input[type=range], .st-key-interp_t [role=slider]").first
        self.thumb.focus()
        self.i = 0

    def move(self) -> float:
        """One move; its ms, or None when the images did not change within 30 s."""
        before = self.page.evaluate(self.js)
        key = "Home" if self.i and self.i % 5 == 0 else "ArrowRight"
        self.i += 1
        t0 = time.perf_counter()
        self.thumb.press(key)
        try:
            self.page.wait_for_function(f"prev => ({self.js})() !== prev", arg=before, timeout=30_000, polling="raf")
        except Exception:       # noqa: BLE001 - a timeout is a miss, counted
            return None
        return 1000 * (time.perf_counter() - t0)

    def session(self, until, every_s: float = 1.0, count: int = 0) -> dict:
        """Move every `every_s` until `until()` is true (or `count` moves). Returns the timings."""
        from bench_app import fragment_runs
        logged = len(fragment_runs(self.log))
        ms, misses = [], 0
        while (count and len(ms) + misses < count) or (not count and not until()):
            t_next = time.perf_counter() + every_s
            m = self.move()
            if m is None:
                misses += 1
            else:
                ms.append(m)
            self.page.wait_for_timeout(max(50, int(1000 * (t_next - time.perf_counter()))))
        runs = [t for v, t in fragment_runs(self.log)[logged:] if not v.startswith("page:") and v != "live"]
        return {"ms": ms, "misses": misses, "server": runs}

    def close(self) -> None:
        from browser_support import stop_server
        try:
            if self.browser is not None:
                self.browser.close()
            if self.pw is not None:
                self.pw.stop()
        finally:
            stop_server(self.proc)


def show_slider(name: str, r: dict) -> None:
    ms = r["ms"]
    if not ms:
        print(f"  {name}: no move measured ({r['misses']} timed out)")
        return
    verdict = "meets" if pct(ms, 95) <= GOAL_BROWSER_MS else "MISSES"
    print(f"  {name:<40} n={len(ms):3d}  p50 {pct(ms, 50):6.0f} ms  p95 {pct(ms, 95):6.0f} ms  max "
          f"{max(ms):6.0f} ms  timeouts {r['misses']}  ({verdict} the p95 goal of {GOAL_BROWSER_MS:.0f} ms)")
    if r["server"]:
        print(f"  {'  server: fragment run':<40} n={len(r['server']):3d}  p50 {pct(r['server'], 50):6.0f} ms  "
              f"p95 {pct(r['server'], 95):6.0f} ms")


# ---------------------------------------------------------------- part A: the local head

def part_a(args) -> dict:
    folder = Path(tempfile.mkdtemp(prefix="bc-", dir="/tmp"))      # short: Ray's socket paths
    os.environ["VAE_RAY_DIR"] = str(folder)
    os.environ["VAE_RAY_CPUS"] = "1"
    os.environ.pop("RAY_ADDRESS", None)
    out: dict = {"mem": {}}
    ok = False
    print(f"\nPart A: a local Ray head with 1 worker CPU (VAE_RAY_CPUS=1) in {folder}; "
          f"{args.students} students over {args.spread:.0f} s; load average {load():.1f} on {os.cpu_count()} CPUs")
    from vae_core import cluster, jobs
    slider = None
    try:
        if not args.skip_browser:
            from browser_support import checkpoints_for_tests
            ckpts = checkpoints_for_tests(folder / "ckpts")
            env = {"VAE_CHECKPOINT_DIR": str(ckpts), "VAE_USER_DIR": str(folder / "user"),
                   "VAE_NO_UMAP_WARMUP": "1"}   # the UMAP warm-up is a start-up one-off; not this bench
            slider = Slider(env, args.browser_nice, args.browser_cpus, folder / "server.log")
            print(f"  streamlit server {slider.url} (log {folder / 'server.log'}); Chromium at nice "
                  f"{args.browser_nice}{f' on core(s) {args.browser_cpus}' if args.browser_cpus else ''}")
        fast_spec()                         # imports torch, streamlit etc. before the baseline RSS
        self_before = mem_of([os.getpid()])
        t0 = time.time()
        jobs.queue()                        # starts the head and the queue actor, as the first Train press does
        jobs.summary()
        out["head_s"] = time.time() - t0
        time.sleep(3.0)
        self_after = mem_of([os.getpid()])
        print(f"  head and queue actor up in {out['head_s']:.1f} s")
        print("\nMemory: what Ray adds (the head's session: every process Ray started; PSS shares libraries fairly)")
        out["mem"]["idle"] = m = mem_of(head_pids(folder))
        show_mem("no training", m)
        print(f"    {m['names']}")
        out["mem"]["driver"] = d = {"rss_mb": self_after["rss_mb"] - self_before["rss_mb"],
                                    "pss_mb": self_after["pss_mb"] - self_before["pss_mb"]}
        print(f"  {'the connected driver (web server)':<38}      +RSS {d['rss_mb']:5.0f} MB  +PSS {d['pss_mb']:5.0f} MB "
              "in its own process (ray imported and connected, the saver thread)")

        if slider is not None:
            slider.open()
            print(f"\nInterpolation slider in Chromium, nothing training ({args.baseline_moves} moves, one a second)")
            out["slider_idle"] = r = slider.session(None, count=args.baseline_moves)
            show_slider("idle queue: step → new images", r)

        mem_phase(out)
        print(f"\n  warm-up: one job trained in {warm_up(1):.1f} s (the worker has torch loaded, as after any training)")

        offsets = plan(args.students, args.spread, args.seed)
        sample = lambda: mem_of(head_pids(folder))       # noqa: E731
        drain = Drain(offsets, args.timeout, sample=sample)
        print(f"\nThe class: {args.students} submissions at {', '.join(f'{o:.0f}' for o in offsets)} s")
        drain.start()
        if slider is not None:
            out["slider_drain"] = r = slider.session(drain.finished.is_set)
        drain.wait()
        res = analyse(drain, workers=1)
        if slider is not None:
            print("\nInterpolation slider in Chromium while the queue drained (one move a second)")
            show_slider("drain: step → new images", r)
        if drain.mem:
            peak = max(drain.mem, key=lambda m: m["rss_mb"])
            out["mem"]["drain_peak"] = peak
            show_mem("peak while the class's queue drained", peak)
        show(res, "Part A: 1 worker (local head, VAE_RAY_CPUS=1)")
        out["res"] = res
        ok = True
        return out
    finally:
        if slider is not None:
            try:
                slider.close()
            except Exception as e:      # noqa: BLE001
                print(f"  (stopping the server: {e})")
        if cluster.is_connected():
            cluster.engine().lost(RuntimeError("the benchmark ended"))   # disconnects; the saver thread ends
        try:
            sid = int(json.loads((folder / "head.json").read_text())["pid"])
        except (OSError, ValueError, KeyError):
            sid = None
        stopped = cluster.stop_local_head(folder)
        left = len(cluster._session_pids(sid)) if sid else 0
        print(f"\n  local head stopped ({'it was running' if stopped else 'none found'}); "
              f"{left} of its processes left" + ("" if ok else f"; its logs are kept in {folder}"))
        if ok:
            shutil.rmtree(folder, ignore_errors=True)


def warm_up(workers: int) -> float:
    """One job per worker, waited for: every worker process has imported torch and the engine's
    code, as on a server that has trained before, so both parts start alike. Returns seconds."""
    from vae_core import jobs
    t0 = time.time()
    owners = [secrets.token_hex(16) for _ in range(workers)]
    for o in owners:
        jobs.submit(o, fast_spec())
    while time.time() < t0 + 180 and not all(jobs.view(o).done for o in owners):
        time.sleep(0.5)
    return time.time() - t0


def mem_phase(out: dict) -> None:
    """One training, then ten more queued; memory of Ray's processes at each; then all stopped."""
    from vae_core import jobs
    from vae_core.cluster import ray_dir
    spec = fast_spec()
    owners = [secrets.token_hex(16) for _ in range(11)]
    jobs.submit(owners[0], spec)
    deadline = time.time() + 120
    while time.time() < deadline:
        v = jobs.view(owners[0])
        if v.runs[0].status == "running" and v.runs[0].steps_per_epoch:
            break
        time.sleep(0.3)
    out["mem"]["one"] = m = mem_of(head_pids(ray_dir()))
    show_mem("one training", m)
    for o in owners[1:]:
        jobs.submit(o, spec)
    time.sleep(1.0)
    s = jobs.summary()
    out["mem"]["ten"] = m = mem_of(head_pids(ray_dir()))
    show_mem("one training, ten more jobs queued", m)
    print(f"    ({s['running']} model training, {s['waiting']} models of {s['owners_waiting']} owners waiting)")
    for o in owners:
        jobs.stop(o)
    deadline = time.time() + 60
    while time.time() < deadline and not all(jobs.view(o).done for o in owners):
        time.sleep(0.5)
    print(f"    (stopped those 11 jobs; queue now {jobs.summary()})")


# ---------------------------------------------------------------- part B: two nodes

def part_b_child(args) -> None:
    """In a fresh process: a two-node Cluster on this machine, the same class replayed."""
    folder = Path(tempfile.mkdtemp(prefix="bc2-", dir="/tmp"))
    token = folder / "token"
    fd = os.open(token, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_hex(32))
    os.environ.update({"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_DISABLE_FAILURE_SIGNAL_HANDLER": "1",
                       "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "token",
                       "RAY_AUTH_TOKEN_PATH": str(token), "VAE_RAY_DIR": str(folder / "unused")})
    from ray.cluster_utils import Cluster
    node = {"num_cpus": 1, "num_gpus": 0, "node_ip_address": "127.0.0.1", "include_dashboard": False}
    c = None
    out: dict = {}
    ok = False
    try:
        t0 = time.time()
        c = Cluster(initialize_head=True, head_node_args={**node, "temp_dir": str(folder / "t")})
        c.add_node(**node)
        os.environ["RAY_ADDRESS"] = c.address
        from vae_core import jobs
        jobs.queue()
        s = jobs.summary()
        out["start_s"] = time.time() - t0
        pids = descendants(os.getpid())
        out["mem"] = m = mem_of(pids)
        out["auth"] = auth = _auth_modes(pids)
        print(f"  cluster {c.address} up in {out['start_s']:.1f} s with {s['slots']} CPUs; RAY_AUTH_MODE in the "
              f"environment of its {auth}")
        print(f"  {m['n']} Ray processes, RSS {m['rss_mb']:.0f} MB, PSS {m['pss_mb']:.0f} MB: {m['names']}")
        print(f"  warm-up: two jobs at once trained in {warm_up(2):.1f} s (each node's worker has torch loaded)")
        offsets = plan(args.students, args.spread, args.seed)
        drain = Drain(offsets, args.timeout)
        drain.start()
        drain.wait()
        out["res"] = res = analyse(drain, workers=2)
        show(res, "Part B: 2 workers (two simulated nodes of 1 CPU each on one 2-core machine)")
        ok = True
    finally:
        from vae_core import cluster
        if cluster.is_connected():
            cluster.engine().lost(RuntimeError("the benchmark ended"))
        if c is not None:
            c.shutdown()
        Path(args.result_json).write_text(json.dumps(out, default=str))
        if ok:
            shutil.rmtree(folder, ignore_errors=True)
        else:
            print(f"  the two-node cluster's logs are kept in {folder}")


def _auth_modes(pids) -> str:
    """RAY_AUTH_MODE as each GCS server and raylet was started with (what the token check follows)."""
    seen = collections.Counter()
    for pid in pids:
        try:
            name = Path(f"/proc/{pid}/comm").read_text().strip()
            if name not in ("gcs_server", "raylet"):
                continue
            env = dict(kv.split("=", 1) for kv in Path(f"/proc/{pid}/environ").read_text().split("\0") if "=" in kv)
            seen[f"{name}: {env.get('RAY_AUTH_MODE', 'unset')}"] += 1
        except OSError:
            continue
    return ", ".join(f"{k} (x{v})" if v > 1 else k for k, v in sorted(seen.items())) or "no GCS or raylet found"


def part_b(args) -> dict:
    print(f"\nPart B: two simulated nodes of 1 CPU each on one 2-core machine (ray.cluster_utils.Cluster, "
          f"a head and a second node, in a subprocess); the same {args.students} submissions")
    result = Path(tempfile.mkdtemp(prefix="bc-b-")) / "result.json"
    cmd = [sys.executable, __file__, "--_child-two-node", "--students", str(args.students), "--spread",
           str(args.spread), "--seed", str(args.seed), "--timeout", str(args.timeout), "--result-json", str(result)]
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "VAE_RAY_CPUS")}
    proc = subprocess.Popen(cmd, env=env, start_new_session=True)
    try:
        proc.wait(timeout=args.timeout + 180)
    except subprocess.TimeoutExpired:
        print("  the two-node run did not end in time: stopping it")
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, 9)
                proc.wait()
    deadline = time.time() + 10
    while _session(proc.pid) and time.time() < deadline:
        time.sleep(0.5)
    left = _session(proc.pid)
    if left:
        print(f"  {len(left)} processes of the two-node run were left 10 s after it ended "
              f"({mem_of(left)['names']}): killing them")
        for p in left:
            try:
                os.kill(p, 9)
            except OSError:
                pass
    try:
        return json.loads(result.read_text())
    except (OSError, ValueError):
        return {}
    finally:
        shutil.rmtree(result.parent, ignore_errors=True)


def _session(sid: int) -> list:
    from vae_core import cluster
    return cluster._session_pids(sid)


# ---------------------------------------------------------------- summary

def summary(a: dict, b: dict) -> None:
    ra, rb = a.get("res", {}), b.get("res", {})

    def f(r, k, fmt="{:.1f}"):
        v = r.get(k)
        return "-" if v is None else fmt.format(v)

    rows = [("students / refused", lambda r: f"{r.get('students', '-')} / {r.get('refused', '-')}" if r else "-"),
            ("jobs finished", lambda r: f(r, "finished", "{}")),
            ("makespan s", lambda r: f(r, "makespan")),
            ("models/min (busy time)", lambda r: f(r, "models_per_min")),
            ("workers busy %", lambda r: f(r, "utilisation", "{:.0%}")),
            ("capacity models/min", lambda r: f(r, "capacity")),
            ("run s p50 (queue->done)", lambda r: f(r, "run_s_p50")),
            ("max wait s (ideal FIFO)", lambda r: f"{f(r, 'wait_max')} ({f(r, 'ideal_wait_max')})"),
            ("max wait / ideal", lambda r: f(r, "wait_ratio", "{:.2f}")),
            ("max turnaround s (ideal)", lambda r: f"{f(r, 'turn_max')} ({f(r, 'ideal_turn_max')})"),
            ("max turnaround / ideal", lambda r: f(r, "turn_ratio", "{:.2f}")),
            ("p50 wait s", lambda r: f(r, "wait_p50"))]
    both = "models_per_min" in ra and "models_per_min" in rb
    print("\nSummary" + ("" if not both else
                         f": 2 workers give {rb['models_per_min'] / ra['models_per_min']:.2f}x the measured throughput "
                         f"and {rb['capacity'] / ra['capacity']:.2f}x the capacity of 1 (two simulated 1-CPU nodes "
                         "on the same 2 cores)"))
    print(f"  {'':<28} {'local, 1 worker':>18} {'2 nodes x 1 CPU':>18}")
    for name, fn in rows:
        print(f"  {name:<28} {fn(ra) if ra else '-':>18} {fn(rb) if rb else '-':>18}")
    for key, name in (("slider_idle", "slider p50/p95 ms, idle"), ("slider_drain", "slider p50/p95 ms, drain")):
        r = a.get(key)
        if r and r["ms"]:
            print(f"  {name:<28} {pct(r['ms'], 50):8.0f} / {pct(r['ms'], 95):<7.0f}")
    for key, name in (("idle", "Ray RSS/PSS MB, no training"), ("one", "Ray RSS/PSS MB, 1 training"),
                      ("ten", "Ray RSS/PSS MB, +10 queued"), ("drain_peak", "Ray RSS/PSS MB, class peak")):
        m = a.get("mem", {}).get(key)
        if m:
            print(f"  {name:<28} {m['rss_mb']:6.0f} / {m['pss_mb']:<6.0f} in {m['n']} processes")
    print(f"  load average at the end: {load():.1f}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--students", type=int, default=30)
    ap.add_argument("--spread", type=float, default=60.0, help="seconds over which the students submit")
    ap.add_argument("--seed", type=int, default=0, help="seed of the submission times")
    ap.add_argument("--timeout", type=float, default=900.0, help="give up on a part's drain after this many seconds")
    ap.add_argument("--skip-browser", action="store_true")
    ap.add_argument("--skip-two-node", action="store_true")
    ap.add_argument("--two-node-only", action="store_true")
    ap.add_argument("--baseline-moves", type=int, default=10, help="slider moves before the class submits")
    ap.add_argument("--browser-nice", type=int, default=10,
                    help="Chromium's nice level (in a class the browsers are on the students' machines)")
    ap.add_argument("--browser-cpus", default=str(max(0, (os.cpu_count() or 1) - 1)),
                    help="cores Chromium may use (taskset list; default: the last core; '' for all)")
    ap.add_argument("--_child-two-node", dest="child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--result-json", default="", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    os.environ.setdefault("VAE_DATA_DIR", str(REPO.parent / "shared" / "data"))
    import torch
    torch.set_num_threads(1)
    if args.child:
        part_b_child(args)
        return
    print(f"bench_class: {args.students} students, fast preset {FAST!r} (AE + VAE each), spread {args.spread:.0f} s; "
          f"{os.cpu_count()} CPUs, load average {load():.1f}; nice {os.nice(0)}")
    a = {} if args.two_node_only else part_a(args)
    b = {} if args.skip_two_node else part_b(args)
    summary(a, b)


if __name__ == "__main__":
    main()

"""The class's training queue: fair, never refusing, living in Ray as one named actor.

`FairQueue` is the bookkeeping alone (plain Python, tested without Ray): jobs of one or more runs
(a run trains one model), waiting runs kept per owner, and the choice of the next run when a
worker frees up: round-robin across owners, at most `per_owner` runs of one owner at once, so a
student's β sweep of nine models cannot hold the class back. Nothing is ever refused for being
busy: past the free workers a job waits, and its page shows its place and estimated start and
finish, from simulating that same rule with the time each run ahead is expected to take.

`TrainQueueActor` wraps it as an async Ray actor named "train-queue" (detached: it outlives the
web server that made it, so restarting the server loses no job). It submits each run as a Ray task
(vae_core.cluster.train_task) when a CPU is free, receives the runs' progress reports, answers
the pages' polls, and keeps each finished model as checkpoint bytes until the job is dropped
(an hour after its owner last looked, and never while a sweep's models wait to be saved).
A worker killed mid-run fails that run with the reason; nothing partial is kept.
"""
from __future__ import annotations

import collections
import time
import uuid
from typing import Optional

DONE = ("finished", "stopped", "diverged", "failed", "cancelled")
MAX_RUNS_PER_JOB = 9            # the AE and eight βs
STEP_POINTS = 600               # smoothed loss points per run in a view (enough for a curve)


def _run_state(spec, index: int) -> dict:
    return {"index": index, "label": spec.label, "kind": spec.model.kind, "beta": float(spec.train.beta),
            "epochs": int(spec.train.epochs), "status": "queued", "message": "", "epoch": 0, "step": 0,
            "steps_per_epoch": 0, "history": [], "steps": [], "recon": None, "codes": None, "codes_epoch": 0,
            "metrics": {}, "seconds": 0.0, "started": None, "ended": None, "usable": False,
            "saved_path": "", "save_error": "", "publish_claim": 0.0,
            "training_since": None}    # the worker's first report: data loaded, training begins


class FairQueue:
    """Jobs, their runs and the round-robin choice of what trains next (see the module docstring).

    Times come in as arguments (`now`), so tests drive the clock."""

    def __init__(self, per_owner: int = 2, overhead_s: float = 3.0, rate: float = 2e10):
        self.per_owner = per_owner
        self.overhead_s = overhead_s    # start-up and evaluation of a run, seconds
        self.rate = rate                # cost units (runs.estimated_cost) trained per second per worker
        self.scale = 1.0                # measured wall time / estimate of finished runs, smoothed
        self.jobs: dict = {}            # job id -> job dict
        self.by_owner: dict = {}        # owner token -> latest job id
        self.waiting = collections.OrderedDict()   # owner -> deque of (job id, run index), in line order
        self.specs: dict = {}           # (job id, run index) -> RunSpec
        self.costs: dict = {}           # (job id, run index) -> estimated cost

    # ------------------------------------------------------------ jobs
    def add(self, owner: str, owner_id: str, specs: list, costs: list, now: float,
            save_dir: Optional[str] = None, names: Optional[list] = None, group: str = "") -> dict:
        """Queue a job. Raises ValueError when the owner already has an unfinished job or the job
        is empty or too large (a mistake of the caller, never a refusal for load)."""
        if not specs or len(specs) > MAX_RUNS_PER_JOB:
            raise ValueError(f"a job trains 1 to {MAX_RUNS_PER_JOB} models, not {len(specs)}")
        old = self.jobs.get(self.by_owner.get(owner, ""))
        if old is not None and old["status"] not in DONE:
            raise ValueError("you already have a training job queued or running: stop it or wait for it to finish")
        job_id = group or uuid.uuid4().hex[:12]
        job = {"id": job_id, "owner": owner, "owner_id": owner_id, "created": now, "status": "queued",
               "message": "", "stop": False, "last_seen": now, "ended": None, "save_dir": save_dir,
               "names": list(names) if names else None, "fixed_images": None, "fixed_labels": None,
               "code_labels": None, "dataset": specs[0].train.dataset, "latent_dim": specs[0].model.latent_dim,
               "runs": [_run_state(s, i) for i, s in enumerate(specs)]}
        self.jobs[job_id] = job
        self.by_owner[owner] = job_id
        q = self.waiting.setdefault(owner, collections.deque())   # a new owner joins the back of the line
        for i, (spec, cost) in enumerate(zip(specs, costs)):
            self.specs[(job_id, i)] = spec
            self.costs[(job_id, i)] = float(cost)
            q.append((job_id, i))
        return job

    def job_of(self, owner: str) -> Optional[dict]:
        return self.jobs.get(self.by_owner.get(owner, ""))

    def running(self) -> list:
        return [(j["id"], r["index"]) for j in self.jobs.values() for r in j["runs"]
                if r["status"] in ("running", "evaluating")]

    def _running_by_owner(self) -> collections.Counter:
        c = collections.Counter()
        for job_id, _ in self.running():
            c[self.jobs[job_id]["owner"]] += 1
        return c

    # ------------------------------------------------------------ the rule
    def _pick(self, waiting: "collections.OrderedDict", busy: collections.Counter):
        """Round-robin: the first owner in line with a waiting run and fewer than per_owner runs
        training; that owner goes to the back of the line. Returns (job id, run index) or None."""
        for owner, q in waiting.items():
            if q and busy[owner] < self.per_owner:
                item = q.popleft()
                waiting.move_to_end(owner)
                if not q:
                    del waiting[owner]
                busy[owner] += 1
                return item
        return None

    def next_runs(self, free: int) -> list:
        """Take up to `free` runs to start now, by the rule (the caller then calls `started`)."""
        busy = self._running_by_owner()
        out = []
        for _ in range(max(0, free)):
            item = self._pick(self.waiting, busy)
            if item is None:
                break
            out.append(item)
        return out

    def started(self, job_id: str, index: int, now: float) -> None:
        job = self.jobs[job_id]
        run = job["runs"][index]
        run["status"], run["started"] = "running", now
        job["status"] = "running"

    def finished(self, job_id: str, index: int, status: str, now: float, message: str = "") -> None:
        job = self.jobs.get(job_id)
        if job is None:
            return
        run = job["runs"][index]
        run["status"], run["ended"] = status, now
        if message:
            run["message"] = message
        if status == "finished" and run["started"] is not None:
            # The pace of this server's workers, smoothed over the runs so far: every later
            # estimate is scaled by how long runs really took against what was expected.
            wall = max(0.1, now - run["started"])
            self.scale = 0.6 * self.scale + 0.4 * (wall / self._raw_estimate(job_id, index))
        self._close_if_done(job, now)

    def _close_if_done(self, job: dict, now: float) -> None:
        statuses = [r["status"] for r in job["runs"]]
        if any(s not in DONE for s in statuses):
            return
        if "diverged" in statuses:
            job["status"] = "diverged"
            job["message"] = " ".join(f"{r['label']}: {r['message']}" for r in job["runs"] if r["status"] == "diverged")
        elif "failed" in statuses:
            job["status"] = "failed"
            job["message"] = " ".join(f"{r['label']}: {r['message']}" for r in job["runs"] if r["status"] == "failed")
        elif all(s == "cancelled" for s in statuses):
            job["status"], job["message"] = "cancelled", "cancelled: nothing was kept"
        elif job["stop"] or "stopped" in statuses or "cancelled" in statuses:
            job["status"] = "stopped"
            job["message"] = ("stopped: nobody had looked at it for a long while (its page was closed); the models "
                              "trained so far are kept" if job.get("abandoned")
                              else "stopped on request: the models trained so far are kept")
        else:
            job["status"] = "finished"
        job["ended"] = now

    def stop(self, owner: str, now: float, cancel: bool = False) -> list:
        """Stop the owner's job: its waiting runs leave the queue; its running runs are asked to
        stop after their batch (cancel=True: they are to be cancelled, nothing kept). Returns the
        (job id, run index) pairs still running."""
        job = self.job_of(owner)
        if job is None or job["status"] in DONE:
            return []
        job["stop"] = True
        q = self.waiting.get(owner)
        if q is not None:
            keep = collections.deque(item for item in q if item[0] != job["id"])
            if keep:
                self.waiting[owner] = keep
            else:
                del self.waiting[owner]
        for run in job["runs"]:
            if run["status"] == "queued":
                run["status"], run["message"] = "cancelled", "not started: the job was stopped"
        running = [(job["id"], r["index"]) for r in job["runs"] if r["status"] in ("running", "evaluating")]
        self._close_if_done(job, now)
        return running

    # ------------------------------------------------------------ estimates
    def _raw_estimate(self, job_id: str, index: int) -> float:
        return self.overhead_s + self.costs.get((job_id, index), 0.0) / max(self.rate, 1.0)

    def estimate(self, job_id: str, index: int) -> float:
        """Expected seconds of a run: start-up and evaluation plus its cost at the workers' pace."""
        return self.scale * self._raw_estimate(job_id, index)

    def remaining(self, job_id: str, index: int, now: float) -> float:
        """Seconds a running run still needs: its own pace so far, else the estimate."""
        run = self.jobs[job_id]["runs"][index]
        total = run["epochs"] * run["steps_per_epoch"]
        done = run["epoch"] * run["steps_per_epoch"] + run["step"]
        since = run.get("training_since") or run["started"]   # not the worker's start-up (imports, data)
        if since is not None and total and done >= max(5, total // 50):
            elapsed = now - since
            return max(0.0, elapsed / done * (total - done)) + 1.0
        started = run["started"] if run["started"] is not None else now
        return max(1.0, self.estimate(job_id, index) - (now - started))

    def schedule(self, slots: int, now: float) -> dict:
        """Simulate the rule: {job id: (place, start, finish)} for every unfinished job. place counts
        the runs that will start before the job's first waiting run (0 once one of its runs trains)."""
        running = [(j, i, now + self.remaining(j, i, now)) for j, i in self.running()]
        ends = sorted((end, self.jobs[j]["owner"]) for j, _, end in running)
        busy = collections.Counter(o for _, o in ends)
        free_at = sorted([t for t, _ in ends] + [now] * max(0, slots - len(ends)))
        free_at = free_at[len(free_at) - max(1, slots):] if len(free_at) > max(1, slots) else free_at
        waiting = collections.OrderedDict((o, collections.deque(q)) for o, q in self.waiting.items() if q)
        out: dict = {}
        for j, i, end in running:          # a job with a run training has place 0
            started = self.jobs[j]["runs"][i]["started"] or now
            _, start, finish = out.get(j, (0, started, end))
            out[j] = (0, min(start, started), max(finish, end))
        order = 0
        while waiting:
            t = min(free_at)
            while ends and ends[0][0] <= t + 1e-9:
                busy[ends.pop(0)[1]] -= 1
            item = self._pick(waiting, busy)
            if item is None:                     # every waiting owner is at the cap: wait for a run to end
                if not ends:
                    break
                free_at[free_at.index(t)] = ends[0][0]
                continue
            free_at.remove(t)
            end = t + self.estimate(*item)
            free_at.append(end)
            owner = self.jobs[item[0]]["owner"]
            ends.append((end, owner))
            ends.sort()
            j = item[0]
            if j in out:
                place, start, finish = out[j]
                out[j] = (place, start, max(finish, end))
            else:
                out[j] = (order, t, end)
            order += 1
        return out

    # ------------------------------------------------------------ housekeeping
    def forget_old(self, now: float, keep_s: float, abandon_s: float, max_kept: int = 200) -> list:
        """Drop finished jobs nobody looked at for keep_s; return the owners of unfinished jobs
        nobody polled for abandon_s (the caller stops them: a closed tab must not hold a worker)."""
        abandoned = []
        for job_id, job in list(self.jobs.items()):
            idle = now - job["last_seen"]
            if job["status"] in DONE:
                if idle > keep_s and not self._unsaved(job):
                    self._drop(job_id)
            elif not job["stop"] and not job["save_dir"]:
                # Time in the queue does not count: only a job that trains while nobody looks at it
                # (its page closed) is stopped. Sweeps that save themselves are never abandoned.
                started = [r["started"] for r in job["runs"] if r["started"] is not None]
                since = max(job["last_seen"], min(started)) if started else now
                if now - since > abandon_s:
                    abandoned.append(job["owner"])
        done = sorted((j for j in self.jobs.values() if j["status"] in DONE and not self._unsaved(j)),
                      key=lambda j: j["last_seen"])
        for job in done[:max(0, len(done) - max_kept)]:
            self._drop(job["id"])
        return abandoned

    @staticmethod
    def _unsaved(job: dict) -> bool:
        """A sweep whose finished models are still to be saved into its folder."""
        return bool(job["names"]) and any(r["usable"] and not r["saved_path"] and not r["save_error"]
                                          for r in job["runs"])

    def _drop(self, job_id: str) -> None:
        job = self.jobs.pop(job_id, None)
        if job is None:
            return
        if self.by_owner.get(job["owner"]) == job_id:
            del self.by_owner[job["owner"]]
        for i in range(len(job["runs"])):
            self.specs.pop((job_id, i), None)
            self.costs.pop((job_id, i), None)


# ---------------------------------------------------------------- the Ray actor

def _thin(points: list, n: int = STEP_POINTS) -> list:
    every = max(1, len(points) // n)
    return points[::every] if every > 1 else list(points)


class TrainQueueActor:
    """The queue as an async Ray actor (see the module docstring). Its methods return plain data
    and never raise for a user's mistake: `submit` returns {"error": ...} instead."""

    def __init__(self, per_owner: int = 2, keep_s: float = 3600.0, abandon_s: float = 1800.0):
        self.q = FairQueue(per_owner=per_owner)
        self.keep_s, self.abandon_s = keep_s, abandon_s
        self.tasks: dict = {}           # (job id, run index) -> ObjectRef of the running task
        self.results: dict = {}         # (job id, run index) -> checkpoint bytes
        self.stopping: set = set()      # (job id, run index) asked to stop after their batch
        self.cancelling: set = set()
        self._slots, self._slots_at = 1, 0.0
        self._ticker = None
        self._watchers: set = set()

    # ------------------------------------------------------------ pages
    async def submit(self, owner: str, owner_id: str, specs: list, costs: list, save_dir=None, names=None,
                     group: str = "") -> dict:
        now = time.time()
        self._housekeeping(now)
        try:
            job = self.q.add(owner, owner_id, specs, costs, now, save_dir=save_dir, names=names, group=group)
        except ValueError as e:
            return {"error": str(e)}
        self._pump()
        if self._ticker is None:
            import asyncio
            self._ticker = asyncio.get_event_loop().create_task(self._tick())
        return {"job": job["id"]}

    async def _tick(self) -> None:
        """Every few seconds: stop abandoned jobs, drop old ones, start runs on workers that joined."""
        import asyncio
        while True:
            await asyncio.sleep(5.0)
            try:
                self._housekeeping(time.time())
                self._pump()
            except Exception:           # noqa: BLE001 - the ticker must keep ticking
                import logging
                logging.getLogger(__name__).exception("queue housekeeping failed")

    async def view(self, owner: str, touch: bool = True) -> Optional[dict]:
        """The owner's latest job as a page draws it: runs with thinned curves and the latest
        reconstructions and codes, the place in the queue and the estimated start and finish."""
        now = time.time()
        job = self.q.job_of(owner)
        if job is None:
            return None
        if touch:
            job["last_seen"] = now
        out = {k: v for k, v in job.items() if k not in ("runs", "owner")}
        out["runs"] = [{**r, "steps": _thin(r["steps"]), "history": list(r["history"])} for r in job["runs"]]
        out["place"], out["eta_start"], out["eta_finish"] = None, None, None
        if job["status"] not in DONE:
            plan = self.q.schedule(self.slots(), now).get(job["id"])
            if plan is not None:
                out["place"], out["eta_start"], out["eta_finish"] = plan
        out["now"] = now
        out["queue"] = self._counts()
        return out

    async def status(self, owner: str) -> Optional[str]:
        """The owner's latest job's status alone (and a touch): what every page's poll needs."""
        job = self.q.job_of(owner)
        if job is None:
            return None
        job["last_seen"] = time.time()
        return job["status"]

    async def stop(self, owner: str, cancel: bool = False) -> bool:
        now = time.time()
        running = self.q.stop(owner, now, cancel=cancel)
        import ray
        for key in running:
            if cancel:
                self.cancelling.add(key)
                ref = self.tasks.get(key)
                if ref is not None:
                    ray.cancel(ref, force=True)
            else:
                self.stopping.add(key)
        self._pump()
        return True

    async def result(self, job_id: str, index: int) -> Optional[bytes]:
        return self.results.get((job_id, int(index)))

    async def mark_saved(self, job_id: str, index: int, path: str = "", error: str = "") -> None:
        job = self.q.jobs.get(job_id)
        if job is not None:
            run = job["runs"][int(index)]
            run["saved_path"], run["save_error"] = path, error

    async def claim_unsaved(self, now: Optional[float] = None, lease_s: float = 60.0) -> list:
        """Runs of jobs that asked to be saved (a sweep: save_dir and names) whose model is ready
        and not saved: each is leased to one caller for lease_s, so two servers never both save it."""
        now = time.time() if now is None else now
        out = []
        for job in self.q.jobs.values():
            if not job["names"] or not job["save_dir"]:
                continue
            for run in job["runs"]:
                key = (job["id"], run["index"])
                if (run["usable"] and key in self.results and not run["saved_path"] and not run["save_error"]
                        and now - run["publish_claim"] > lease_s):
                    run["publish_claim"] = now
                    out.append({"job": job["id"], "index": run["index"], "save_dir": job["save_dir"],
                                "name": job["names"][run["index"]]})
        return out

    async def summary(self) -> dict:
        return {**self._counts(), "slots": self.slots(), "scale": self.q.scale}

    # ------------------------------------------------------------ workers
    async def report(self, key: tuple, msg: dict) -> bool:
        """A run's progress (vae_core.runs.Reporter). Returns True when the run should stop."""
        key = tuple(key)
        job = self.q.jobs.get(key[0])
        if job is None:
            return True
        run = job["runs"][key[1]]
        event = msg.get("event")
        if event == "start":
            run["training_since"] = time.time()
            for k in ("fixed_images", "fixed_labels", "code_labels"):
                if msg.get(k) is not None:
                    job[k] = msg[k]
        if "steps_per_epoch" in msg:
            run["steps_per_epoch"] = msg["steps_per_epoch"]
        if "epoch" in msg:
            run["epoch"], run["step"] = msg["epoch"], msg["step"]
        run["steps"].extend(msg.get("steps") or [])
        if len(run["steps"]) > 20 * STEP_POINTS:        # bounded: a curve needs a few hundred points
            run["steps"] = run["steps"][::2]
        if msg.get("record") is not None:
            run["history"].append(msg["record"])
        if msg.get("recon") is not None:
            run["recon"] = msg["recon"]
        if msg.get("codes") is not None:
            run["codes"], run["codes_epoch"] = msg["codes"], run["epoch"]
        if event == "evaluating" and run["status"] == "running":
            run["status"] = "evaluating"
        return key in self.stopping or key in self.cancelling or job["stop"]

    def slots(self) -> int:
        """CPUs of the cluster: every run takes one. Read again every few seconds (nodes join)."""
        now = time.monotonic()
        if now - self._slots_at > 5.0:
            import ray
            self._slots = max(1, int(ray.cluster_resources().get("CPU", 1)))
            self._slots_at = now
        return self._slots

    def _counts(self) -> dict:
        waiting = sum(len(q) for q in self.q.waiting.values())
        return {"waiting": waiting, "running": len(self.q.running()),
                "owners_waiting": sum(1 for q in self.q.waiting.values() if q)}

    def _pump(self) -> None:
        import asyncio

        from .cluster import remote_train
        import ray
        free = self.slots() - len(self.q.running())
        for job_id, index in self.q.next_runs(free):
            spec = self.q.specs[(job_id, index)]
            me = ray.get_runtime_context().current_actor
            ref = remote_train().remote(spec, me, (job_id, index))
            self.tasks[(job_id, index)] = ref
            self.q.started(job_id, index, time.time())
            watcher = asyncio.get_event_loop().create_task(self._watch(job_id, index, ref))
            self._watchers.add(watcher)                 # asyncio keeps tasks only weakly
            watcher.add_done_callback(self._watchers.discard)

    async def _watch(self, job_id: str, index: int, ref) -> None:
        from ray import exceptions as rex
        key = (job_id, index)
        status, message, out = "failed", "", None
        try:
            out = await ref
            status, message = out["status"], out["message"]
        except rex.TaskCancelledError:
            status, message = "cancelled", "cancelled: nothing was kept"
        except (rex.WorkerCrashedError, rex.NodeDiedError, rex.LocalRayletDiedError) as e:
            status = "failed"
            message = (f"the worker process training this model stopped ({type(e).__name__}: killed, out of "
                       "memory or its machine left): nothing was saved. Train it again.")
        except rex.RayTaskError as e:
            cause = getattr(e, "cause", None)
            status = "failed"
            message = str(cause) if cause is not None and type(cause).__module__.startswith("vae_core") else \
                f"training failed unexpectedly ({type(cause or e).__name__}: {str(cause or e)[:300]})"
        except Exception as e:          # noqa: BLE001 - the queue must outlive any one run
            status, message = "failed", f"training failed unexpectedly ({type(e).__name__}: {str(e)[:300]})"
        self.tasks.pop(key, None)
        job = self.q.jobs.get(job_id)
        if key in self.cancelling:
            status, message, out = "cancelled", "cancelled: nothing was kept", None
        if job is not None:
            run = job["runs"][index]
            if out is not None:
                run["history"] = out["history"]
                run["metrics"] = out["metrics"]
                run["seconds"] = out["seconds"]
                run["usable"] = bool(out["usable"] and out["checkpoint"])
                if run["usable"]:
                    self.results[key] = out["checkpoint"]
                if status == "stopped" or key in self.stopping:
                    status = "stopped" if status != "diverged" else status
            self.q.finished(job_id, index, status, time.time(), message)
        self.stopping.discard(key)
        self.cancelling.discard(key)
        self._housekeeping(time.time())
        self._pump()

    def _housekeeping(self, now: float) -> None:
        for owner in self.q.forget_old(now, self.keep_s, self.abandon_s):
            job = self.q.job_of(owner)
            if job is not None:
                job["abandoned"] = True
            for key in self.q.stop(owner, now):
                self.stopping.add(key)
        for key in list(self.results):
            if key[0] not in self.q.jobs:
                del self.results[key]

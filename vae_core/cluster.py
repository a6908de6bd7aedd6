"""Ray, the engine that runs trainings away from the web server: connecting, and the run task.

Nothing here imports Ray at module import: the explorer pages never pay for it. `connect()`
brings it up on first use:

- With RAY_ADDRESS set (a cluster: `ray start --head` on the class server, `ray start --address`
  on each extra machine), the process joins that cluster as a driver. Token authentication is
  Ray's own (RAY_AUTH_MODE=token with RAY_AUTH_TOKEN or RAY_AUTH_TOKEN_PATH in the environment).
- Otherwise a local Ray is started on this machine: `ray start --head --block` as its own process
  (so restarting the web server keeps queued and running jobs), on 127.0.0.1 only (every socket:
  RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0), no dashboard, token authentication with a fresh token
  in a 0600 file, one CPU fewer than the machine has, so interactive pages keep a core, and its
  session at a lower priority (VAE_RAY_NICE), so trainings give way to the pages on every core. Its
  folder, VAE_RAY_DIR (default <tmp>/vae-ray-<uid>), holds the token, the address and the logs;
  a later process finds the running head there and joins it instead of starting another.

Ray ties the processes it starts to the thread that called `ray.init`, and Streamlit runs every
page in a thread that ends; so `ray.init` runs in one daemon thread that never returns, and
callers wait for it. The only module-level state is that cached handle (`_ENGINE`).

A run is one Ray task with one CPU (`train_task`): it sets its own torch threads, uses a GPU
where its worker has one, sends its progress to a mailbox actor without waiting for replies
(a task blocked in ray.get lends its CPU out), reads its stop flag from the replies, and returns
the finished checkpoint as bytes. Nothing is published by the worker: a worker that dies
leaves no partial file.

A 2-D map too big for the web server's process (`project_remote`) is one task with no CPU of its
own, so it never holds a training's slot: UMAP's numba layout keeps Python's lock for each of its
epochs, and in the server every page waited for it (bench/bench_map_nice.py).
"""
from __future__ import annotations

import json
import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Optional

from .errors import VaeCoreError

log = logging.getLogger(__name__)

NAMESPACE = "vae-latent-explorer"
QUEUE_NAME = "train-queue"


class EngineError(VaeCoreError):
    """The training engine (Ray) could not be started or reached; the message says why."""


# ---------------------------------------------------------------- where the local head lives

def ray_dir() -> Path:
    d = os.environ.get("VAE_RAY_DIR")
    # Short: Ray puts Unix sockets under it, and their paths may not exceed 107 bytes.
    return Path(d) if d else Path(tempfile.gettempdir()) / f"vae-ray-{os.getuid()}"


def local_cpus() -> int:
    """Workers of the local head: every core but one (VAE_RAY_CPUS overrides)."""
    env = os.environ.get("VAE_RAY_CPUS")
    if env:
        return max(1, int(env))
    return max(1, (os.cpu_count() or 2) - 1)


def _environment(folder: Path) -> dict:
    """What Ray reads from the environment, for the head and for this process."""
    env = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",     # every socket on 127.0.0.1
           "RAY_DISABLE_FAILURE_SIGNAL_HANDLER": "1",     # SIGTERM exits cleanly (ray.md)
           "RAY_USAGE_STATS_ENABLED": "0",
           "RAY_AUTH_MODE": "token",
           "RAY_AUTH_TOKEN_PATH": str(folder / "token")}
    return env


def _is_head(pid: int) -> bool:
    """pid is a `ray start --head` process (not a process that got a reused pid)."""
    try:
        args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return b"start" in args and b"--head" in args and any(b"ray" in part for part in args)


def _head_alive(folder: Path) -> bool:
    try:
        pid = int(json.loads((folder / "head.json").read_text())["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return _is_head(pid)


def _state(folder: Path) -> Optional[dict]:
    try:
        state = json.loads((folder / "head.json").read_text())
        if not _is_head(int(state["pid"])):
            return None
    except (OSError, ValueError, KeyError, TypeError):
        return None
    try:
        socket.create_connection(("127.0.0.1", int(state["port"])), timeout=1).close()
    except OSError:
        return None
    return state


def _own_folder(folder: Path) -> None:
    """Make the engine's folder, or accept it only if it is a real folder of this user that no one
    else can read (it holds the token): a folder planted in /tmp by someone else is refused."""
    import stat
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    st_ = os.lstat(folder)
    if not stat.S_ISDIR(st_.st_mode) or st_.st_uid != os.getuid():
        raise EngineError(f"{folder} is not a folder of this user: set VAE_RAY_DIR to a folder of your own")
    if st_.st_mode & 0o077:
        os.chmod(folder, 0o700)


def _write_token(path: Path) -> None:
    if path.exists():
        return
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_hex(32))


def start_local_head(folder: Optional[Path] = None, cpus: Optional[int] = None, timeout: float = 60.0) -> dict:
    """Start `ray start --head --block` on 127.0.0.1 in its own session, or find the one running
    from this folder. Returns {"pid", "port", "address"}."""
    folder = folder or ray_dir()
    _own_folder(folder)
    state = _state(folder)
    if state is not None:
        return state
    # One token per folder, kept across restarts of the head: Ray caches a process's token, so a
    # server that reconnects after the head died must find the same one.
    _write_token(folder / "token")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, **_environment(folder)}
    env.pop("RAY_ADDRESS", None)
    cmd = [sys.executable, "-m", "ray.scripts.scripts", "start", "--head", "--block", "--port", str(port),
           "--node-ip-address", "127.0.0.1", "--num-cpus", str(cpus or local_cpus()), "--num-gpus", "0",
           "--include-dashboard=false", "--disable-usage-stats", "--temp-dir", str(folder / "t")]
    with open(folder / "head.log", "ab") as out:
        proc = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True, cwd=str(folder))
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            tail = (folder / "head.log").read_text(errors="replace")[-600:]
            raise EngineError(f"the local Ray head exited at start (status {proc.returncode}): {tail.strip()}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            if time.monotonic() > deadline:
                proc.kill()
                raise EngineError(f"the local Ray head did not open its port within {timeout:.0f} s: "
                                  f"see {folder / 'head.log'}")
            time.sleep(0.2)
    _yield_to_server(proc.pid)
    state = {"pid": proc.pid, "port": port, "address": f"127.0.0.1:{port}"}
    (folder / "head.json").write_text(json.dumps(state))
    return state


def head_nice() -> int:
    """The priority of the local head's session against the web server's (VAE_RAY_NICE, 0-19,
    default 10; 0 leaves it equal)."""
    try:
        return min(19, max(0, int(os.environ.get("VAE_RAY_NICE", "10"))))
    except ValueError:
        return 10


def _yield_to_server(pid: int) -> None:
    """Let the head's session give way to the web server when both want the cores.

    Ray runs its workers at nice 15, but Linux with autogroup scheduling (the default on desktop
    and most server kernels) weighs nice only inside a session: the head runs in a session of its
    own, so a training took a full core from the pages however nice its worker was (measured: a
    2-thread computation in the server 1.4 s beside one training, 0.7 s alone; with the session at
    nice 10, 0.8 s). The session's autogroup nice is what counts. Best effort: no autogroup file
    (another OS, an older kernel) or no permission leaves the head as it is."""
    nice = head_nice()
    if not nice:
        return
    try:
        with open(f"/proc/{pid}/autogroup", "w") as f:
            f.write(str(nice))
    except OSError as e:
        log.info("could not lower the Ray head's priority (%s): trainings share the cores equally", e)


def _session_pids(sid: int) -> list[int]:
    """Processes of a session: the head and everything Ray started under it (Linux /proc)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                if int(fields[3]) == sid:       # field 6 of stat: the session id
                    pids.append(int(entry.name))
            except (OSError, IndexError, ValueError):
                continue
    return pids


def stop_local_head(folder: Optional[Path] = None, timeout: float = 10.0) -> bool:
    """Stop the local head started from this folder and every process of its session (SIGTERM,
    then SIGKILL after `timeout`). True when one was running."""
    folder = folder or ray_dir()
    try:
        sid = int(json.loads((folder / "head.json").read_text())["pid"])   # the head leads its own session
    except (OSError, ValueError, KeyError, TypeError):
        return False
    if not _is_head(sid):              # gone, or its pid now belongs to someone else: touch nothing
        (folder / "head.json").unlink(missing_ok=True)
        return False
    pids = _session_pids(sid)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            try:
                os.kill(pid, sig)
            except OSError:
                pass
        deadline = time.monotonic() + (timeout if sig == signal.SIGTERM else 5.0)
        while time.monotonic() < deadline:
            for pid in pids:
                try:
                    os.waitpid(pid, os.WNOHANG)      # reap our own child
                except ChildProcessError:
                    pass
            pids = _session_pids(sid)
            if not pids:
                break
            time.sleep(0.1)
        if not pids:
            break
    (folder / "head.json").unlink(missing_ok=True)
    return True


# ---------------------------------------------------------------- the connection

class _Engine:
    """The connection of this process to Ray, made in a thread that never returns."""

    def __init__(self):
        self.lock = threading.Lock()
        self.state = "off"          # off, starting, up, failed
        self.error = ""
        self.address = ""
        self.local = False
        self.ready = threading.Event()
        self.thread: Optional[threading.Thread] = None
        self.remotes: dict = {}     # Ray remote functions and actor classes made for this connection
        self.parked = threading.Event()   # set when the connection is dropped: its holder thread ends

    def _hold(self, address: Optional[str]) -> None:
        started_here = False
        try:
            if address:
                self.local = False
            else:
                folder = ray_dir()
                os.environ.update(_environment(folder))
                was_running = _state(folder) is not None
                address = start_local_head(folder)["address"]
                self.local = True
                started_here = not was_running
            import ray
            # The engine's code travels with the job (py_modules), so workers on other machines
            # run the same vae_core as this server.
            ray.init(address=address, namespace=NAMESPACE, log_to_driver=False,
                     logging_level=logging.WARNING, configure_logging=False,
                     runtime_env={"py_modules": [str(Path(__file__).resolve().parent)]})
            self.address = address
            self.state = "up"
            if started_here and not os.environ.get("VAE_RAY_KEEP"):
                # Registered after ray.init, so it runs before Ray's own exit handler (last in, first out).
                import atexit
                atexit.register(self._stop_if_idle, ray_dir())
        except Exception as e:      # noqa: BLE001 - any failure is reported on the page, never raised there
            self.state, self.error = "failed", _why(e)
            log.warning("training engine could not start: %s", self.error)
            self.ready.set()
            return
        self.ready.set()
        self.parked.wait()          # never return while connected: Ray's processes are tied to this thread

    def _stop_if_idle(self, folder: Path) -> None:
        """At a clean exit of the process that started the local head: stop it when no job is
        queued or running (a restart then starts afresh), else leave it so the jobs go on and a
        restarted server finds them. VAE_RAY_KEEP=1 always leaves it."""
        try:
            import ray
            queue = ray.get_actor(QUEUE_NAME, namespace=NAMESPACE)
            counts = ray.get(queue.summary.remote(), timeout=3)
            busy = counts["waiting"] or counts["running"]
        except ValueError:          # no queue actor: nothing was ever submitted
            busy = False
        except Exception:           # noqa: BLE001 - unsure: keep the head, never lose a job
            return
        if not busy:
            stop_local_head(folder)

    def connect(self, timeout: float = 90.0):
        with self.lock:
            if self.state in ("off", "failed"):
                self.state, self.error = "starting", ""
                self.ready.clear()
                self.parked = threading.Event()
                address = os.environ.get("RAY_ADDRESS") or None
                self.thread = threading.Thread(target=self._hold, args=(address,), name="vae-ray", daemon=True)
                self.thread.start()
        if not self.ready.wait(timeout):
            raise EngineError(f"the training engine (Ray) did not start within {timeout:.0f} s")
        if self.state != "up":
            raise EngineError(f"the training engine (Ray) could not start: {self.error}")
        import ray
        return ray

    def lost(self, e: BaseException) -> None:
        """Ray failed under us (the runtime died): forget the connection; the next connect starts again."""
        with self.lock:
            if self.state != "up":
                return
            self.state, self.error = "failed", _why(e)
            self.remotes.clear()
            try:
                import ray
                ray.shutdown()
            except Exception:       # noqa: BLE001
                pass
            self.parked.set()
            if self.local and not _head_alive(ray_dir()):
                (ray_dir() / "head.json").unlink(missing_ok=True)


def _why(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}"[:400]


_ENGINE = _Engine()


def connect(timeout: float = 90.0):
    """The `ray` module, connected (starting a local head if need be). Raises EngineError."""
    return _ENGINE.connect(timeout)


def engine() -> _Engine:
    return _ENGINE


def is_connected() -> bool:
    return _ENGINE.state == "up"


def local_head_running() -> bool:
    """A local head from VAE_RAY_DIR is up (so joining it is cheap and starts nothing)."""
    return not os.environ.get("RAY_ADDRESS") and _state(ray_dir()) is not None


# ---------------------------------------------------------------- the run task

def _train_task(spec, mailbox, key):
    """Body of the Ray task: train one RunSpec, report to `mailbox`, return the result as a dict."""
    import ray
    import torch

    from .runs import execute
    torch.set_num_threads(max(1, int(spec.threads or 1)))   # device "auto": the worker's GPU where it has one
    pending: list = []
    stop = {"asked": False}

    def send(msg: dict) -> None:
        if mailbox is None:
            return
        # Fire and forget; the replies say whether a stop was asked. Never block on them.
        pending.append(mailbox.report.remote(key, msg))
        done, _ = ray.wait(pending, num_returns=len(pending), timeout=0)
        for ref in done:
            pending.remove(ref)
            try:
                if ray.get(ref):
                    stop["asked"] = True
            except Exception:       # noqa: BLE001 - a lost report must not fail the run
                pass

    def should_stop() -> bool:
        if mailbox is not None and len(pending) > 50:   # the mailbox is slow: wait a little, never pile up
            ray.wait(pending, num_returns=len(pending) - 10, timeout=1.0)
        return stop["asked"]

    result = execute(spec, report=send, should_stop=should_stop)
    if pending:
        ray.wait(pending, num_returns=len(pending), timeout=5.0)
    return {"status": result.status, "message": result.message, "history": result.history,
            "metrics": result.metrics, "seconds": result.seconds, "precision": result.precision,
            "usable": result.usable, "record": result.record,
            "checkpoint": result.to_bytes() if result.usable else None}


def remote_train():
    """The Ray remote function of `_train_task`, made once per connection."""
    fn = _ENGINE.remotes.get("train")
    if fn is None:
        import ray
        fn = _ENGINE.remotes["train"] = ray.remote(num_cpus=1, max_retries=0)(_train_task)
    return fn


def _project_task(codes, method: str, seed: int):
    """Body of the Ray task of a map: vae_core.projections.project, without its disk cache (the
    caller's disk is not this worker's)."""
    from .projections import project
    return project(codes, method, seed=seed)


def project_remote(codes, method: str, seed: int, timeout: float = 1800.0):
    """A 2-D map of codes (vae_core.projections.project, same settings, same seed: the same map)
    computed by a Ray worker rather than this process, connecting first (a local head is started
    if none runs). The task asks for no CPU: it runs beside the trainings at the engine's lower
    priority and never delays one; callers bound how many they send (projections' slots).
    Raises EngineError when Ray cannot be reached or the task fails."""
    ray = connect()
    fn = _ENGINE.remotes.get("project")
    if fn is None:
        fn = _ENGINE.remotes["project"] = ray.remote(num_cpus=0, max_retries=1)(_project_task)
    try:
        return ray.get(fn.remote(codes, method, int(seed)), timeout=timeout)
    except Exception as e:          # noqa: BLE001 - any failure of the engine: the caller decides
        if isinstance(e, (ray.exceptions.RaySystemError, ConnectionError)):
            _ENGINE.lost(e)
        raise EngineError(f"the map could not be computed on the training engine ({_why(e)})") from e


class Mailbox:
    """Where the runs of a command-line sweep report (an actor): the latest report per run and
    one stop flag for all, returned to every report."""

    def __init__(self):
        self.latest: dict = {}
        self.stop = False

    def report(self, key, msg: dict) -> bool:
        cur = self.latest.setdefault(tuple(key), {})
        for k in ("epoch", "step", "steps_per_epoch"):
            if k in msg:
                cur[k] = msg[k]
        if msg.get("steps"):
            cur["loss"] = msg["steps"][-1][1]
        return self.stop

    def snapshot(self) -> dict:
        return self.latest

    def stop_all(self) -> bool:
        self.stop = True
        return True


def connect_cli(address: Optional[str] = None):
    """Ray for a command run from a terminal, in its main thread: the cluster at `address`
    (or RAY_ADDRESS), else a Ray of this process alone on every core, on 127.0.0.1, that ends
    with the command."""
    loaded = sys.modules.get("ray")    # Ray reads its settings at import: set them before importing it
    if loaded is not None and loaded.is_initialized():   # already connected (inside a server or a test)
        return loaded
    address = address or os.environ.get("RAY_ADDRESS") or None
    env = _environment(ray_dir())
    if address:      # a cluster's token comes from the user's RAY_AUTH_TOKEN or RAY_AUTH_TOKEN_PATH
        env.pop("RAY_AUTH_MODE")
        env.pop("RAY_AUTH_TOKEN_PATH")
    else:
        folder = ray_dir()
        _own_folder(folder)
        token = folder / "cli-token"
        _write_token(token)
        env["RAY_AUTH_TOKEN_PATH"] = str(token)
    os.environ.update(env)
    import ray
    kwargs = dict(namespace=NAMESPACE, log_to_driver=False, logging_level=logging.WARNING,
                  runtime_env={"py_modules": [str(Path(__file__).resolve().parent)]})
    if address:
        ray.init(address=address, **kwargs)
    else:
        ray.init(address="local", num_cpus=os.cpu_count() or 1, include_dashboard=False, **kwargs)
    # The process's one connection: the app's code in this process (a test, a server running a
    # command) uses it too instead of starting a head beside it.
    _ENGINE.state, _ENGINE.address, _ENGINE.local = "up", address or "local", False
    _ENGINE.ready.set()
    return ray

"""Security tripwires over the source: no code path can run a pickle, eval text or start a shell,
uploads are limited in the server's config and again in code, and XSRF protection stays on."""
import ast
import tomllib
from pathlib import Path

import pytest

from explorer.uploads import APP_UPLOAD_LIMIT_BYTES

REPO = Path(__file__).resolve().parent.parent
SOURCES = sorted([*REPO.glob("vae_core/*.py"), *REPO.glob("explorer/*.py"), *REPO.glob("app_pages/*.py"),
                  REPO / "app.py", REPO / "router.py", REPO / "home.py"])

FORBIDDEN_CALLS = {"eval", "exec", "compile", "__import__"}                  # bare builtins
FORBIDDEN_ATTRS = {("pickle", "load"), ("pickle", "loads"), ("torch", "load"), ("os", "system"),
                   ("os", "popen"), ("marshal", "loads"), ("shelve", "open")}
FORBIDDEN_MODULES = {"pickle", "subprocess", "shelve", "marshal", "dill", "joblib"}


def calls(tree):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            yield node


def test_the_sources_are_found():
    assert len(SOURCES) > 20 and all(p.is_file() for p in SOURCES)


# The one process the engine starts: `ray start --head` for the local training engine (cluster.py).
ALLOWED_IMPORTS = {("cluster.py", "subprocess")}


def test_the_only_process_the_engine_starts_is_ray_from_a_fixed_argument_list():
    tree = ast.parse((REPO / "vae_core" / "cluster.py").read_text())
    uses = [c for c in calls(tree) if isinstance(c.func, ast.Attribute) and isinstance(c.func.value, ast.Name)
            and c.func.value.id == "subprocess"]
    assert [c.func.attr for c in uses] == ["Popen"]
    (popen,) = uses
    argv = popen.args[0]
    assert isinstance(argv, ast.Name), "argv is a list built in the function, never a string"
    assigned = [n for n in ast.walk(tree) if isinstance(n, ast.Assign)
                and any(isinstance(t, ast.Name) and t.id == argv.id for t in n.targets)]
    assert len(assigned) == 1 and isinstance(assigned[0].value, ast.List)
    first = assigned[0].value.elts[:3]
    assert ast.unparse(first[0]) == "sys.executable" and [e.value for e in first[1:]] == ["-m", "ray.scripts.scripts"]
    assert not any(k.arg == "shell" for k in popen.keywords)


def test_no_pickle_eval_or_shell_in_the_app_or_engine():
    problems = []
    for path in SOURCES:
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
                problems += [f"{path.name}:{node.lineno} imports {n}" for n in names
                             if n.split(".")[0] in FORBIDDEN_MODULES and (path.name, n) not in ALLOWED_IMPORTS]
        for call in calls(tree):
            f = call.func
            if isinstance(f, ast.Name) and f.id in FORBIDDEN_CALLS:
                problems.append(f"{path.name}:{call.lineno} calls {f.id}()")
            if isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name) and (f.value.id, f.attr) in FORBIDDEN_ATTRS:
                problems.append(f"{path.name}:{call.lineno} calls {f.value.id}.{f.attr}()")
            if isinstance(f, ast.Attribute) and f.attr == "load" and isinstance(f.value, ast.Name) and f.value.id == "np":
                kw = {k.arg: k.value for k in call.keywords}
                if not (isinstance(kw.get("allow_pickle"), ast.Constant) and kw["allow_pickle"].value is False):
                    problems.append(f"{path.name}:{call.lineno} np.load without allow_pickle=False")
            for k in call.keywords:
                if k.arg == "shell" and isinstance(k.value, ast.Constant) and k.value.value is True:
                    problems.append(f"{path.name}:{call.lineno} shell=True")
    assert not problems, problems


def test_upload_limit_is_set_in_the_config_and_enforced_in_code_and_xsrf_stays_on():
    cfg = tomllib.loads((REPO / ".streamlit" / "config.toml").read_text())
    server = cfg.get("server", {})
    assert server.get("enableXsrfProtection", True) is True
    assert server.get("enableCORS", True) is True
    assert server["maxUploadSize"] * 1024 * 1024 == APP_UPLOAD_LIMIT_BYTES
    # An error no page foresaw shows its type, never a traceback with the server's paths.
    assert cfg["client"]["showErrorDetails"] in ("type", "none")


def test_the_test_suite_cannot_reach_the_network():
    """conftest's guard: a download attempted by mistake fails at once instead of going online."""
    import socket
    import urllib.request
    with pytest.raises(OSError, match="may not reach the network"):
        socket.create_connection(("192.0.2.1", 80), timeout=1)   # TEST-NET-1, never routed
    with pytest.raises(OSError, match="may not reach the network"):
        urllib.request.urlopen("http://192.0.2.1/mnist/train-images-idx3-ubyte.gz", timeout=1)


def test_static_serving_serves_plotly_js_and_nothing_else():
    """server.enableStaticServing serves static/ to anyone: only the copy of plotly.js the charts
    load (explorer/charts.py) may be there, and git keeps nothing else in it."""
    from explorer import charts
    assert charts.install_plotly_js()
    served = sorted(p.name for p in (REPO / "static").iterdir())
    assert set(served) <= {".gitignore", charts.PLOTLY_JS} | {p for p in served if p.startswith("plotly-")
                                                              and p.endswith(".min.js")}, served
    ignore = (REPO / "static" / ".gitignore").read_text().split()
    assert "*" in ignore and "!.gitignore" in ignore

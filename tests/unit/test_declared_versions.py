"""The lower bounds pyproject.toml declares are the versions the version matrix's lowest legs install."""

from __future__ import annotations

from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]


def lower_bounds(requirements: list[str]) -> dict[str, str]:
    bounds = {}
    for line in requirements:
        requirement = Requirement(line)
        for spec in requirement.specifier:
            if spec.operator == ">=":
                bounds[canonicalize_name(requirement.name)] = spec.version
    return bounds


def test_constraints_lowest_pins_each_declared_lower_bound() -> None:
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = lower_bounds(project["dependencies"] + project["optional-dependencies"]["local"])
    pinned = {}
    for line in (ROOT / "scripts" / "constraints-lowest.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            pinned[canonicalize_name(name)] = version
    assert declared, "no lower bounds found"
    for name, version in declared.items():
        assert name in pinned, f"{name}>={version} is declared but scripts/constraints-lowest.txt lacks it"
        assert Version(pinned[name]) == Version(version), (
            f"{name}: declared >={version}, scripts/constraints-lowest.txt pins {pinned[name]}"
        )

"""pyproject.toml and environment.yml name the same packages with the same ranges."""

import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    tomllib = pytest.importorskip("tomli")


def pyproject():
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def test_environment_yml_matches_pyproject():
    project = pyproject()
    wanted = set(project["dependencies"]) | set(project["optional-dependencies"]["dev"])
    text = (ROOT / "environment.yml").read_text()
    listed = set(re.findall(r"^ {6}- (\S+)$", text, flags=re.M)) - {"-e"}
    listed.discard(".[dev]")
    assert listed == wanted
    assert "- -e .[dev]" in text
    python = re.search(r"- python(\S+)", text).group(1)
    assert python.replace(",", "") == project["requires-python"].replace(",", "")


def test_torch_is_never_pinned_exactly():
    for requirement in pyproject()["dependencies"]:
        if re.match(r"torch(vision)?\b", requirement):
            assert "==" not in requirement and "<" not in requirement, requirement

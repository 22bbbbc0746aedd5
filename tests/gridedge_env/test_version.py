"""``gridedge_env.__version__`` is the installed distribution's version, the one in pyproject.toml
(a stale editable install fails here: reinstall, as ``make`` does when pyproject.toml changes)."""

from importlib.metadata import version
from pathlib import Path

import pytest

import gridedge_env

tomllib = pytest.importorskip("tomllib")  # Python >= 3.11


def test_version_is_the_distributions_and_pyprojects():
    pyproject = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text())
    assert gridedge_env.__version__ == version("gridedge") == pyproject["project"]["version"]
    assert gridedge_env.__version__ == "0.1.0"

"""CITATION.cff parses, names the paper, and carries the package's version."""

import datetime
import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def pyproject_version() -> str:
    text = (ROOT / "pyproject.toml").read_text()
    try:
        import tomllib
    except ImportError:  # Python 3.10: the [project] table's version line
        project = text.split("[project]", 1)[1].split("\n[", 1)[0]
        return re.search(r'^version\s*=\s*"([^"]+)"', project, re.M).group(1)
    return tomllib.loads(text)["project"]["version"]


def test_citation_parses_and_matches_the_package():
    cff = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    assert cff["cff-version"] == "1.2.0"
    assert cff["title"] == "gridedge" and cff["type"] == "software"
    assert str(cff["version"]) == pyproject_version()
    datetime.date.fromisoformat(str(cff["date-released"]))
    assert cff["license"] == "BSD-3-Clause"
    assert cff["authors"] == [{"name": "gridedge developers"}]
    paper = cff["preferred-citation"]
    assert paper["title"] == "Gradient-Based Multi-Agent Proximal Learning for Grid-Edge Flexibility"
    assert [a["family-names"] for a in paper["authors"]] == ["Zhou", "Zeng", "Morstyn"]
    assert paper["year"] == 2026
    assert any(i["value"] == "arXiv:2604.24549" for i in paper["identifiers"])
    assert paper in cff["references"]

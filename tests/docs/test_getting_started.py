"""The getting-started pages run: every ```python block of each page, in order, in one namespace
per page, in an empty working directory (what a reader pasting them into a session gets)."""

import re
from pathlib import Path

import pytest

PAGES = Path(__file__).resolve().parents[2] / "docs" / "getting-started"
BLOCK = re.compile(r"^```python\n(.*?)^```\s*$", re.S | re.M)


def python_blocks(page: Path) -> list[str]:
    return BLOCK.findall(page.read_text())


def run_page(name: str) -> dict:
    page = PAGES / name
    blocks = python_blocks(page)
    assert blocks, f"{name} has no python block"
    ns: dict = {"__name__": "__docs__"}
    for i, code in enumerate(blocks):
        exec(compile(code, f"{page}:python-block-{i + 1}", "exec"), ns)
    return ns


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.setenv("WANDB_MODE", "disabled")
    return tmp_path


@pytest.fixture
def registry_restored():
    """A page may register environments: leave the registry as it was for other tests."""
    from gridedge_env.registry import registry

    saved = dict(registry)
    yield
    registry.clear()
    registry.update(saved)


def test_every_page_is_tested():
    assert sorted(p.name for p in PAGES.glob("*.md")) == [
        "gradmap-user.md", "power-systems.md", "rl-researcher.md"]


def test_block_extraction_keeps_order_and_skips_other_languages(tmp_path):
    page = tmp_path / "p.md"
    page.write_text("x\n```python\na = 1\n```\n```bash\nls\n```\n```python\nb = a + 1\n```\n")
    assert python_blocks(page) == ["a = 1\n", "b = a + 1\n"]


def test_rl_researcher_page_runs(in_tmp):
    ns = run_page("rl-researcher.md")
    assert ns["steps"] == 48 and ns["weights"].grad is not None


def test_power_systems_page_runs(in_tmp, registry_restored):
    ns = run_page("power-systems.md")
    assert (in_tmp / "tiny_feeder" / "Master.dss").is_file()
    assert ns["scenario"].n_agents == 16 and ns["state"].iteration == 2


def test_gradmap_user_page_runs(in_tmp):
    run_page("gradmap-user.md")
    assert (in_tmp / "runs" / "quick" / "eval.json").is_file()
    assert (in_tmp / "runs" / "compare-quick" / "comparison.csv").is_file()
    assert len(list((in_tmp / "export").glob("*.onnx"))) == 50

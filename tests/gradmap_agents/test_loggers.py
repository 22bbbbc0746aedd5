"""Run logging: a fresh run starts its CSV files clean, a resumed one drops rows past its
checkpoint, and W&B's start-up wait for an unreachable server is bounded (no network used)."""

import sys
import types

import pytest

from gradmap_agents import loggers
from gradmap_agents.config import load_config
from gradmap_agents.loggers import RunLogger


def _iterations(path):
    return [int(line.split(",")[0]) for line in path.read_text().splitlines()[1:]]


def _log(logger, *iterations):
    for i in iterations:
        logger.log({"iteration": i, "train/cost": 1.0 * i,
                    **({"val/cost": 2.0 * i} if i % 2 == 0 else {})})


@pytest.fixture
def cfg():
    return load_config(None, {})


def test_fresh_run_starts_csv_files_clean(tmp_path, cfg):
    """A run killed before its first checkpoint left rows 1-3; starting afresh logs 1, 2, ...
    not 1 2 3 1 2 ..."""
    _log(RunLogger(tmp_path, "csv", cfg), 1, 2, 3, 4)
    assert _iterations(tmp_path / "train.csv") == [1, 2, 3, 4]
    fresh = RunLogger(tmp_path, "csv", cfg)
    assert not (tmp_path / "train.csv").exists()  # truncated at start, not at the first row
    _log(fresh, 1)
    assert _iterations(tmp_path / "train.csv") == [1]
    assert (tmp_path / "train.csv").read_text().splitlines()[0] == "iteration,train/cost"
    assert not (tmp_path / "validation.csv").exists()
    _log(fresh, 2)
    assert _iterations(tmp_path / "train.csv") == [1, 2]
    assert _iterations(tmp_path / "validation.csv") == [2]


def test_resumed_run_drops_rows_past_its_checkpoint(tmp_path, cfg):
    _log(RunLogger(tmp_path, "csv", cfg), 1, 2, 3, 4, 5)
    resumed = RunLogger(tmp_path, "csv", cfg, resume_from=4)
    assert _iterations(tmp_path / "train.csv") == [1, 2, 3, 4]
    _log(resumed, 5)
    assert _iterations(tmp_path / "train.csv") == [1, 2, 3, 4, 5]
    assert _iterations(tmp_path / "validation.csv") == [2, 4]


class _FakeRun:
    def __init__(self):
        self.logged = []
        self.summary = {}

    def log(self, m, step):
        self.logged.append(step)

    def finish(self):
        pass


class _TimeoutError(Exception):
    pass


def _fake_wandb(monkeypatch, *, online_fails: bool):
    calls = []

    def init(**kwargs):
        calls.append(kwargs)
        if kwargs["mode"] == "online" and online_fails:
            raise _TimeoutError("Run initialization has timed out after 15.0 sec")
        return _FakeRun()

    fake = types.SimpleNamespace(init=init, Settings=lambda **kw: dict(kw))
    monkeypatch.setitem(sys.modules, "wandb", fake)
    return calls


def test_wandb_online_init_wait_is_bounded(tmp_path, cfg, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "online")
    calls = _fake_wandb(monkeypatch, online_fails=False)
    log = RunLogger(tmp_path, "wandb", cfg)
    assert len(calls) == 1 and calls[0]["mode"] == "online"
    assert calls[0]["settings"] == {"init_timeout": loggers.WANDB_INIT_TIMEOUT_S}
    assert loggers.WANDB_INIT_TIMEOUT_S <= 30
    _log(log, 1)
    assert log.wandb.logged == [1]


def test_wandb_unreachable_falls_back_to_offline(tmp_path, cfg, monkeypatch, capsys):
    monkeypatch.setenv("WANDB_MODE", "online")
    calls = _fake_wandb(monkeypatch, online_fails=True)
    log = RunLogger(tmp_path, "wandb", cfg)
    assert [c["mode"] for c in calls] == ["online", "offline"]
    assert "settings" not in calls[1]
    assert calls[0]["id"] == calls[1]["id"]  # the same run, synced later
    assert "logging offline" in capsys.readouterr().err
    _log(log, 1)
    assert log.wandb.logged == [1]


def test_wandb_offline_mode_needs_no_timeout(tmp_path, cfg, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    calls = _fake_wandb(monkeypatch, online_fails=True)
    RunLogger(tmp_path, "wandb", cfg)
    assert [c["mode"] for c in calls] == ["offline"]

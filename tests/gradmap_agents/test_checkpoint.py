"""Checkpoints: the digest catches flipped bytes, old (digest-less) files still load, foreign or
hand-edited headers are CheckpointErrors naming the file and key, and temporary files of killed
writers are cleaned up on the next write."""

import json
import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file, safe_open, save_file

from gradmap_agents import checkpoint
from gradmap_agents.checkpoint import CheckpointError
from gradmap_agents.config import load_config
from gradmap_agents.runs import build_env
from gradmap_agents.train import init_state


@pytest.fixture(scope="module")
def setup():
    cfg = load_config("ieee13-50", {"policy": {"hidden": [8]}})
    env = build_env(cfg)
    s = init_state(env, cfg)
    for p in s.policy.parameters():  # Adam moments in the checkpoint too
        p.grad = torch.ones_like(p)
    s.optimizer.step()
    s.iteration = 3
    return cfg, env, s


@pytest.fixture
def saved(setup, tmp_path):
    cfg, _, s = setup
    path = tmp_path / "checkpoint.safetensors"
    checkpoint.save(path, s, cfg)
    return path


def _header(path):
    with safe_open(str(path), framework="pt") as fh:
        return fh.metadata()


def _rewrite(path, header, tensors=None):
    """The checkpoint re-written with another header (a hand edit, or an older program)."""
    tensors = load_file(str(path)) if tensors is None else tensors
    save_file(tensors, str(path), metadata=header)


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()  # reaped: its PID names no process now
    return proc.pid


def test_round_trip_stores_a_digest(setup, saved):
    cfg, env, s = setup
    assert len(_header(saved)[checkpoint.DIGEST_KEY]) == 64
    back = checkpoint.load(saved, env, cfg)
    assert back.iteration == 3
    for a, b in zip(s.policy.parameters(), back.policy.parameters(), strict=True):
        assert torch.equal(a, b)
    assert torch.equal(back.day_generator.get_state(), s.day_generator.get_state())


def test_flipped_data_byte_is_a_checkpoint_error_naming_the_file(saved):
    data = bytearray(saved.read_bytes())
    data[-5] ^= 0x01  # a bit of the last tensor's bytes: the file still parses
    saved.write_bytes(bytes(data))
    load_file(str(saved))  # safetensors alone does not notice
    with pytest.raises(CheckpointError, match="corrupted") as exc:
        checkpoint.read(saved)
    assert str(saved) in str(exc.value)


def test_changed_metadata_under_the_old_digest_is_caught(saved):
    header = _header(saved)
    meta = json.loads(header["gradmap"])
    meta["iteration"] = 4
    _rewrite(saved, {**header, "gradmap": json.dumps(meta)})
    with pytest.raises(CheckpointError, match=f"{saved}.*corrupted"):
        checkpoint.read(saved)


def test_checkpoint_without_digest_still_loads(setup, saved):
    cfg, env, _ = setup
    header = _header(saved)
    del header[checkpoint.DIGEST_KEY]  # as written before digests existed
    _rewrite(saved, header)
    assert checkpoint.load(saved, env, cfg).iteration == 3
    assert checkpoint.config_of(saved) == cfg


@pytest.mark.parametrize("header, key", [
    (None, "'gradmap'"),  # another program's safetensors file, no metadata at all
    ({"format": "pt"}, "'gradmap'"),
    ({"gradmap": "{not json"}, "'gradmap' is not valid JSON"),
    ({"gradmap": "[1, 2]"}, "'gradmap' is not a JSON object"),
])
def test_foreign_header_is_a_checkpoint_error(tmp_path, header, key):
    path = tmp_path / "other.safetensors"
    save_file({"x": torch.zeros(3)}, str(path), metadata=header)
    with pytest.raises(CheckpointError) as exc:
        checkpoint.read(path)
    assert str(path) in str(exc.value) and key in str(exc.value)
    with pytest.raises(CheckpointError):
        checkpoint.config_of(path)


def test_garbage_file_is_a_checkpoint_error(tmp_path):
    path = tmp_path / "checkpoint.safetensors"
    path.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all}")
    with pytest.raises(CheckpointError, match=str(path)):
        checkpoint.read(path)


@pytest.mark.parametrize("key", sorted(checkpoint.META_TYPES))
def test_missing_metadata_key_is_named(setup, saved, key):
    cfg, env, _ = setup
    meta = json.loads(_header(saved)["gradmap"])
    del meta[key]
    _rewrite(saved, {"gradmap": json.dumps(meta)})  # hand-edited: no digest either
    for call in (lambda: checkpoint.load(saved, env, cfg), lambda: checkpoint.config_of(saved)):
        with pytest.raises(CheckpointError) as exc:
            call()
        assert str(saved) in str(exc.value) and repr(key) in str(exc.value)


@pytest.mark.parametrize("key, value", [("config", "ieee13"), ("iteration", "3"),
                                        ("history", None), ("fingerprint", 7)])
def test_mistyped_metadata_key_is_named(setup, saved, key, value):
    cfg, env, _ = setup
    meta = json.loads(_header(saved)["gradmap"])
    meta[key] = value
    _rewrite(saved, {"gradmap": json.dumps(meta)})
    with pytest.raises(CheckpointError, match=f"{saved}.*'{key}' has a bad value"):
        checkpoint.load(saved, env, cfg)


def test_bad_config_in_header_is_a_checkpoint_error(saved):
    meta = json.loads(_header(saved)["gradmap"])
    meta["config"]["algo"]["lr"] = "fast"
    _rewrite(saved, {"gradmap": json.dumps(meta)})
    with pytest.raises(CheckpointError, match=f"{saved}.*'config'.*algo.lr"):
        checkpoint.config_of(saved)


def test_missing_tensor_is_named(setup, saved):
    cfg, env, _ = setup
    tensors = load_file(str(saved))
    del tensors["rng.day"]
    _rewrite(saved, {"gradmap": _header(saved)["gradmap"]}, tensors)
    with pytest.raises(CheckpointError, match=f"{saved}.*'rng.day'"):
        checkpoint.load(saved, env, cfg)


def test_bad_optimizer_groups_are_a_checkpoint_error(setup, saved):
    cfg, env, _ = setup
    meta = json.loads(_header(saved)["gradmap"])
    meta["optim_groups"] = [{"lr": 0.1}]  # no "params"
    _rewrite(saved, {"gradmap": json.dumps(meta)})
    with pytest.raises(CheckpointError, match=f"{saved}.*optim_groups"):
        checkpoint.load(saved, env, cfg)


def test_atomic_write_removes_stale_temp_files_of_dead_writers(tmp_path):
    target = tmp_path / "eval.json"
    dead = _dead_pid()
    stale = tmp_path / f".eval.json.tmp-{dead}"
    stale.write_text("half written")
    alive = tmp_path / f".eval.json.tmp-{os.getppid()}"  # a live writer's: kept
    alive.write_text("being written")
    other = tmp_path / f".train.csv.tmp-{dead}"  # another target's: left to its own writer
    other.write_text("half")
    checkpoint.atomic_write(target, lambda tmp: tmp.write_text("{}"))
    assert target.read_text() == "{}"
    assert not stale.exists() and alive.exists() and other.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [target.name, alive.name, other.name])


def test_save_removes_the_run_directorys_stale_temp_files(setup, tmp_path):
    cfg, _, s = setup
    dead = _dead_pid()
    stale = [tmp_path / f".checkpoint.safetensors.tmp-{dead}",
             tmp_path / f".train.csv.tmp-{dead}", tmp_path / f".config.yaml.tmp-{dead}"]
    for p in stale:
        p.write_bytes(b"x" * 100)
    keep = [tmp_path / "train.csv", tmp_path / ".hidden-notes", tmp_path / ".x.tmp-notapid"]
    for p in keep:
        p.write_text("mine")
    checkpoint.save(tmp_path / "checkpoint.safetensors", s, cfg)
    assert not any(p.exists() for p in stale)
    assert all(p.exists() for p in keep)
    assert checkpoint.read(tmp_path / "checkpoint.safetensors")[1]["iteration"] == 3

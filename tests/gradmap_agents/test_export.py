"""``gradmap-export`` into a used folder: refused (one line naming it) unless ``--replace``,
which replaces the folder's contents whole, leaving no file of an earlier export."""

import json
import subprocess
import sys

import pytest

from gradmap_agents import checkpoint, cli
from gradmap_agents.config import load_config
from gradmap_agents.export import ExportError, export_policies, replace_folder
from gradmap_agents.runs import CHECKPOINT, build_env
from gradmap_agents.train import init_state

pytest.importorskip("onnx")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A run directory with an (untrained) checkpoint: all that gradmap-export reads."""
    cfg = load_config("ieee13-50", {"policy": {"hidden": [8]}})
    env = build_env(cfg)
    run_dir = tmp_path_factory.mktemp("run")
    checkpoint.save(run_dir / CHECKPOINT, init_state(env, cfg), cfg)
    return run_dir


def _agents(out):
    return set(json.loads((out / "manifest.json").read_text())["agents"])


def test_export_refuses_a_non_empty_folder(run, tmp_path, capsys):
    out = tmp_path / "export"
    assert cli.export_main(["--run", str(run), "--out", str(out)]) == 0
    names = _agents(out)
    assert {p.name for p in out.iterdir()} == {"manifest.json"} | {f"{n}.onnx" for n in names}
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    with pytest.raises(SystemExit) as exc:
        cli.export_main(["--run", str(run), "--out", str(out)])
    msg = str(exc.value.code)
    assert "\n" not in msg and str(out) in msg and "--replace" in msg
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # untouched


def test_export_refuses_a_file(run, tmp_path):
    out = tmp_path / "export"
    out.write_text("not a folder")
    with pytest.raises(SystemExit, match=f"{out} is a file"):
        cli.export_main(["--run", str(run), "--out", str(out), "--replace"])


def test_replace_leaves_no_stale_files(run, tmp_path):
    out = tmp_path / "export"
    out.mkdir()
    (out / "manifest.json").write_text(json.dumps({"run": "another run", "agents": {}}))
    (out / "other_run_battery_999.onnx").write_bytes(b"stale")
    (out / "notes").mkdir()
    (out / "notes" / "old.txt").write_text("stale")
    assert cli.export_main(["--run", str(run), "--out", str(out), "--replace"]) == 0
    names = _agents(out)
    assert {p.name for p in out.iterdir()} == {"manifest.json"} | {f"{n}.onnx" for n in names}
    assert json.loads((out / "manifest.json").read_text())["run"] == str(run.resolve())
    assert [p.name for p in tmp_path.iterdir()] == ["export"]  # no temporary sibling left


def test_replace_into_an_empty_or_new_folder(run, tmp_path):
    for out in (tmp_path / "new", tmp_path / "empty"):
        if out.name == "empty":
            out.mkdir()
        assert cli.export_main(["--run", str(run), "--out", str(out), "--replace"]) == 0
        assert (out / "manifest.json").is_file()


def test_library_export_refuses_a_non_empty_folder(tmp_path):
    (tmp_path / "x.onnx").write_bytes(b"old")
    with pytest.raises(ExportError, match=str(tmp_path)):
        export_policies(None, None, tmp_path)
    assert (tmp_path / "x.onnx").read_bytes() == b"old"


def test_failed_replace_keeps_the_old_contents(tmp_path):
    out = tmp_path / "export"
    out.mkdir()
    (out / "manifest.json").write_text("old")

    def fail(tmp):
        (tmp / "half.onnx").write_bytes(b"half")
        raise RuntimeError("export failed")

    with pytest.raises(RuntimeError, match="export failed"):
        replace_folder(out, fail)
    assert [p.name for p in out.iterdir()] == ["manifest.json"]
    assert [p.name for p in tmp_path.iterdir()] == ["export"]


def test_replace_removes_temp_folders_of_killed_exports(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()  # its PID names no process now
    stale = tmp_path / f".export.tmp-{proc.pid}"
    stale.mkdir()
    (stale / "a.onnx").write_bytes(b"half")
    replace_folder(tmp_path / "export", lambda tmp: (tmp / "manifest.json").write_text("{}"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export"]
    assert [p.name for p in (tmp_path / "export").iterdir()] == ["manifest.json"]

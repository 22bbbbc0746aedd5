"""The console-script shim: exit status passes through; Ctrl-C is one line and status 130."""

import pytest

from gridedge_env.console import EXIT_INTERRUPTED, run_console


def test_status_passes_through():
    with pytest.raises(SystemExit) as exc:
        run_console(lambda: 4, "gradmap-train")
    assert exc.value.code == 4


def test_interrupt_is_one_line_not_a_traceback(capsys):
    def interrupted() -> int:
        raise KeyboardInterrupt

    with pytest.raises(SystemExit) as exc:
        run_console(interrupted, "gradmap-sweep")
    assert exc.value.code == EXIT_INTERRUPTED == 130
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("gradmap-sweep: interrupted")
    assert "Traceback" not in err

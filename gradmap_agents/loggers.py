"""Where a run's metrics go: CSV (always) and Weights & Biases (optional), behind one callback.

The trainer knows none of this: the CLI builds a :class:`RunLogger` and passes its ``log`` as the
trainer's ``progress_fn``. A logging failure never fails a run: W&B errors are reported once on
stderr and W&B is switched off for the rest of the run. W&B runs offline unless an API key is
configured (``WANDB_API_KEY`` or a ``wandb login``); the key itself is never written anywhere.
Online, ``wandb.init`` waits at most :data:`WANDB_INIT_TIMEOUT_S` for the server (not W&B's
default of about 90 s; a key and no network stalled a run's start that long), then the run logs
offline (``wandb sync`` uploads it later).

A fresh run (``resume_from=None``) starts its CSV files clean: rows a killed earlier attempt left
in the run directory are dropped, so a restart never appends ``1 2 3`` to ``1 2 3``.
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
import sys
from pathlib import Path

from .checkpoint import atomic_write

WANDB_INIT_TIMEOUT_S = 15.0
"""Seconds ``wandb.init`` may wait for the W&B server before the run falls back to offline."""


def wandb_mode() -> str:
    """``"online"`` when an API key is configured, else ``"offline"`` (``WANDB_MODE`` wins)."""
    if os.environ.get("WANDB_MODE"):
        return os.environ["WANDB_MODE"]
    if os.environ.get("WANDB_API_KEY"):
        return "online"
    netrc = Path(os.environ.get("NETRC", Path.home() / ".netrc"))
    try:
        return "online" if "api.wandb.ai" in netrc.read_text() else "offline"
    except OSError:
        return "offline"


class CsvLog:
    """Rows of metrics appended to a CSV file; the header grows when new keys appear (the file is
    then rewritten). ``truncate_after(i)`` drops rows past iteration ``i`` (a resumed run);
    ``fresh=True`` deletes an existing file first (a new run in a used directory)."""

    def __init__(self, path: Path, *, fresh: bool = False):
        self.path = Path(path)
        self.rows: list[dict] = []
        if fresh:
            self.path.unlink(missing_ok=True)
        if self.path.exists():
            with open(self.path, newline="") as fh:
                self.rows = list(csv.DictReader(fh))
        self.keys = list(self.rows[0]) if self.rows else []

    def truncate_after(self, iteration: int) -> None:
        kept = [r for r in self.rows if int(float(r["iteration"])) <= iteration]
        if len(kept) != len(self.rows):
            self.rows = kept
            self._rewrite()

    def append(self, row: dict) -> None:
        self.rows.append(row)
        new = [k for k in row if k not in self.keys]
        if new or not self.path.exists():
            self.keys += new
            self._rewrite()
            return
        with open(self.path, "a", newline="") as fh:
            csv.DictWriter(fh, self.keys).writerow(row)

    def _rewrite(self) -> None:
        buf = io.StringIO()
        w = csv.DictWriter(buf, self.keys)
        w.writeheader()
        w.writerows(self.rows)
        atomic_write(self.path, lambda tmp: Path(tmp).write_text(buf.getvalue()))


def run_id(run_dir: Path, cfg) -> str:
    """The W&B run id of a run directory: its name, a digest of its absolute path (two
    comparisons or sweep trials with the same config and folder name stay apart) and the
    config's fingerprint, at most 64 characters."""
    where = hashlib.sha1(str(Path(run_dir).resolve()).encode()).hexdigest()[:10]
    return f"{Path(run_dir).resolve().name}-{where}-{cfg.fingerprint()}"[:64]


class RunLogger:
    """CSV files in the run directory and, with ``logger="wandb"``, a W&B run."""

    def __init__(self, run_dir: Path, logger: str, cfg, *, resume_from: int | None = None,
                 name: str | None = None):
        fresh = resume_from is None  # a fresh start never appends to a killed attempt's rows
        self.train = CsvLog(Path(run_dir) / "train.csv", fresh=fresh)
        self.val = CsvLog(Path(run_dir) / "validation.csv", fresh=fresh)
        if resume_from is not None:
            self.train.truncate_after(resume_from)
            self.val.truncate_after(resume_from)
        self.wandb = None
        if logger == "wandb":
            self._start_wandb(run_dir, cfg, name)

    def _start_wandb(self, run_dir, cfg, name) -> None:
        try:
            import wandb  # why: optional dependency (gridedge[rl]), and slow to import

            kwargs = dict(project=cfg.logging.project, group=cfg.logging.group or cfg.env,
                          tags=list(cfg.logging.tags), name=name, config=cfg.as_dict(),
                          dir=str(run_dir), resume="allow",
                          id=run_id(run_dir, cfg))
            mode = wandb_mode()
            if mode != "online":
                self.wandb = wandb.init(mode=mode, **kwargs)
                return
            try:
                self.wandb = wandb.init(
                    mode="online", settings=wandb.Settings(init_timeout=WANDB_INIT_TIMEOUT_S),
                    **kwargs)
            except Exception as exc:  # noqa: BLE001 - server unreachable: log offline instead
                print(f"gradmap: W&B server not reached within {WANDB_INIT_TIMEOUT_S:g} s "
                      f"({type(exc).__name__}); logging offline (upload later with wandb sync)",
                      file=sys.stderr)
                self.wandb = wandb.init(mode="offline", **kwargs)
        except Exception as exc:  # noqa: BLE001 - logging must never fail a run
            self._disable(exc)

    def _disable(self, exc: Exception) -> None:
        print(f"gradmap: W&B logging off for this run ({type(exc).__name__}: {exc})", file=sys.stderr)
        self.wandb = None

    def log(self, m: dict) -> None:
        """Write one iteration's metrics (``val/`` keys go to the validation file too)."""
        self.train.append({k: v for k, v in m.items() if not k.startswith("val/")})
        if any(k.startswith("val/") for k in m):
            self.val.append(m)
        if self.wandb is not None:
            try:
                self.wandb.log(m, step=int(m["iteration"]))
            except Exception as exc:  # noqa: BLE001
                self._disable(exc)

    def summary(self, values: dict) -> None:
        if self.wandb is not None:
            try:
                self.wandb.summary.update(values)
            except Exception as exc:  # noqa: BLE001
                self._disable(exc)

    def close(self) -> None:
        if self.wandb is not None:
            try:
                self.wandb.finish()
            except Exception as exc:  # noqa: BLE001
                self._disable(exc)

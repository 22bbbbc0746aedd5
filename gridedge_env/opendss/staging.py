"""Stage an OpenDSS model for import: a private copy the importer may compile safely.

Two things in master files as users write them stop a plain ``compile``:

- files ``redirect``-ed or ``compile``-d under another letter case than they have on disk
  (models written on Windows), which OpenDSS cannot find on a case-sensitive file system;
- commands that act on a solved circuit or write to the user's disk: ``solve``, ``show``,
  ``export``, ``plot``, ``visualize``, ``summary``, ``interpolate`` (plot coordinates; needs a
  solved circuit), ... (:data:`ACTION_COMMANDS`). The importer builds the circuit and solves
  it itself, so these are commented out in the copy (with their ``~`` / ``more`` continuation
  lines).

:func:`stage_master` copies the model's folder to a temporary directory only when one of these
is present and fixes the copy; the user's files are never touched.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

#: Commands that solve, report or write results; the importer does not run them (first word of
#: a command, lower case; OpenDSS also accepts unambiguous abbreviations of a few, not handled).
ACTION_COMMANDS = frozenset({
    "solve", "show", "export", "plot", "visualize", "summary", "dump", "fileedit", "di_plot",
    "comparecases", "yearlycurves", "totals", "closedi", "obfuscate", "sample", "zsc", "zsc10",
    "zscrefresh", "cleanup", "mergefiles", "interpolate", "help", "about",
})
_REF = re.compile(r"^\s*(redirect|compile|buscoords)\s+(\"[^\"]+\"|\([^)]+\)|\S+)", re.IGNORECASE)
_CONTINUATION = re.compile(r"^\s*(~|more\b|m\b)", re.IGNORECASE)
_DISABLED = "! gridedge: not run at import: "


def _code(line: str) -> str:
    """The command part of a line (``!`` and ``//`` comments dropped)."""
    return line.split("!")[0].split("//")[0]


def _resolve_ci(path: Path) -> Path | None:
    """``path`` with its final component matched case-insensitively, or None."""
    if path.exists():
        return path
    if not path.parent.is_dir():
        return None
    matches = [p for p in path.parent.iterdir() if p.name.lower() == path.name.lower()]
    return matches[0] if matches else None


def disable_actions(text: str) -> tuple[str, int]:
    """``text`` with every :data:`ACTION_COMMANDS` line (and its continuation lines) commented
    out, and how many commands were disabled. Block comments (``/* ... */``) are left alone."""
    out, n, dropping, in_block = [], 0, False, False
    for line in text.splitlines():
        stripped = line.strip()
        if in_block or stripped.startswith("/*"):
            in_block = "*/" not in stripped
            out.append(line)
            continue
        code = _code(line).strip()
        if not code:
            out.append(line)
            continue
        if dropping and _CONTINUATION.match(code):
            out.append(_DISABLED + line)
            continue
        dropping = code.split()[0].lower() in ACTION_COMMANDS
        n += dropping
        out.append(_DISABLED + line if dropping else line)
    return "\n".join(out) + "\n", n


def _script_tree(master: Path, seen: dict | None = None) -> dict[Path, list[tuple[Path, Path]]]:
    """Every script reached from ``master`` through ``redirect``/``compile`` -> its references
    that only match case-insensitively, as (referenced path, existing file) pairs."""
    seen = {} if seen is None else seen
    if master in seen:
        return seen
    seen[master] = []
    for line in master.read_text(errors="replace").splitlines():
        m = _REF.match(_code(line))
        if not m:
            continue
        ref = master.parent / m.group(2).strip('"()').strip()
        found = _resolve_ci(ref)
        if found is None:
            continue  # OpenDSS reports it with its own message
        if found != ref:
            seen[master].append((ref, found))
        if m.group(1).lower() in ("redirect", "compile"):
            _script_tree(found, seen)
    return seen


def stage_master(master: Path, workdir: Path) -> Path:
    """The master file to compile: ``master`` itself when it needs no fix, else its copy under
    ``workdir/model`` (the model's folder copied, case-mismatched references added under the
    spelling the script uses, action commands commented out; module docstring)."""
    tree = _script_tree(master)
    fixes = [pair for refs in tree.values() for pair in refs]
    actions = {p for p in tree if disable_actions(p.read_text(errors="replace"))[1]}
    if not fixes and not actions:
        return master
    root = master.parent
    dst = workdir / "model"
    shutil.copytree(root, dst)
    for ref, found in fixes:
        try:
            rel_ref, rel_found = ref.relative_to(root), found.relative_to(root)
        except ValueError:
            continue
        if not (dst / rel_ref).exists():
            shutil.copy(dst / rel_found, dst / rel_ref)
    for script in actions:
        try:
            rel = script.relative_to(root)
        except ValueError:
            continue  # outside the model's folder: compiled from where it is
        text, _ = disable_actions(script.read_text(errors="replace"))
        for target in {dst / rel} | {dst / r.relative_to(root) for r, f in fixes
                                     if f == script and r.is_relative_to(root)}:
            target.write_text(text)
    return dst / master.name

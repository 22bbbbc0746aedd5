#!/usr/bin/env bash
# The package as a library user gets it (`make test` runs this; ~2-3 minutes on 2 cores):
#  1. build the sdist, then the wheel from that sdist (`python -m build`), into a temp folder;
#  2. `twine check --strict` both;
#  3. both hold the training configs, the bundled feeders and the profile data;
#  4. a fresh venv outside the repository gets the CPU torch, then the wheel (no extras), both
#     pinned by constraints.txt; from an empty temp folder (no repository, no ../shared beside it)
#     the packages import from that venv's site-packages with the right __version__, and a
#     two-iteration `gradmap-train --config ieee13-50` writes run/eval.json.
# The pip cache stays on, so a second run installs from it. Env: PY (the venv with build and
# twine, default .venv/bin/python), PYTHON (makes the fresh venv, default python3), LOCK,
# TORCH_SPEC (as in the Makefile).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PY=${PY:-$ROOT/.venv/bin/python}
PYTHON=${PYTHON:-python3}
LOCK=${LOCK:-constraints.txt}
case $LOCK in /*) ;; *) LOCK=$ROOT/$LOCK ;; esac
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}
VERSION=$(sed -n 's/^version = "\(.*\)"$/\1/p' pyproject.toml)
[ -n "$VERSION" ] || { echo "check_wheel: no version in pyproject.toml" >&2; exit 1; }

TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
case "$TMP/" in "$ROOT"/*) echo "check_wheel: temp folder $TMP is inside the repository" >&2; exit 1;; esac
T0=$SECONDS
T=$SECONDS
stage() {  # stage NAME: prints the seconds the previous stage took
    echo "check_wheel: $1 ($((SECONDS - T)) s; total $((SECONDS - T0)) s)"
    T=$SECONDS
}

# 1. sdist, then the wheel built from the unpacked sdist (so the sdist must be complete).
"$PY" -m build -q --outdir "$TMP/dist" "$ROOT" >"$TMP/build.log" 2>&1 \
    || { cat "$TMP/build.log" >&2; exit 1; }
WHEEL=$(ls "$TMP/dist"/gridedge-"$VERSION"-py3-none-any.whl)
SDIST=$(ls "$TMP/dist"/gridedge-"$VERSION".tar.gz)
stage "built $(basename "$SDIST") and $(basename "$WHEEL")"

# 2. Metadata and README rendering as PyPI would see them.
"$PY" -m twine check --strict "$WHEEL" "$SDIST"
stage "twine check --strict passed"

# 3. Package data: every file pyproject.toml's package-data globs match in the repository is in
#    both archives (and the globs match something).
"$PY" - "$ROOT" "$WHEEL" "$SDIST" "$VERSION" <<'EOF'
import sys, tarfile, tomllib, zipfile
from pathlib import Path

root, wheel, sdist, version = Path(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
data = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
want = {str(f.relative_to(root)) for pkg, globs in data.items() for g in globs
        for f in (root / pkg).glob(g)}
for needed in ("gradmap_agents/configs/ieee13-50.yaml", "gradmap_agents/configs/env/ieee13-50.yaml",
               "gridedge_env/network/bundled/ieee13.json.gz",
               "gridedge_env/network/bundled/LICENSE-EPRI-BSD3.txt"):
    assert needed in want, f"pyproject.toml package-data does not cover {needed}"
for kind in ("gradmap_agents/configs/", "gridedge_env/network/bundled/", "gridedge_env/data/profiles/"):
    assert any(w.startswith(kind) for w in want), f"no package data under {kind}"
in_wheel = set(zipfile.ZipFile(wheel).namelist())
prefix = f"gridedge-{version}/"
in_sdist = {n.removeprefix(prefix) for n in tarfile.open(sdist).getnames()}
for name, have in (("wheel", in_wheel), ("sdist", in_sdist)):
    missing = sorted(want - have)
    assert not missing, f"{name} lacks {len(missing)} data files: {missing[:5]}"
print(f"check_wheel: {len(want)} package data files in wheel and sdist")
EOF
stage "package data present"

# 4. A fresh venv outside the repository: CPU torch first (an unpinned one pulls CUDA), then the
#    wheel without extras, both under the lock.
"$PYTHON" -m venv "$TMP/venv"
VPY=$TMP/venv/bin/python
pip_install() {  # quiet; the log only on failure
    "$VPY" -m pip install -q -c "$LOCK" "$@" >"$TMP/pip.log" 2>&1 || { cat "$TMP/pip.log" >&2; exit 1; }
}
pip_install "$TORCH_SPEC"
pip_install "$WHEEL"
stage "installed $TORCH_SPEC and the wheel into a fresh venv"

mkdir "$TMP/work"
cd "$TMP/work"
[ ! -e ../shared ] || { echo "check_wheel: $TMP/shared exists" >&2; exit 1; }
env -u PYTHONPATH "$VPY" - "$ROOT" "$VERSION" <<'EOF'
import sys, sysconfig
from pathlib import Path

import baselines, gradmap_agents, gridedge_env
from gradmap_agents.config import config_names

root, version = Path(sys.argv[1]).resolve(), sys.argv[2]
site = Path(sysconfig.get_paths()["purelib"]).resolve()
for mod in (gridedge_env, gradmap_agents, baselines):
    f = Path(mod.__file__).resolve()
    assert f.is_relative_to(site) and not f.is_relative_to(root), f"{mod.__name__} from {f}"
assert gridedge_env.__version__ == version, (gridedge_env.__version__, version)
names = config_names()
assert {"ieee13-50", "ieee123-1000", "ieee123-100", "ieee123-300"} <= set(names), names
print(f"check_wheel: gridedge {version} imports from {site}; configs {', '.join(names)}")
EOF
stage "imports from the venv"

env -u PYTHONPATH "$TMP/venv/bin/gradmap-train" --config ieee13-50 --set iterations=2 --set eval_every=1 \
    --set checkpoint_every=1 --logger none --out run
test -s run/eval.json || { echo "check_wheel: gradmap-train wrote no run/eval.json" >&2; exit 1; }
stage "gradmap-train --config ieee13-50 (2 iterations) wrote run/eval.json"
echo "check_wheel: OK in $((SECONDS - T0)) s"

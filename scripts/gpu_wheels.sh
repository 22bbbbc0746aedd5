#!/usr/bin/env bash
# The wheels scripts/gpu_check.sh installs on a lent GPU machine (docs/gpu.md): its image has
# Python 3.12 and a CUDA build of torch but no network, and lacks these packages. Run here, where
# pip reaches the index; writes them into $WHEELS (default .gpu_wheels/, git-ignored) and prints
# the folder's size. The `run` call carries the folder (carry: [".gpu_wheels"]).
#
# What the image lacks (its package list: the device tool's KINDS.md) is our package itself and
# these of its runtime dependencies, at the versions of constraints.txt (the lock):
#   clarabel (+ cffi, pycparser), gymnasium (+ Farama-Notifications), pettingzoo,
#   opendssdirect.py (+ dss-python, dss_python_backend).
# torch, numpy, scipy, pyyaml, matplotlib, tqdm, safetensors, typing-extensions and cloudpickle
# are on the image and are not carried. After downloading, every wheel's own requirements are
# checked against that split: a requirement neither carried nor on the image fails the script.
# Env: PY (a Python with pip and setuptools; default .venv/bin/python), WHEELS,
# LOCK (default constraints.txt).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PY=${PY:-$ROOT/.venv/bin/python}
WHEELS=${WHEELS:-$ROOT/.gpu_wheels}
LOCK=${LOCK:-$ROOT/constraints.txt}
CARRIED="clarabel cffi pycparser gymnasium Farama-Notifications pettingzoo opendssdirect.py
    dss-python dss_python_backend"
ON_IMAGE="torch numpy scipy pyyaml matplotlib tqdm safetensors typing-extensions cloudpickle"

norm() { echo "$1" | tr 'A-Z_.' 'a-z--'; }  # PEP 503 name
pin() {  # pin NAME: NAME==VERSION from the lock, or fail naming the package
    local want line
    want=$(norm "$1")
    while IFS= read -r line; do
        case $line in *==*) ;; *) continue ;; esac
        if [ "$(norm "${line%%==*}")" = "$want" ]; then echo "$1==${line#*==}"; return; fi
    done <"$LOCK"
    echo "gpu_wheels: $1 is not pinned in $LOCK" >&2
    exit 1
}

rm -rf "$WHEELS"
mkdir -p "$WHEELS"
SPECS=()
for name in $CARRIED; do SPECS+=("$(pin "$name")"); done
# the image's interpreter: CPython 3.12 on x86-64 manylinux (the device tool's README)
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    --platform manylinux1_x86_64 -d "$WHEELS" "${SPECS[@]}"

# our package, built from what the device tool sends (tracked and untracked-not-ignored files),
# in a temp copy so that build/ and *.egg-info are not written into the working tree
SRC=$(mktemp -d)
trap 'rm -rf "$SRC"' EXIT
git ls-files -co --exclude-standard -z | tar --null -T - -cf - | tar -xf - -C "$SRC"
"$PY" -m pip wheel -q --no-deps --no-build-isolation --no-index -w "$WHEELS" "$SRC" \
    >"$SRC/build.log" 2>&1 \
    || { cat "$SRC/build.log" >&2; echo "gpu_wheels: building gridedge failed" >&2; exit 1; }

"$PY" - "$WHEELS" "$CARRIED gridedge" "$ON_IMAGE" <<'EOF'
"""Every requirement of every carried wheel (Python 3.12, no extras) is carried or on the image."""
import sys
import zipfile
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

folder, carried, on_image = Path(sys.argv[1]), sys.argv[2].split(), sys.argv[3].split()
known = {canonicalize_name(n) for n in carried + on_image}
env = {"python_version": "3.12", "python_full_version": "3.12.3", "extra": "",
       "implementation_name": "cpython", "platform_python_implementation": "CPython",
       "sys_platform": "linux", "platform_system": "Linux", "platform_machine": "x86_64",
       "os_name": "posix"}
missing = []
for whl in sorted(folder.glob("*.whl")):
    with zipfile.ZipFile(whl) as z:
        meta = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        lines = z.read(meta).decode().splitlines()
    for line in lines:
        if not line.startswith("Requires-Dist:"):
            continue
        req = Requirement(line.split(":", 1)[1].strip())
        if req.marker is not None and not req.marker.evaluate(env):
            continue
        if canonicalize_name(req.name) not in known:
            missing.append(f"{whl.name} needs {req}")
if missing:
    sys.exit("gpu_wheels: neither carried nor on the image: " + "; ".join(missing))
EOF
echo "gpu_wheels: $(ls "$WHEELS" | wc -l) wheels, $(du -sh "$WHEELS" | cut -f1) in $WHEELS"

#!/usr/bin/env bash
# The GPU check (docs/gpu.md): on a lent GPU machine, in one command of at most 8 minutes,
#   1. install the packages its image lacks from the wheels of scripts/gpu_wheels.sh
#      (carried as .gpu_wheels/; skipped where they already import);
#   2. check that torch sees the device (CUDA missing: exit 3 with a one-line reason);
#   3. run the device-parametrised tests (pytest -m gpu_check -k <device>);
#   4. benchmark the power flow (gridedge-bench powerflow), the environment (gridedge-bench env)
#      and GradMAP's environment gradient (gradmap-bench --envgrad) on the device;
# and write their JSON under $OUT (default ./gpu_check_out): summary.json (steps, seconds,
# device, test counts), bench_powerflow.json, bench_env.json, bench_envgrad.json (lists of the
# benchmarks' own JSON objects), pytest_junit.xml and gpu_check.log. One line per step
# ("gpu_check: STEP STATUS SECONDS s"), repeated at the end. Exit 0 when every step passed,
# 1 when one failed or timed out, 2 when packages are missing and no wheels are at hand, 3 when
# the device is not available.
#
# Usage: scripts/gpu_check.sh [--device cuda|cpu] [--size full|smoke]
#   --device cpu (or GPU_CHECK_DEVICE=cpu) runs the same plumbing on the CPU: its smoke test
#   (tests/test_gpu_check.py runs `--device cpu --size smoke`, under a minute).
# Env: OUT, GPU_CHECK_DEVICE, GPU_CHECK_SIZE, GPU_CHECK_PYTHON (default python3),
#   GPU_CHECK_WHEELS (default .gpu_wheels), GPU_CHECK_SITE (where the wheels are installed,
#   default /tmp/gridedge_gpu_site), GPU_CHECK_BUDGET_S (the whole check's seconds: a step gets
#   at most what is left, and is skipped under 10; default 450), GPU_CHECK_LARGE (the large
#   power-flow case; default ieee8500 where bundled, else synthetic-1500: 4,503 nodes, which the
#   CPU solves sparse and the GPU dense), GPU_CHECK_LARGE_ENVS (the large scenarios of the env
#   and envgrad steps; default the registered ids with 8500 in them, version 0; '' for none).
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
DEVICE=${GPU_CHECK_DEVICE:-cuda}
SIZE=${GPU_CHECK_SIZE:-full}
while [ $# -gt 0 ]; do
    case $1 in
        --device) DEVICE=${2:?--device needs cpu or cuda}; shift 2 ;;
        --size) SIZE=${2:?--size needs full or smoke}; shift 2 ;;
        --dry-run) DEVICE=cpu; SIZE=smoke; shift ;;
        *) echo "gpu_check: unknown argument '$1' (--device cpu|cuda, --size full|smoke)" >&2
           exit 2 ;;
    esac
done
case $DEVICE in
    cpu|cuda) ;;
    *) echo "gpu_check: --device must be cpu or cuda, got '$DEVICE'" >&2; exit 2 ;;
esac
case $SIZE in
    full|smoke) ;;
    *) echo "gpu_check: --size must be full or smoke, got '$SIZE'" >&2; exit 2 ;;
esac
PY=${GPU_CHECK_PYTHON:-python3}
WHEELS=${GPU_CHECK_WHEELS:-$ROOT/.gpu_wheels}
SITE=${GPU_CHECK_SITE:-/tmp/gridedge_gpu_site}
BUDGET_S=${GPU_CHECK_BUDGET_S:-450}
if [ -z "${OUT:-}" ]; then
    OUT=$ROOT/gpu_check_out
    mkdir -p "$OUT" && echo "*" >"$OUT/.gitignore"  # a local run's output stays out of git
fi
mkdir -p "$OUT"
LOG=$OUT/gpu_check.log
: >"$LOG"
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
: >"$WORK/steps.tsv"
export PYTHONUNBUFFERED=1 PY DEVICE WORK WHEELS SITE ROOT
T0=$EPOCHREALTIME

# The test files holding device tests (tests/test_gpu_check.py keeps this list complete).
DEVICE_TEST_FILES=(
    tests/gridedge_env/powerflow/test_solve.py
    tests/gridedge_env/powerflow/test_gradients.py
    tests/gridedge_env/powerflow/test_sparse.py
    tests/gridedge_env/test_core.py
    tests/gridedge_env/test_rollout.py
    tests/gridedge_env/devices/test_battery.py
    tests/gridedge_env/devices/test_generator.py
    tests/gridedge_env/devices/test_heat_pump.py
    tests/gradmap_agents/test_policy.py
    tests/gradmap_agents/test_gradmap.py
    tests/gradmap_agents/test_fused_mlp.py
)

say() { echo "gpu_check: $*" | tee -a "$LOG"; }
abort() {  # abort CODE MESSAGE: say it, write it into summary.json, exit CODE
    local code=$1 msg
    shift
    msg="$*"
    say "FAILED: $msg"
    msg=${msg//\\/\\\\}
    msg=${msg//\"/\\\"}
    printf '{"ok": false, "exit": %s, "failed": "%s", "device": %s}\n' "$code" "$msg" \
        "$(cat "$WORK/device.json" 2>/dev/null | grep . || echo null)" >"$OUT/summary.json"
    exit "$code"
}
since() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }'; }

step() {  # step NAME TIMEOUT_S CMD...: run CMD, a program or one of the functions here (output
    # to the log and stdout, killed after TIMEOUT_S), and record the result
    local name=$1 limit=$2 t rc status
    shift 2
    if declare -F "$1" >/dev/null; then set -- bash -c "$(declare -f); $1"; fi
    # never past the whole check's budget: the step gets what is left of it, at most its own
    limit=$(awk -v e="$(since "$T0")" -v b="$BUDGET_S" -v l="$limit" \
        'BEGIN { r = int(b - e); print (r < l ? r : l) }')
    if [ "$limit" -lt 10 ]; then
        printf '%s\tskipped\t0.0\t-\n' "$name" >>"$WORK/steps.tsv"
        say "$name skipped (the ${BUDGET_S} s budget is spent) 0.0 s"
        return 0
    fi
    t=$EPOCHREALTIME
    timeout --kill-after=10 "$limit" "$@" 2>&1 | tee -a "$LOG"
    rc=${PIPESTATUS[0]}
    case $rc in 0) status=ok ;; 124|137) status=timeout ;; *) status=failed ;; esac
    printf '%s\t%s\t%s\t%s\n' "$name" "$status" "$(since "$t")" "$rc" >>"$WORK/steps.tsv"
    say "$name $status $(since "$t") s$([ "$status" = ok ] || echo " (exit $rc)")"
}

bench_gridedge() {  # bench_gridedge KIND ARGS...: `gridedge-bench KIND ARGS --json`, JSON line kept
    local kind=$1
    shift
    "$PY" -c 'import sys; from gridedge_env.cli import bench_main; sys.exit(bench_main(sys.argv[1:]))' \
        "$kind" "$@" --device "$DEVICE" --json >"$WORK/last.out" 2>&1
    local rc=$?
    cat "$WORK/last.out"
    [ $rc -eq 0 ] && tail -n 1 "$WORK/last.out" >>"$WORK/$kind.jsonl"
    return $rc
}

bench_envgrad() {  # bench_envgrad ARGS...: `gradmap-bench --envgrad ARGS`, JSON line kept
    "$PY" -c 'import sys; from gradmap_agents.cli import bench_main; sys.exit(bench_main(sys.argv[1:]))' \
        --envgrad "$@" --device "$DEVICE" --out "$WORK/envgrad.jsonl"
}

# ---- 1. packages ---------------------------------------------------------------------------
export IMPORTS="import gridedge_env, gradmap_agents, opendssdirect, clarabel, pettingzoo"
install() {
    if "$PY" -c "$IMPORTS" 2>/dev/null; then
        echo "packages already importable with $PY: nothing to install"
        return 0
    fi
    if ! ls "$WHEELS"/*.whl >/dev/null 2>&1; then
        echo "gpu_check: packages missing and no wheels in $WHEELS: run scripts/gpu_wheels.sh" \
             "on a machine with pip access and carry the folder (carry: [\".gpu_wheels\"])"
        return 2
    fi
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target "$SITE" "$WHEELS"/*.whl || return 1
    touch "$WORK/installed"
    echo "installed $(ls "$WHEELS"/*.whl | wc -l) wheels from $WHEELS into $SITE"
}
step install 120 install
if [ -e "$WORK/installed" ]; then
    # the carried working tree first: its code is what is checked; the wheel gives the metadata
    export PYTHONPATH=$ROOT:$SITE${PYTHONPATH:+:$PYTHONPATH}
    "$PY" -c "$IMPORTS" >>"$LOG" 2>&1 || abort 2 "gridedge and its dependencies do not import" \
        "with $PY after installing the wheels (see $LOG)"
elif ! grep -q "^install	ok" "$WORK/steps.tsv"; then
    abort 2 "gridedge and its dependencies do not import with $PY (see $LOG)"
fi

# ---- 2. the device --------------------------------------------------------------------------
"$PY" - "$DEVICE" >"$WORK/device.json" 2>>"$LOG" <<'EOF'
"""One JSON object: torch's view of the device; exit 3 with a one-line reason if unusable."""
import json
import platform
import subprocess
import sys

import torch

want = sys.argv[1]
info = {"requested": want, "torch": torch.__version__, "torch_cuda": torch.version.cuda,
        "cuda_available": torch.cuda.is_available(), "python": platform.python_version()}
if want == "cuda":
    if not torch.cuda.is_available():
        print(json.dumps(info))
        sys.exit(3)
    p = torch.cuda.get_device_properties(0)
    x = torch.randn(1024, 1024, device="cuda", dtype=torch.float64)
    info.update(name=p.name, capability=f"{p.major}.{p.minor}",
                memory_gib=round(p.total_memory / 2**30, 1), multiprocessors=p.multi_processor_count,
                matmul_check=float((x @ x.T - (x.cpu() @ x.cpu().T).cuda()).abs().max()))
    try:
        info["nvidia_smi"] = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,driver_version,memory.total,clocks.sm,clocks.mem",
             "--format=csv,noheader"], capture_output=True, text=True, timeout=20).stdout.strip()
    except (OSError, subprocess.SubprocessError) as exc:
        info["nvidia_smi"] = f"not run: {exc}"
print(json.dumps(info))
EOF
rc=$?
if [ $rc -eq 3 ]; then
    abort 3 "CUDA is not available to torch ($(cat "$WORK/device.json")): this check needs a" \
        "GPU that torch can use; --device cpu runs it on the CPU"
elif [ $rc -ne 0 ]; then
    abort 3 "probing the device failed (exit $rc; see $LOG)"
fi
say "device $(cat "$WORK/device.json")"

# ---- 3. tests, 4. benchmarks ----------------------------------------------------------------
if [ "$SIZE" = full ]; then
    K=$DEVICE
    XDIST=()
    "$PY" -c "import xdist" 2>/dev/null && XDIST=(-n 4)  # 16 cores there: tests in 4 processes
    LARGE=${GPU_CHECK_LARGE:-$("$PY" -c 'from gridedge_env.network import BUNDLED
print("ieee8500" if "ieee8500" in BUNDLED else "synthetic-1500")')}
    LARGE_ENVS=${GPU_CHECK_LARGE_ENVS-$("$PY" -c 'from gridedge_env.registry import registry
print(" ".join(k for k in registry if "8500" in k and k.endswith("-v0")))')}
else
    K="$DEVICE and batch"  # five quick tests
    XDIST=()
fi
step tests 170 "$PY" -m pytest -q -p no:cacheprovider -m gpu_check -k "$K" "${XDIST[@]}" \
    --junitxml="$OUT/pytest_junit.xml" "${DEVICE_TEST_FILES[@]}"

# full: the paper's case (IEEE 123, 1,000 agents) at GPU batch sizes, a feeder above the CPU's
# dense limit, and the 8500-node scenarios where registered; smoke: the smallest of each
powerflow_full() {
    bench_gridedge powerflow --feeder ieee123 --batch 4096 --repeats 5 --opendss-scenarios 256 &&
    bench_gridedge powerflow --feeder ieee123 --batch 4096 --dtype fp32 --repeats 5 \
        --opendss-scenarios 256 &&
    bench_gridedge powerflow --feeder "$LARGE" --batch 256 --repeats 3 --opendss-scenarios 16
}
env_full() {
    bench_gridedge env --scenario ieee123-1000-v0 --num-envs 512 --opendss-envs 4 --repeats 2 || return
    for id in $LARGE_ENVS; do
        bench_gridedge env --scenario "$id" --num-envs 64 --opendss-envs 1 --repeats 1 || return
    done
}
envgrad_full() {
    bench_envgrad --scenario ieee123-1000-v0 --days 32 --repeats 2 &&
    bench_envgrad --scenario ieee123-1000-v0 --days 32 --repeats 2 --dtype fp32 || return
    for id in $LARGE_ENVS; do bench_envgrad --scenario "$id" --days 32 --repeats 1 || return; done
}
powerflow_smoke() {
    bench_gridedge powerflow --feeder ieee13 --batch 8 --repeats 1 --opendss-scenarios 2
}
env_smoke() {
    bench_gridedge env --scenario ieee13-50-v0 --num-envs 2 --steps 2 --opendss-envs 1 --repeats 1
}
envgrad_smoke() {
    bench_envgrad --scenario ieee13-50-v0 --days 1 --repeats 1
}
if [ "$SIZE" = full ]; then
    export LARGE LARGE_ENVS
    step powerflow 150 powerflow_full
    step env 110 env_full
    step envgrad 150 envgrad_full
else
    step powerflow 60 powerflow_smoke
    step env 60 env_smoke
    step envgrad 60 envgrad_smoke
fi

# ---- summary ---------------------------------------------------------------------------------
"$PY" - "$WORK" "$OUT" "$DEVICE" "$SIZE" "$(since "$T0")" <<'EOF' 2>&1 | tee -a "$LOG"
"""Write the benchmark lists and summary.json; print the step lines; exit 1 if a step failed."""
import json
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

work, out, device, size, total = Path(sys.argv[1]), Path(sys.argv[2]), *sys.argv[3:6]
steps = []
for line in (work / "steps.tsv").read_text().splitlines():
    name, status, seconds, rc = line.split("\t")
    steps.append({"step": name, "status": status, "seconds": float(seconds), "exit": rc})
for name, stem in (("powerflow", "powerflow"), ("env", "env"), ("envgrad", "envgrad")):
    src = work / f"{stem}.jsonl"
    rows = [json.loads(x) for x in src.read_text().splitlines() if x.strip()] if src.exists() else []
    (out / f"bench_{name}.json").write_text(json.dumps(rows, indent=1) + "\n")
tests = {}
junit = out / "pytest_junit.xml"
if junit.exists():
    root = ET.parse(junit).getroot()
    suite = root if root.tag == "testsuite" else root.find("testsuite")
    tests = {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}
ok = all(s["status"] == "ok" for s in steps)
summary = {"device": json.loads((work / "device.json").read_text()), "size": size,
           "total_seconds": float(total), "ok": ok, "steps": steps, "tests": tests}
(out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
print("gpu_check: summary (" + device + ", " + size + ")")
for s in steps:
    print(f"gpu_check: {s['step']:9} {s['status']:8} {s['seconds']:7.1f} s")
print(f"gpu_check: tests {tests}")
bad = ", ".join(s["step"] for s in steps if s["status"] != "ok")
print(f"gpu_check: total {float(total):.1f} s; " + ("all steps passed" if ok else f"FAILED: {bad}"))
sys.exit(0 if ok else 1)
EOF
exit "${PIPESTATUS[0]}"

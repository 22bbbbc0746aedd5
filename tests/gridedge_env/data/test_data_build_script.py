"""scripts/build_profiles.py on small fake wheels: output schema, clock shift, reproducibility."""

from __future__ import annotations

import importlib.util
import zipfile
from pathlib import Path

import numpy as np
import pytest

from gridedge_env.data import read_profile_csv

SCRIPT = Path(__file__).resolve().parents[3] / "scripts" / "build_profiles.py"


@pytest.fixture(scope="module")
def bp():
    spec = importlib.util.spec_from_file_location("build_profiles", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def fake_demandlib(path: Path, temps: np.ndarray) -> Path:
    head = ["TRY01   Nordseekueste (Klimaregion  1)", "Station: Testhafen   WMO-Nummer: 1",
            "***"]
    rows = []
    for k, t in enumerate(temps):
        d, h = divmod(k, 24)
        rows.append(f" 1 1 1 {d + 1} {h + 1} 0 0 0.0 {t:.1f} 1000.0 1.0 80 0 0 0 1 0 0 9")
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("demandlib/vdi/resources_weather/TRY2010_01_Jahr.dat",
                   "\n".join(head + rows) + "\n")
        z.writestr("demandlib-0.2.2.dist-info/licenses/LICENSE", "MIT License (test)")
    return path


def fake_simbench(path: Path) -> Path:
    n = 366 * 96
    t0 = np.datetime64("2016-01-01T00:00", "m")
    times = [str(t0 + i * np.timedelta64(15, "m")) for i in range(n)]
    labels = [f"{s[8:10]}.{s[5:7]}.{s[:4]} {s[11:16]}" for s in times]
    hh = ["H0-A", "H0-B", "H0-C", "H0-G", "H0-L"]
    rng = np.random.default_rng(0)
    load = rng.uniform(0.05, 1.0, (n, 5))
    pv = np.clip(np.sin(np.arange(n) / 96 * 2 * np.pi - np.pi / 2), 0, None)[:, None] * 0.6
    lp = ["time;" + ";".join(f"{h}_pload" for h in hh)]
    lp += [labels[i] + ";" + ";".join(f"{v:.6f}" for v in load[i]) for i in range(n)]
    rp = ["time;" + ";".join(f"PV{k}" for k in range(1, 9))]
    rp += [labels[i] + ";" + ";".join([f"{pv[i, 0]:.6f}"] * 8) for i in range(n)]
    ld = ["id;node;profile;pLoad;qLoad;sR;subnet;voltLvl"]
    ld += [f"l{k};n;{h};{0.002 + 0.001 * (k % 3)};0;0;s;7" for k, h in enumerate(hh * 3)]
    d = "simbench/networks/1-complete_data-mixed-all-0-sw/"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr(d + "LoadProfile.csv", "\n".join(lp) + "\n")
        z.writestr(d + "RESProfile.csv", "\n".join(rp) + "\n")
        z.writestr(d + "Load.csv", "\n".join(ld) + "\n")
        z.writestr("simbench-1.6.3.dist-info/licenses/LICENSE", "ODbL (test)")
        z.writestr("simbench-1.6.3.dist-info/licenses/AUTHORS", "authors (test)")
    return path, load


def test_build_try_shifts_to_utc_and_is_reproducible(bp, tmp_path):
    hours = np.arange(8760)
    temps = 10 + 5 * np.sin(2 * np.pi * hours / 24)  # value of the hour ending at h+1 CET
    whl = fake_demandlib(tmp_path / "demandlib-0.2.2-py3-none-any.whl", temps)
    out = tmp_path / "out"
    out.mkdir()
    prov = bp.build_try(whl, out, 1)
    s = read_profile_csv(out / prov["file"], require=("temp_out_c",))
    assert len(s) == 17520 and str(s.timestamps[0]) == "2010-01-01T00:00"
    # the hour [h, h+1) CET = [h-1, h) UTC: its value sits at the centre h - 0.5 UTC
    x = s.columns["temp_out_c"]
    t_utc = np.arange(17520) * 0.5 + 0.25
    expect = np.interp(t_utc, hours - 0.5, temps, period=8760)
    assert np.abs(x - expect).max() < 0.06  # 0.1 degC input rounding
    first = (out / prov["file"]).read_bytes()
    bp.build_try(whl, out, 1)
    assert (out / prov["file"]).read_bytes() == first
    assert "Deutscher Wetterdienst" in (out / "LICENSE-try2010-temperature.txt").read_text()


def test_build_simbench_pairs_and_scale(bp, tmp_path):
    whl, load = fake_simbench(tmp_path / "simbench-1.6.3-py3-none-any.whl")
    out = tmp_path / "out"
    out.mkdir()
    prov = bp.build_simbench(whl, out)
    assert prov["households_peak_kw"] == {h: 3.0 for h in bp.HOUSEHOLDS}
    s = read_profile_csv(out / prov["file"], require=("demand_kw", "pv_kw_per_kwp"))
    assert len(s) == 366 * 48
    want = load.reshape(-1, 2, 5).mean(axis=1) * 3.0
    np.testing.assert_allclose(s.stack("demand_kw"), want, rtol=6e-4)
    assert "Open Database License" in (out / "LICENSE-simbench-ODbL.txt").read_text()

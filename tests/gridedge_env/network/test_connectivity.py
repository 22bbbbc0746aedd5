"""Buses with no conductive path to the source (islands, buses nothing feeds) are refused when a
feeder is imported or built, instead of a singular matrix later; floating sections fed through
delta windings are connected and still load."""

import dataclasses

import numpy as np
import pytest

from gridedge_env.feeders import load_feeder
from gridedge_env.network import BUNDLED
from gridedge_env.network.grounding import disconnected_nodes
from gridedge_env.opendss.importer import FeederImportError

from ..conftest import CIRCUITS, FLOATING_SECONDARY
from ..conftest import TINY_SCRIPT as BASE

Z = "r1=0.1 x1=0.3 r0=0.3 x0=0.9 c1=3 c0=1 length=1 units=km"


def _write(tmp_path, extra: str):
    path = tmp_path / "cut.dss"
    path.write_text(BASE.format(extra=extra))
    return path


def test_island_of_two_buses_is_named(tmp_path):
    path = _write(tmp_path, f"New Line.l9 bus1=x bus2=y phases=3 {Z}\n"
                            "New Load.ld9 bus1=y phases=3 conn=wye kv=12.47 kw=30 kvar=10")
    with pytest.raises(FeederImportError) as err:
        load_feeder(path)
    msg = str(err.value)
    assert "cut.dss" in msg and "2 bus(es) (6 nodes)" in msg and "x, y" in msg
    assert "line.l9" in msg and "load.ld9" in msg and "no conductive path to the source" in msg


def test_bus_fed_by_nothing_is_named(tmp_path):
    path = _write(tmp_path, "New Load.ld9 bus1=d phases=3 conn=wye kv=12.47 kw=30 kvar=10")
    with pytest.raises(FeederImportError, match=r"1 bus\(es\) \(3 nodes\) .*: d; elements there: "
                                                 r"load\.ld9"):
        load_feeder(path)


def test_phase_no_line_reaches_is_named(tmp_path):
    # b -> c carries phase 1 only; a load on c.2 has no path to the source
    path = _write(tmp_path, f"New Line.l2 bus1=b.1 bus2=c.1 phases=1 {Z}\n"
                            "New Load.ld9 bus1=c.2 phases=1 kv=7.2 kw=30 kvar=10")
    with pytest.raises(FeederImportError, match=r"\(1 nodes\) .*: c; elements there: load\.ld9"):
        load_feeder(path)


def test_many_disconnected_buses_show_the_first_few_and_the_count(tmp_path):
    extra = "\n".join(f"New Line.i{k} bus1=x{k} bus2=x{k + 1} phases=3 {Z}" for k in range(7))
    with pytest.raises(FeederImportError, match=r"8 bus\(es\) \(24 nodes\).*: x0, x1, x2, x3, "
                                                r"x4 \(first 5 of 8\)"):
        load_feeder(_write(tmp_path, extra))


@pytest.mark.parametrize("name", [*BUNDLED, *CIRCUITS])
def test_connected_feeders_load_floating_sections_included(name, dss_circuit):
    f = load_feeder(name if name in BUNDLED else dss_circuit(name))
    assert disconnected_nodes(f).size == 0
    if name == "ieee123" or name in FLOATING_SECONDARY:
        assert f.floating_nodes().size > 0  # ungrounded, yet connected through the windings


def test_feeder_built_without_a_line_is_refused():
    f = load_feeder("ieee13")
    li = next(i for i, e in enumerate(f.elements) if e.name == "line.684652")
    elements = f.elements[:li] + f.elements[li + 1:]
    with pytest.raises(ValueError, match=r"feeder 'ieee13': 1 bus\(es\) .*: 652"):
        dataclasses.replace(f, elements=elements)
    assert np.array_equal(disconnected_nodes(f), [])

"""Small test circuits written as OpenDSS text: a 3-bus line and the IEEE 4-node test feeder
(Kersting's line and 6 MVA transformer data) in each transformer connection."""

import pytest

_LINE = ("rmatrix=[0.4576 | 0.1560 0.4666 | 0.1535 0.1580 0.4615] "
         "xmatrix=[1.0780 | 0.5017 1.0482 | 0.3849 0.4236 1.0651] "
         "cmatrix=[15.32 | -4.9 16.6 | -2.4 -3.0 15.1] units=mi")
_WYE_LOADS = """new load.la bus1=n4.1 phases=1 conn=wye kv=2.4 kw=1275 kvar=790 model=1
new load.lb bus1=n4.2 phases=1 conn=wye kv=2.4 kw=1800 kvar=871.8 model=1
new load.lc bus1=n4.3 phases=1 conn=wye kv=2.4 kw=2375 kvar=780.6 model=1
"""
_DELTA_LOADS = """new load.lab bus1=n4.1.2 phases=1 conn=delta kv=4.16 kw=1275 kvar=790 model=1
new load.lbc bus1=n4.2.3 phases=1 conn=delta kv=4.16 kw=1800 kvar=871.8 model=1
new load.lca bus1=n4.3.1 phases=1 conn=delta kv=4.16 kw=2375 kvar=780.6 model=1
"""
_XFMR = ("new transformer.t1 phases=3 windings=2 xhl=6 %r=0.5 wdg=1 bus=n2 conn={} kv=12.47 "
         "kva=6000 wdg=2 bus=n3 conn={} kv=4.16 kva=6000\n")
_OPEN = "".join(
    f"new transformer.t{p} phases=1 windings=2 xhl=6 %r=0.5 wdg=1 bus=n2.{k}.0 kv=7.2 kva=2000 "
    f"wdg=2 bus=n3.{k}.{k + 1} kv=4.16 kva=2000\n" for p, k in (("a", 1), ("b", 2)))


def _four_node(tag: str, transformer: str, loads: str) -> str:
    return (f"clear\nnew circuit.ieee4{tag} basekv=12.47 pu=1.0 phases=3 bus1=sourcebus "
            "mvasc3=2e5 mvasc1=2.1e5\n"
            f"new linecode.four nphases=3 {_LINE}\n"
            "new line.l12 bus1=sourcebus bus2=n2 linecode=four length=2000 units=ft\n"
            + transformer
            + "new line.l34 bus1=n3 bus2=n4 linecode=four length=2500 units=ft\n" + loads
            + "set voltagebases=[12.47 4.16]\ncalcvoltagebases\n")


CIRCUITS = {
    "three_bus": """clear
new circuit.threebus basekv=12.47 pu=1.0 phases=3 bus1=src mvasc3=200 mvasc1=210
new linecode.lc nphases=3 r1=0.3 x1=0.6 r0=0.6 x0=1.8 c1=3.4 c0=1.6 units=km
new line.l1 bus1=src bus2=b2 linecode=lc length=1.5 units=km
new line.l2 bus1=b2 bus2=b3 linecode=lc length=2 units=km
new load.l2 bus1=b2 phases=3 conn=wye kv=12.47 kw=600 kvar=200 model=1
new load.l3a bus1=b3.1 phases=1 conn=wye kv=7.2 kw=300 kvar=100 model=1
new load.l3bc bus1=b3.2.3 phases=1 conn=delta kv=12.47 kw=400 kvar=150 model=1
set voltagebases=[12.47]
calcvoltagebases
""",
    "ieee4_yy": _four_node("yy", _XFMR.format("wye", "wye"), _WYE_LOADS),
    "ieee4_dy": _four_node("dy", _XFMR.format("delta", "wye"), _WYE_LOADS),
    "ieee4_yd": _four_node("yd", _XFMR.format("wye", "delta"), _DELTA_LOADS),
    "ieee4_dd": _four_node("dd", _XFMR.format("delta", "delta"), _DELTA_LOADS),
    "ieee4_oyod": _four_node("oyod", _OPEN, _DELTA_LOADS.replace("1275", "600")
                             .replace("1800", "700").replace("2375", "500")),
}
#: Circuits whose secondary (n3, n4) is an ungrounded section.
FLOATING_SECONDARY = ("ieee4_yd", "ieee4_dd", "ieee4_oyod")


@pytest.fixture
def dss_circuit(tmp_path):
    """``dss_circuit(name, text=None) -> Path`` of the circuit's master file."""

    def write(name: str, text: str | None = None):
        path = tmp_path / f"{name}.dss"
        path.write_text(CIRCUITS[name] if text is None else text)
        return path

    return write


#: A two-bus circuit with room for ``{extra}`` lines: the base of the bad-input tests.
TINY_SCRIPT = """\
Clear
New Circuit.tiny basekv=12.47 pu=1.01 phases=3 bus1=src MVAsc3=200 MVAsc1=210
New Line.l1 bus1=src bus2=b phases=3 r1=0.1 x1=0.3 r0=0.3 x0=0.9 c1=3 c0=1 length=2 units=km
New Load.ld1 bus1=b phases=3 conn=wye kv=12.47 kw=300 kvar=100 model=1
{extra}
Set VoltageBases=[12.47]
CalcVoltageBases
"""

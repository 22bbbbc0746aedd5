"""Regenerate the bundled feeders from the reference OpenDSS models (maintainers only).

Usage: python scripts/build_bundled_feeders.py [--models DIR]

DIR defaults to ../shared/data/feeders beside the checkout. The output, the project's own JSON
format, goes to gridedge_env/network/bundled/.
"""

import argparse
from pathlib import Path

from gridedge_env.network.bundled import BUNDLED_SOURCES, bundled_path
from gridedge_env.opendss.importer import import_opendss

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", type=Path, default=ROOT.parent / "shared" / "data" / "feeders")
    args = ap.parse_args()
    for name, (folder, master, taps) in BUNDLED_SOURCES.items():
        feeder = import_opendss(args.models / folder / master, name=name, taps=taps)
        out = bundled_path(name)
        out.parent.mkdir(parents=True, exist_ok=True)
        feeder.save(out)
        print(f"{name}: {feeder.n_nodes} nodes, {len(feeder.elements)} elements, "
              f"{feeder.n_loads} loads -> {out.relative_to(ROOT)} ({out.stat().st_size} bytes)")


if __name__ == "__main__":
    main()

"""Regenerate the bundled feeders from the reference OpenDSS models (maintainers only).

Usage: python scripts/build_bundled_feeders.py [--models DIR]

DIR defaults to ../shared/data/feeders beside the checkout. The output, the project's own JSON
format, goes to gridedge_env/network/bundled/ with the models' licence notice
(DIR/ieee8500/LICENSE-EPRI-BSD3.txt, copied byte for byte). Every bundled feeder is rebuilt
(3.5 s on the 2-core machine; the two IEEE 8500 cases take most of it).
"""

import argparse
import shutil
from pathlib import Path

from gridedge_env.network.bundled import BUNDLED_SOURCES, LICENSE_FILE, bundled_folder, bundled_path
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
    notice = shutil.copyfile(args.models / "ieee8500" / LICENSE_FILE, bundled_folder() / LICENSE_FILE)
    print(f"licence notice -> {notice.relative_to(ROOT)}")


if __name__ == "__main__":
    main()

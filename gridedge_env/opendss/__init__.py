"""Everything that talks to OpenDSS, in one room: importing a master file into a
:class:`~gridedge_env.network.Feeder` (:mod:`.importer`), exporting one (:mod:`.exporter`),
OpenDSS as the environment's power flow (:mod:`.powerflow`) and the cross-check of our solver
against it (:mod:`.crosscheck`, ``gridedge-validate``). Nothing below this package imports
opendssdirect.py."""

from .crosscheck import compare
from .exporter import export_opendss
from .importer import FeederImportError, import_opendss, opendss_engine
from .powerflow import OpenDSSPowerFlow, opendss_stepped

__all__ = ["FeederImportError", "OpenDSSPowerFlow", "compare", "export_opendss", "import_opendss",
           "opendss_engine", "opendss_stepped"]

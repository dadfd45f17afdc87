"""A deterministic simulator of the TraderEvolution Back-Office REST API, contract section 8.

:mod:`.config` holds the knobs; :mod:`.data` (with :mod:`.market` and :mod:`.values`) the
generated timeline; :mod:`.reports` the saved reports; :mod:`.gates` tokens, the rate limit and
faults; :mod:`.routes` what each route answers; :mod:`.simulator` the HTTP server around them.
What both simulators share lives in :mod:`exporter.sandbox.base`.
"""

from .config import ALL_FAULTS, BASE_PATH, NEW_COLUMN_CELLS, TraderEvolutionSimConfig
from .reports import NEW_REPORT_COLUMN, REPORT_COLUMNS, REPORT_DEMO_IDS, new_column_value
from .simulator import TraderEvolutionSimulator, run_in_thread, te_simulator

__all__ = [
    "ALL_FAULTS",
    "BASE_PATH",
    "NEW_COLUMN_CELLS",
    "NEW_REPORT_COLUMN",
    "REPORT_COLUMNS",
    "REPORT_DEMO_IDS",
    "TraderEvolutionSimConfig",
    "TraderEvolutionSimulator",
    "new_column_value",
    "run_in_thread",
    "te_simulator",
]

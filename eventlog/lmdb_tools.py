"""LMDB store internals that tools above the log use: salvage reads and the runs-index keys.

`perdure store repair` reads a damaged store row by row (`read_row`,
`read_events`, `row_run_ids`, `event_run_ids`); the gateway pages the runs index
with its key layout (`SEP`, `load_run`, `sortable_float`) and reads the search database
(`term_hits`, `run_has_term`, `status_counts`: see `perdure.eventlog._lmdb_search`). They
are not part of
the `EventLog` port: only code that knows it holds an `LmdbEventLog` uses them.
"""

from perdure.eventlog._lmdb_keys import SEP, load_run, sortable_float
from perdure.eventlog._lmdb_salvage import event_run_ids, read_events, read_row, row_run_ids
from perdure.eventlog._lmdb_search import (
    HOUR,
    is_ready,
    matches,
    query_term,
    run_has_term,
    status_counts,
    term_hits,
)

__all__ = [
    "HOUR",
    "SEP",
    "event_run_ids",
    "is_ready",
    "matches",
    "query_term",
    "load_run",
    "read_events",
    "read_row",
    "row_run_ids",
    "run_has_term",
    "sortable_float",
    "status_counts",
    "term_hits",
]

"""eventray.platform.projections: the read path's runtime.

- :class:`Projection`, :class:`Table`, :func:`handles`, :class:`BatchWrites`: what a read
  model declares and what its handlers write into (pure; no I/O).
- :class:`ProjectionStore`: versions, offsets, dead letters and the atomic switch in PostgreSQL.
- :mod:`.runner` / :mod:`.actor`: the per-partition runner and its Ray actor shell (a replay's builders).
- :mod:`.host`: projection hosts, which read each partition once for every live projection.
- :mod:`.replay`: ``eventray replay NAME``; :mod:`.cli`: ``eventray projections``.
- :func:`read_current`: run a query against a projection's current version.
"""

from eventray.platform.projections.definition import Envelope, OnPoison, Projection, Record, Table, handles
from eventray.platform.projections.reads import ProjectionUnavailable, read_current, schema_name
from eventray.platform.projections.writes import BatchWrites

__all__ = [
    "BatchWrites",
    "Envelope",
    "OnPoison",
    "Projection",
    "ProjectionUnavailable",
    "Record",
    "Table",
    "handles",
    "read_current",
    "schema_name",
]

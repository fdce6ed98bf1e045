"""What every Farthing HTTP server shares at its edge (DESIGN.md §13).

- :mod:`farthing.web.hosts`: answer only the server's own host names
  (``HostGuard``), which also stops DNS rebinding;
- :mod:`farthing.web.body`: read a request body whole, never past a bound
  (``read_body``);
- :mod:`farthing.web.jsonbody`: parse a JSON body only after its size and
  nesting are bounded (``loads_bounded``).
"""

from __future__ import annotations

from farthing.web.body import BodyRefusal, read_body
from farthing.web.hosts import HostGuard, allowed_hosts, host_of
from farthing.web.jsonbody import (
    JSON_DEPTH_MAX_DEFAULT,
    JsonBodyError,
    json_depth,
    loads_bounded,
)

__all__ = [
    "JSON_DEPTH_MAX_DEFAULT",
    "BodyRefusal",
    "HostGuard",
    "JsonBodyError",
    "allowed_hosts",
    "host_of",
    "json_depth",
    "loads_bounded",
    "read_body",
]

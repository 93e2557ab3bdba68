"""Marker stages of the module-level API (``pl.marker.insert_periodic`` …)."""

from ._compat import marker_insert_periodic as insert_periodic
from ._compat import marker_on as on
from ._compat import marker_until as until
from ._marker import Marker

__all__ = ["Marker", "insert_periodic", "on", "until"]

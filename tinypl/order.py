"""Order restoration in the module-level API (``pl.order.save`` / ``pl.order.load``)."""

from ._compat import order_load as load
from ._compat import order_save as save

__all__ = ["load", "save"]

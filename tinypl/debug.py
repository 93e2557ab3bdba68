"""Debugging stages of the module-level API."""

from ._compat import debug_print_on_item as print_on_item

__all__ = ["print_on_item"]

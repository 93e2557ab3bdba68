"""Shared-memory transport for numpy-heavy objects between processes.

Two independent pieces live here, on top of shared plumbing:

* :class:`SharedMemoryRingBuffer` (``_ring``, ``_ring_blocks``) -- the user-facing,
  picklable ring buffer of tinypl 0.1.0: any process can ``write`` an object and get
  a small :class:`RingBufferRef` back; any process can ``read`` it exactly once.
* :class:`ShmPool` (``_pool``) with :func:`loads` / :func:`discard` /
  :func:`trim_cache` (``_pool_reader``) -- the single-writer buffer pool that carries
  process-stage results: large numpy buffers are copied once into shared memory and
  come back as zero-copy views; ``_lend`` lets a worker allocate an array in its
  pool (:meth:`ShmPool.empty`), which then travels without any copy; ``_regions`` is
  the writer's view of a segment, shared by both.
* ``_segments`` (names, creation, liveness of processes), ``_pickling`` (protocol 5
  with out-of-band buffers) and ``_layout`` (the byte layouts) are shared by both;
  ``_sweep`` (:func:`cleanup_orphans`, :func:`cleanup`) removes what killed
  processes left behind.

Importing this package does not import numpy.

Examples:
    >>> with SharedMemoryRingBuffer(1 << 16) as rb:
    ...     rb.read(rb.write("hello"))
    'hello'
"""

from __future__ import annotations

from ._pool import ShmPool
from ._pool_reader import discard, loads, trim_cache
from ._ring import RingBufferRef, SharedMemoryRingBuffer
from ._ring_blocks import BufferClosedError
from ._sweep import cleanup, cleanup_orphans

__all__ = [
    "BufferClosedError",
    "RingBufferRef",
    "SharedMemoryRingBuffer",
    "ShmPool",
    "cleanup",
    "cleanup_orphans",
    "discard",
    "loads",
    "trim_cache",
]

"""A short tour of tinypl: ``python examples/quickstart.py`` (runs in well under a second).

Each pipeline is shown in the fluent form (``pl.Pipe(...).map(...)``) and then in the
module-level form of tinypl 0.1.0 (``pl.map(stage, ...)``). The output is deterministic:
the thread stages are followed by ``.order()`` / ``pl.order.load``.
"""

import time

import tinypl as pl


def load(x):
    """Pretend to read item ``x`` from disk; later items are faster, so threads reorder."""
    time.sleep(0.001 * (10 - x % 10))
    return x * x


print("== fluent form")

# 1. A Pipe is an immutable, lazy description; iterating it runs it (afresh each time).
pipe = pl.Pipe(range(10)).map(lambda x: 3 * x + 1).filter(lambda x: x % 2 == 0).partition(2)
print("pipe:    ", pipe)
print("batches: ", list(pipe))

# 2. Markers travel between the items: on() reacts to them, until() ends a stream at one.
end_of_line = pl.Marker("end of line")
events = []
lines = (
    pl.Pipe(["ab", "cde"])
    .insert_marker(end_of_line)  # after every item
    .flatten()  # "ab" -> "a", "b"
    .on(end_of_line, lambda: events.append("eol"))
)
stage = iter(lines)  # one live run, consumed line by line
print("line 1:  ", list(pl.Pipe(stage).until(end_of_line)))
print("line 2:  ", list(pl.Pipe(stage).until(end_of_line)))
print("events:  ", events)

# 3. Four threads run load() concurrently; order() restores the input order.
squares = pl.Pipe(range(20)).map(load).thread(4).order()
print("threaded:", list(squares))

print("== module-level form")

stage = pl.map(range(10), lambda x: 3 * x + 1)
stage = pl.filter(stage, lambda x: x % 2 == 0)
print("batches: ", list(pl.partition(stage, 2)))

events = []
stage, marker = pl.marker.insert_periodic(["ab", "cde"], n=1)
stage = pl.flatten(stage)
stage = pl.marker.on(stage, lambda: events.append("eol"), marker=marker)
print("line 1:  ", list(pl.marker.until(stage, marker)))
print("line 2:  ", list(pl.marker.until(stage, marker)))
print("events:  ", events)

stage = order = pl.order.save(range(20), maxsize=8)
stage = pl.thread.map(stage, load, workers=4)
print("threaded:", list(pl.order.load(stage, order)))

"""The feeder's bookkeeping of chunks in flight, when a worker is replaced mid-send."""

from __future__ import annotations

import pickle
import threading
from types import SimpleNamespace

import pytest

from tinypl._runtime._feeder import Feeder


class _Gate:
    """A lock that tells when another thread starts waiting for it, and that the thread
    holding it may take again (so that ``resend`` runs while a send waits)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._owner: int | None = None
        self.waited = threading.Event()

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        me = threading.get_ident()
        if self._owner == me:
            return True
        self.waited.set()
        if not self._lock.acquire(blocking, timeout):
            return False
        self._owner = me
        return True

    def release(self) -> None:
        if self._owner == threading.get_ident() and self._lock.locked():
            self._owner = None
            self._lock.release()

    def __enter__(self) -> _Gate:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


@pytest.mark.timeout(30)
def test_a_chunk_sent_while_its_worker_is_replaced_stays_in_flight() -> None:
    sent: list[tuple[int, bytes]] = []
    feeder = Feeder(
        SimpleNamespace(_tagger=None),  # type: ignore[arg-type]
        stage="process",
        workers=1,
        maxsize=4,
        chunksize=None,
        send=lambda index, data: sent.append((index, data)),
        post=lambda message: None,
        keep=True,
    )
    gate = _Gate()
    feeder._send_lock = gate  # type: ignore[assignment]
    gate.acquire()  # the reader holds the pipes
    sender = threading.Thread(target=feeder._send, args=([1, 2, 3],))
    sender.start()
    assert gate.waited.wait(10)  # the send is under way, before it may touch the pipes
    # Worker 0 died holding nothing: it is replaced while the send waits.
    gate.waited.clear()
    feeder.resend(0, lambda: [], lambda: None)
    gate.release()
    sender.join(10)
    assert not sender.is_alive()
    assert len(sent) == 1
    # The chunk went to the new worker: it is held and counted, so the reader waits
    # for its answer instead of finishing the stream without it.
    assert [chunk for _, chunk in feeder.holding(0)] == [[1, 2, 3]]
    assert feeder.in_flight() == 1
    feeder.received(0)
    assert feeder.in_flight() == 0
    assert feeder.holding(0) == []


@pytest.mark.timeout(30)
def test_a_reader_flush_with_no_credit_keeps_the_chunk_instead_of_waiting() -> None:
    # The reader saw nothing in flight, then the feeder took the last credit: a reader
    # waiting for a credit would wait for itself, since only it hands credits back (a
    # hang seen on the free-threaded build, issue 17).
    sent: list[tuple[int, bytes]] = []
    feeder = Feeder(
        SimpleNamespace(_tagger=None),  # type: ignore[arg-type]
        stage="process",
        workers=1,
        maxsize=1,
        chunksize=None,
        send=lambda index, data: sent.append((index, data)),
        post=lambda message: None,
    )
    feeder._credits.get()  # the feeder holds the only credit
    feeder._chunk = [1, 2]
    feeder.flush(wait=False)
    assert sent == []
    assert feeder._chunk == [1, 2]
    assert feeder.in_flight() == 0
    feeder._chunk.append(3)  # gathered by the feeder meanwhile
    feeder._credits.put(None)  # its chunk was answered
    feeder.flush(wait=False)
    assert len(sent) == 1
    assert feeder._chunk == []
    assert feeder.in_flight() == 1
    assert pickle.loads(sent[0][1])[1] == [1, 2, 3]

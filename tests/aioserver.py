"""A real TCP server on 127.0.0.1 for the asyncio tests (issue 16).

It runs ``asyncio.start_server`` on a loop of its own in a thread (not named ``tinypl-``),
answers each request line ``n`` with ``n * 10`` after ``delay`` seconds, and counts the
requests being served at once (``peak``: what the client kept in flight), the
connections open, accepted, and closed by their client.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading

__all__ = ["Server", "fetch"]


class Server:
    def __init__(self, delay: float = 0.01) -> None:
        self.delay = delay
        self.host = "127.0.0.1"
        self.port = 0
        self.open = 0
        self.serving = 0  # requests read and not yet answered
        self.peak = 0
        self.accepted = 0
        self.closed = 0
        self.changed = threading.Condition()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="test-server", daemon=True)
        self._ready = threading.Event()
        self._server: asyncio.Server | None = None

    def __enter__(self) -> Server:
        self._thread.start()
        assert self._ready.wait(10), "the test server did not start"
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(
            asyncio.start_server(self._handle, self.host, 0)
        )
        self._server = server
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        try:
            self._loop.run_forever()
        finally:
            server.close()
            self._loop.run_until_complete(server.wait_closed())
            # A connection the client dropped before it was accepted may still have its
            # handler pending: end it here, on an open loop, or it is destroyed later and
            # its ``writer.close()`` fails on the closed loop (an unraisable warning).
            pending = asyncio.all_tasks(self._loop)
            for task in pending:
                task.cancel()
            self._loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            self._loop.close()

    def _count(self, opened: int) -> None:
        with self.changed:
            self.open += opened
            if opened > 0:
                self.accepted += 1
            else:
                self.closed += 1
            self.changed.notify_all()

    def _serve(self, started: int) -> None:
        with self.changed:
            self.serving += started
            self.peak = max(self.peak, self.serving)
            self.changed.notify_all()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._count(+1)
        try:
            line = await reader.readline()
            # Until the client closes its end; one that leaves early is seen at once.
            gone = asyncio.ensure_future(reader.read())
            if line:
                self._serve(+1)
                try:
                    await asyncio.wait({gone}, timeout=self.delay)
                finally:
                    self._serve(-1)  # before the answer, which lets the client go on
                if not gone.done():
                    writer.write(f"{int(line) * 10}\n".encode())
                    await writer.drain()
            await gone
        except (ConnectionError, ValueError):
            pass
        finally:
            writer.close()
            self._count(-1)

    def wait_all_closed(self, timeout: float = 5.0) -> bool:
        """Whether every connection accepted so far is closed within ``timeout``."""
        with self.changed:
            return self.changed.wait_for(lambda: self.open == 0, timeout)


async def fetch(server: Server, n: int) -> int:
    """One request to ``server``; the connection is closed however the call ends."""
    reader, writer = await asyncio.open_connection(server.host, server.port)
    try:
        writer.write(f"{n}\n".encode())
        await writer.drain()
        return int(await reader.readline())
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()

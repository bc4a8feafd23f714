"""A TCP proxy on loopback that injects network faults for real (Toxiproxy's idea).

It forwards every connection to a target and can, on demand:

- **drop replies**: with :meth:`TcpProxy.drop_reply_every` it counts the
  client's Redis commands (RESP arrays) and lets the server run every Nth
  one, then discards the server's answer and cuts the connection, so the
  client never learns the outcome of a command that did run;
- **go down**: :meth:`TcpProxy.down` closes the listening socket and resets
  every open connection, so the service looks stopped (connections refused)
  until :meth:`TcpProxy.up`;
- **meet one request** (HTTP): :meth:`TcpProxy.hold_request` keeps the first
  request whose bytes contain a marker from the server for a while (its
  sender can be killed meanwhile), :meth:`TcpProxy.down_on_request` goes
  down the moment such a request arrives (it is never forwarded).

HTTP traffic is watched too: every request the server answered is kept in
:attr:`TcpProxy.exchanges` with its final status (the server's own word, so
a test can count the writes that really landed). A client that goes away
only half-closes its link: a request already forwarded still gets its answer
read (and recorded) before the link is closed.

Counters (``commands``, ``dropped``, ``cuts``) tell the test what happened.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time
from collections.abc import Iterator

import attrs
import pytest

_LINGER_RESET = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() sends RST
_METHODS = (b"GET ", b"PUT ", b"POST ", b"HEAD ", b"DELETE ", b"PATCH ", b"OPTIONS ")


@attrs.frozen
class Exchange:
    """One HTTP request the server answered: its request line and the final status."""

    request_line: str
    status: int

    @property
    def method(self) -> str:
        """``PUT``, ``GET``, …"""
        return self.request_line.split(" ", 1)[0]

    @property
    def path(self) -> str:
        """The request target without its query."""
        return self.request_line.split(" ")[1].split("?", 1)[0]


def request_line(chunk: bytes) -> str | None:
    """The request line when *chunk* starts an HTTP request, else ``None``."""
    if not chunk.startswith(_METHODS):
        return None
    end = chunk.find(b"\r\n")
    return chunk[: end if end >= 0 else 200].decode("latin-1")


def final_status(chunk: bytes) -> int | None:
    """The status of the final response starting *chunk* (``100 Continue`` skipped), or ``None``."""
    pos = 0
    while chunk.startswith(b"HTTP/1.", pos):
        fields = chunk[pos : chunk.find(b"\r\n", pos)].split()
        if len(fields) < 2 or not fields[1].isdigit():
            return None
        status = int(fields[1])
        if status >= 200:
            return status
        head_end = chunk.find(b"\r\n\r\n", pos)
        if head_end < 0:
            return None
        pos = head_end + 4
    return None


def resp_commands(buffer: bytes) -> tuple[list[int], int]:
    """
    Find the ends of the complete RESP commands at the start of *buffer*.

    Returns:
        The offsets just past each complete command, and the offset where the
        first incomplete command starts.
    """
    ends: list[int] = []
    pos = 0
    while pos < len(buffer):
        end = _command_end(buffer, pos)
        if end is None:
            break
        ends.append(end)
        pos = end
    return ends, pos


def _command_end(buffer: bytes, pos: int) -> int | None:
    if buffer[pos : pos + 1] != b"*":  # an inline command: one line
        line = buffer.find(b"\r\n", pos)
        return None if line < 0 else line + 2
    line = buffer.find(b"\r\n", pos)
    if line < 0:
        return None
    count = int(buffer[pos + 1 : line])
    pos = line + 2
    for _ in range(max(count, 0)):
        line = buffer.find(b"\r\n", pos)
        if line < 0 or buffer[pos : pos + 1] != b"$":
            return None
        size = int(buffer[pos + 1 : line])
        pos = line + 2 + size + 2
        if pos > len(buffer):
            return None
    return pos


class _Link:
    """One proxied connection: client socket, server socket, fault state."""

    def __init__(self, client: socket.socket, server: socket.socket) -> None:
        self.client = client
        self.server = server
        self.dropping = threading.Event()
        self.answered = threading.Event()
        self.request: str | None = None  # HTTP: the request waiting for its answer
        self.closed = False
        self.lock = threading.Lock()

    def close(self, *, reset: bool = False) -> None:
        with self.lock:
            if self.closed:
                return
            self.closed = True
        for sock in (self.client, self.server):
            with contextlib.suppress(OSError):
                if reset:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
                sock.close()


class _Trigger:
    """What to do to the first request containing *needle*."""

    def __init__(self, needle: bytes, action: str, seconds: float = 0.0) -> None:
        self.needle = needle
        self.action = action
        self.seconds = seconds
        self.arrived = threading.Event()


class TcpProxy:
    """
    Forward ``127.0.0.1:<port>`` to *target_port* (see the module docstring).

    Args:
        target_port: the real server's port on 127.0.0.1.
        redis: the traffic is Redis (RESP): commands are counted and replies
            can be dropped; otherwise bytes are forwarded as they come.
    """

    def __init__(self, target_port: int, *, redis: bool = False) -> None:
        self.target_port = target_port
        self.redis = redis
        self.commands = 0
        self.dropped = 0
        self.cuts = 0
        self.exchanges: list[Exchange] = []
        self._every = 0
        self._targets: set[int] = set()
        self._triggers: list[_Trigger] = []
        self._lock = threading.Lock()
        self._links: set[_Link] = set()
        self._listener: socket.socket | None = None
        self._stopped = threading.Event()
        self.port = self._listen(0)

    @property
    def url_host(self) -> str:
        """``127.0.0.1:<port>``."""
        return f"127.0.0.1:{self.port}"

    def drop_reply_every(self, n: int) -> None:
        """From now on, run every *n*-th command but lose its reply (0: never)."""
        with self._lock:
            self._every = n

    def drop_next_reply(self, *, skip: int = 0) -> None:
        """Run the next command (after *skip* others) but lose its reply, once."""
        with self._lock:
            self._targets.add(self.commands + skip + 1)

    def hold_request(self, needle: bytes, seconds: float) -> threading.Event:
        """
        Keep the next request containing *needle* from the server for *seconds*, then forward it.

        Returns:
            An event set when that request arrives.
        """
        trigger = _Trigger(needle, "hold", seconds)
        with self._lock:
            self._triggers.append(trigger)
        return trigger.arrived

    def down_on_request(self, needle: bytes) -> threading.Event:
        """
        Go down (as :meth:`down`) when a request containing *needle* arrives; it is not forwarded.

        Returns:
            An event set when that request arrived and the proxy went down.
        """
        trigger = _Trigger(needle, "down")
        with self._lock:
            self._triggers.append(trigger)
        return trigger.arrived

    def _triggered(self, data: bytes) -> _Trigger | None:
        with self._lock:
            for trigger in self._triggers:
                if trigger.needle in data:
                    self._triggers.remove(trigger)
                    return trigger
        return None

    def down(self) -> None:
        """Refuse new connections and reset the open ones."""
        with self._lock:
            listener, self._listener = self._listener, None
            links = list(self._links)
        if listener is not None:
            # shutdown wakes the thread blocked in accept(); close alone would not,
            # and the kernel would go on accepting on the still-referenced socket
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        for link in links:
            link.close(reset=True)
        self.cuts += len(links)

    def up(self) -> None:
        """Accept connections again on the same port."""
        if self._listener is None:
            self._listen(self.port)

    def stop(self) -> None:
        """Close everything for good."""
        self._stopped.set()
        self.down()

    # --- internals -----------------------------------------------------------

    def _listen(self, port: int) -> int:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        deadline = time.monotonic() + 10
        while True:
            try:
                listener.bind(("127.0.0.1", port))
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        listener.listen(64)
        with self._lock:
            self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()
        bound: int = listener.getsockname()[1]
        return bound

    def _accept(self, listener: socket.socket) -> None:
        while not self._stopped.is_set():
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(("127.0.0.1", self.target_port), timeout=5)
                server.settimeout(None)
            except OSError:
                client.close()
                continue
            link = _Link(client, server)
            with self._lock:
                self._links.add(link)
            threading.Thread(target=self._upstream, args=(link,), daemon=True).start()
            threading.Thread(target=self._downstream, args=(link,), daemon=True).start()

    def _upstream(self, link: _Link) -> None:
        """Client → server, counting commands; the Nth is run and its reply lost."""
        pending = b""
        half_closed = False
        try:
            while True:
                data = link.client.recv(65536)
                if not data:
                    if not self.redis:  # let the server answer what it already has
                        link.server.shutdown(socket.SHUT_WR)
                        half_closed = True
                    break
                if not self.redis:
                    line = request_line(data)
                    if line is not None:
                        link.request = line
                    trigger = self._triggered(data) if self._triggers else None
                    if trigger is not None and trigger.action == "down":
                        link.request = None  # never forwarded
                        self.down()
                        trigger.arrived.set()
                        return
                    if trigger is not None:
                        trigger.arrived.set()
                        time.sleep(trigger.seconds)
                    link.server.sendall(data)
                    continue
                pending += data
                ends, _ = resp_commands(pending)
                sent = 0
                for end in ends:
                    with self._lock:
                        self.commands += 1
                        lose = self._every > 0 and self.commands % self._every == 0
                        if self.commands in self._targets:
                            lose = True
                            self._targets.discard(self.commands)
                    if lose:
                        link.dropping.set()
                        link.server.sendall(pending[sent:end])
                        link.answered.wait(2.0)  # the server ran it and answered
                        with self._lock:
                            self.dropped += 1
                        return
                    link.server.sendall(pending[sent:end])
                    sent = end
                pending = pending[sent:]
        except OSError:  # the client reset, or the link was cut
            if not self.redis and not link.closed:
                with contextlib.suppress(OSError):
                    link.server.shutdown(socket.SHUT_WR)
                    half_closed = True
        finally:
            if not half_closed:
                self._forget(link)

    def _downstream(self, link: _Link) -> None:
        """Server → client, unless the current reply is to be lost; HTTP answers recorded."""
        try:
            while True:
                data = link.server.recv(65536)
                if not data:
                    break
                if link.dropping.is_set():
                    link.answered.set()
                    continue
                if link.request is not None:
                    status = final_status(data)
                    if status is not None:
                        with self._lock:
                            self.exchanges.append(Exchange(link.request, status))
                        link.request = None
                link.client.sendall(data)
        except OSError:
            pass
        finally:
            self._forget(link)

    def _forget(self, link: _Link) -> None:
        link.close()
        with self._lock:
            self._links.discard(link)


@pytest.fixture
def tcp_proxy_factory() -> Iterator[type[TcpProxy]]:
    """Build proxies with ``tcp_proxy_factory(port)``; all are stopped afterwards."""
    made: list[TcpProxy] = []

    class Tracked(TcpProxy):
        def __init__(self, target_port: int) -> None:
            super().__init__(target_port)
            made.append(self)

    yield Tracked
    for proxy in made:
        proxy.stop()

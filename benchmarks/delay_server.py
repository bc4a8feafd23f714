"""A loopback JSON API answering after a delay, on several 127.0.0.x hosts.

Usage: ``python benchmarks/delay_server.py HOSTS DELAY_SECONDS`` prints
``PORT`` on stdout once it listens on 127.0.0.2 … 127.0.0.(HOSTS+1), the same
port on each. Every ``GET /api/<n>`` answers ``{"data": {"items": [...]}}``
(two items) after the delay; ``/robots.txt`` answers 404 at once;
``GET /__stats`` answers the requests counted and the most requests seen at
once per host (``/__reset`` clears them). Keep-alive is supported.
"""

from __future__ import annotations

import asyncio
import collections
import json
import socket
import sys

HOST_BASE = 2


class Counter:
    """Requests in flight and the most at once, per host."""

    def __init__(self) -> None:
        self.now: collections.Counter[str] = collections.Counter()
        self.most: collections.Counter[str] = collections.Counter()
        self.total = 0

    def enter(self, host: str) -> None:
        self.now[host] += 1
        self.total += 1
        self.most[host] = max(self.most[host], self.now[host])

    def leave(self, host: str) -> None:
        self.now[host] -= 1


def _items(n: str, host: str) -> bytes:
    items = [
        {"titulo": f"Aviso {n}-{k} de {host}", "link": f"/aviso/{n}/{k}", "data": "2026-11-24"}
        for k in range(2)
    ]
    return json.dumps({"data": {"items": items}}).encode()


async def _serve(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float, counter: Counter
) -> None:
    host = writer.get_extra_info("sockname")[0]
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            path = head.split(b" ", 2)[1].decode("latin-1")
            status, body = 200, b""
            if path == "/robots.txt":
                status = 404
            elif path == "/__stats":
                body = json.dumps({"total": counter.total, "most": dict(counter.most)}).encode()
            elif path == "/__reset":
                counter.most.clear()
                counter.total = 0
            elif path.startswith("/api/"):
                counter.enter(host)
                try:
                    await asyncio.sleep(delay)
                finally:
                    counter.leave(host)
                body = _items(path.rsplit("/", 1)[-1], host)
            else:
                status = 404
            reason = b"OK" if status == 200 else b"Not Found"
            writer.write(
                b"HTTP/1.1 %d %s\r\nContent-Type: application/json\r\n"
                b"Content-Length: %d\r\n\r\n%s" % (status, reason, len(body), body)
            )
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError, IndexError):
        pass
    finally:
        writer.close()


async def main(hosts: int, delay: float) -> None:
    counter = Counter()
    probe = socket.socket()
    probe.bind((f"127.0.0.{HOST_BASE}", 0))
    port = probe.getsockname()[1]
    probe.close()
    addresses = [f"127.0.0.{HOST_BASE + i}" for i in range(hosts)]
    server = await asyncio.start_server(
        lambda r, w: _serve(r, w, delay, counter), host=addresses, port=port, backlog=1024
    )
    print(port, flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), float(sys.argv[2])))

"""A TCP proxy that models the network between an SMTP client and server: every chunk is
delivered RTT/2 after it arrived, in each direction, in the order it arrived.

Unlike the sink's ``--latency-ms`` (which delays each *reply*, charging a client that sends
several commands at once the full delay per command), this costs what a real round trip
costs: a client that waits for each reply pays RTT per command; one that pipelines pays it
once per group. Runs in its own process, like the sink, so that it takes no CPU from the
side being measured:

    python -m bench.latency_proxy --listen 2600 --target 2525 --rtt-ms 20
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import time

CHUNK = 65536


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float) -> None:
    """Copy ``reader`` to ``writer``, each chunk ``delay`` seconds after it arrived."""
    queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

    async def deliver() -> None:
        while True:
            due, data = await queue.get()
            if not data:
                break
            wait = due - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            writer.write(data)
            await writer.drain()
        with contextlib.suppress(OSError):
            writer.close()

    delivering = asyncio.create_task(deliver())
    try:
        while data := await reader.read(CHUNK):
            queue.put_nowait((time.monotonic() + delay, data))
    except OSError:
        pass
    queue.put_nowait((time.monotonic() + delay, b""))
    with contextlib.suppress(OSError):
        await delivering


async def serve(listen: int, target: int, rtt_ms: float) -> None:
    half = rtt_ms / 2000

    async def connection(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        server_r, server_w = await asyncio.open_connection("127.0.0.1", target)
        await asyncio.gather(_pump(client_r, server_w, half), _pump(server_r, client_w, half))

    server = await asyncio.start_server(connection, "127.0.0.1", listen)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", type=int, required=True)
    parser.add_argument("--target", type=int, required=True)
    parser.add_argument("--rtt-ms", type=float, required=True)
    args = parser.parse_args()
    asyncio.run(serve(args.listen, args.target, args.rtt_ms))


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""A stand-in OpenTelemetry collector for bench/suite.py's `otlp` phase: takes
OTLP/HTTP exports on 127.0.0.1:PORT, answers 200, and counts them (requests and
bytes), printing the counts to the file STATS every second. It reads no span:
the phase measures what exporting costs the host, not a collector.

usage: otlp_sink.py PORT STATS
"""

import asyncio
import sys

requests = 0
received = 0


async def handle(reader, writer):
    global requests, received
    try:
        while await reader.readline():
            length = 0
            while (line := await reader.readline()) not in (b"\r\n", b"\n", b""):
                name, _, value = line.decode("latin-1").partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value)
            received += len(await reader.readexactly(length))
            requests += 1
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\n\r\n")
            await writer.drain()
    except (ConnectionError, asyncio.IncompleteReadError):
        pass


async def main(port, stats):
    server = await asyncio.start_server(handle, "127.0.0.1", port)
    async with server:
        while True:
            await asyncio.sleep(1)
            with open(stats, "w") as out:
                out.write(f"{requests} {received}\n")


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), sys.argv[2]))

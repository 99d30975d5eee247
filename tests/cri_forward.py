#!/usr/bin/env python3
"""TCP relay for tests/cri.sh.

    cri_forward.py --listen HOST:PORT --to HOST:PORT [--rate BYTES_PER_SEC]

Prints the bound address (HOST:PORT; PORT 0 picks a free one) on the first
line of stdout, then relays every connection to --to. With --rate, response
bytes of each connection are paced to that rate, so a large pull stays in
flight long enough to observe (concurrency, deadlines). It also lets a
registry answer on a port it does not listen on (443 for critest's names).
"""

import argparse
import asyncio
import time


async def pipe(reader, writer, rate):
    start = time.monotonic()
    sent = 0
    try:
        while True:
            data = await reader.read(64 * 1024)
            if not data:
                break
            writer.write(data)
            await writer.drain()
            sent += len(data)
            if rate:
                ahead = sent / rate - (time.monotonic() - start)
                if ahead > 0:
                    await asyncio.sleep(ahead)
    except (ConnectionError, OSError):
        pass
    finally:
        writer.close()


async def relay(client_reader, client_writer, target, rate):
    try:
        server_reader, server_writer = await asyncio.open_connection(*target)
    except OSError:
        client_writer.close()
        return
    await asyncio.gather(pipe(client_reader, server_writer, 0), pipe(server_reader, client_writer, rate))


def host_port(text):
    host, _, port = text.rpartition(":")
    return host, int(port)


async def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", required=True, type=host_port)
    parser.add_argument("--to", required=True, type=host_port)
    parser.add_argument("--rate", type=int, default=0, help="bytes per second per connection (0: unlimited)")
    args = parser.parse_args()
    server = await asyncio.start_server(lambda r, w: relay(r, w, args.to, args.rate), *args.listen)
    host, port = server.sockets[0].getsockname()[:2]
    print(f"{host}:{port}", flush=True)
    await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())

"""Round-trip latency through a TURN server, in microseconds: one aioice client (PyPI)
allocates with TURN REST credentials, binds a channel to an echoing peer
(`turnutils_peer`) and sends sequential pings — each waits for its echo — through the
relay. Client overhead (Python, asyncio) is in every figure and the same for every server.

    latency.py --server 127.0.0.1:3478 --secret S --peer 127.0.0.1:34990 [--count 2000] [--size 100]
"""

import argparse
import asyncio
import base64
import hashlib
import hmac
import statistics
import time

from aioice.turn import create_turn_endpoint


class Echoes(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.waiter: asyncio.Future[bytes] | None = None

    def datagram_received(self, data: bytes, addr) -> None:  # type: ignore[override]
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(data)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--server", required=True)
    parser.add_argument("--secret", required=True)
    parser.add_argument("--peer", required=True)
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--size", type=int, default=100)
    args = parser.parse_args()
    host, port = args.server.rsplit(":", 1)
    peer_host, peer_port = args.peer.rsplit(":", 1)
    peer = (peer_host, int(peer_port))
    username = f"{int(time.time()) + 3600}:bench:latency"
    password = base64.b64encode(hmac.new(args.secret.encode(), username.encode(), hashlib.sha1).digest()).decode()

    transport, protocol = await create_turn_endpoint(Echoes, server_addr=(host, int(port)), username=username, password=password)
    loop = asyncio.get_running_loop()
    samples: list[float] = []
    lost = 0
    try:
        for index in range(args.count + 100):  # the first 100 warm up (and bind the channel)
            payload = index.to_bytes(4, "big") + bytes(max(0, args.size - 4))
            protocol.waiter = loop.create_future()
            start = time.perf_counter_ns()
            transport.sendto(payload, peer)
            try:
                echoed = await asyncio.wait_for(protocol.waiter, 1.0)
            except asyncio.TimeoutError:
                lost += 1
                continue
            elapsed = (time.perf_counter_ns() - start) / 1000
            if index >= 100 and echoed[:4] == payload[:4]:
                samples.append(elapsed)
    finally:
        transport.close()
    samples.sort()

    def percentile(p: float) -> float:
        return samples[min(len(samples) - 1, int(p * len(samples)))]

    print(
        f"{len(samples)} round trips of {args.size} B: p50 {percentile(0.50):.0f} µs, p90 {percentile(0.90):.0f} µs, "
        f"p99 {percentile(0.99):.0f} µs, max {samples[-1]:.0f} µs, mean {statistics.mean(samples):.0f} µs; lost {lost}"
    )


asyncio.run(main())

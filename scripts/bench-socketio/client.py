"""Side-by-side relay benchmark client: one process, two sessions A and B in one room.

A sends `signal` messages with a 256-byte `data` payload to B and asks for an ack. A
message's round trip ends when B has received it AND A has its ack. Measured:

  * round trip p50/p99 (µs);
  * the server's CPU time over the measured window (utime + stime of /proc/<pid>/stat, and
    the sum of /proc/<pid>/task/*/schedstat, which has nanosecond resolution) divided by
    the number of messages → server µs of CPU per relayed message;
  * this client's own CPU per message (so the client side can be compared too).

Modes:
  sequential (default): send one, wait for delivery + ack, send the next;
  --rate R: pipelined, R messages per second for messages/R seconds, not waiting.

Targets:
  --target switchboard  the SPEC §3 WebSocket protocol (`websockets` client); with
                        --admin-token a throw-away tenant with high limits is created and
                        access tokens are minted through the REST API (POST /v1/tokens)
  --target socketio     server.py of this folder (`python-socketio[client]`, websocket
                        transport only)
  --target socketio-raw server.py, but the socket.io packets written and parsed by hand over a
                        `websockets` connection, as for Switchboard (same client cost)

    python client.py --target switchboard --url http://127.0.0.1:8080 --admin-token T --server-pid 123
    python client.py --target socketio --url http://127.0.0.1:8000 --server-pid 456
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import glob
import json
import math
import os
import sys
import time
import urllib.error
import urllib.request

PAYLOAD_BYTES = 256
ROOM = "bench-room"


# ---------------------------------------------------------------------------- measuring

def cpu_stat_seconds(pid: int) -> float:
    """utime + stime of the whole process (every thread, dead ones included), in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # fields[0] is field 3 (state); utime is field 14, stime field 15.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def thread_times(pid: int) -> dict[str, float]:
    """Seconds on CPU of each live thread of the process (schedstat, ns resolution), by "tid name"."""
    times = {}
    for path in glob.glob(f"/proc/{pid}/task/*/schedstat"):
        try:
            with open(path) as f:
                seconds = int(f.read().split()[0]) / 1e9
            with open(path[: -len("schedstat")] + "comm") as f:
                name = f.read().strip()
        except (FileNotFoundError, ProcessLookupError, ValueError, IndexError):
            continue
        times[f"{path.split('/')[-2]} {name}"] = seconds
    return times


def busiest_threads(before: dict[str, float], after: dict[str, float]) -> str:
    """The threads that did ≥ 5 % of the work in the window: "name 93%, name 6%"."""
    deltas = {tid: after[tid] - before.get(tid, 0.0) for tid in after}
    total = sum(deltas.values()) or 1.0
    busy = sorted(((d / total, tid.split(" ", 1)[1]) for tid, d in deltas.items() if d / total >= 0.05), reverse=True)
    return ", ".join(f"{name} {share:.0%}" for share, name in busy)


def percentile(sorted_values: list[int], p: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, math.ceil(p / 100 * len(sorted_values)) - 1))  # nearest rank
    return sorted_values[index] / 1000.0  # ns → µs


def payload(n: int) -> dict:
    """`data` whose JSON is exactly PAYLOAD_BYTES bytes: {"n":<n>,"p":"xxx…"}."""
    head = len(json.dumps({"n": n, "p": ""}, separators=(",", ":")))
    return {"n": n, "p": "x" * max(0, PAYLOAD_BYTES - head)}


async def close_sockets(sockets: dict, readers: list) -> None:
    """Closes a target's WebSockets and stops its reader tasks."""
    for socket in sockets.values():
        await socket.close()
    for reader in readers:
        reader.cancel()


class Tracker:
    """Messages in flight: each needs a delivery (to B) and an ack (to A)."""

    def __init__(self) -> None:
        self.pending: dict[int, list] = {}  # n → [sent_ns, delivered_ns or 0, acked, future]
        self.round_trips: list[int] = []
        self.deliveries: list[int] = []
        self.recording = False
        self.errors = 0
        self.out_of_order = 0
        self.last_delivered = -1
        self.done = asyncio.Event()
        self.expected_done = 0
        self.completed = 0

    def sent(self, n: int, future: asyncio.Future | None) -> None:
        self.pending[n] = [time.perf_counter_ns(), 0, False, future]

    def delivered(self, n: int) -> None:
        now = time.perf_counter_ns()
        if n <= self.last_delivered:
            self.out_of_order += 1
        self.last_delivered = max(self.last_delivered, n)
        entry = self.pending.get(n)
        if entry is None:
            return
        entry[1] = now
        if self.recording:
            self.deliveries.append(now - entry[0])
        if entry[2]:
            self._finish(n, entry, now)

    def acked(self, n: int) -> None:
        entry = self.pending.get(n)
        if entry is None:
            return
        entry[2] = True
        if entry[1]:
            self._finish(n, entry, time.perf_counter_ns())

    def failed(self, n: int | None, what: str) -> None:
        self.errors += 1
        print(f"error: {what}", file=sys.stderr)
        if n is not None and n in self.pending:
            entry = self.pending.pop(n)
            if entry[3] is not None and not entry[3].done():
                entry[3].set_exception(RuntimeError(what))

    def _finish(self, n: int, entry: list, now: int) -> None:
        del self.pending[n]
        if self.recording:
            self.round_trips.append(now - entry[0])
        self.completed += 1
        if entry[3] is not None and not entry[3].done():
            entry[3].set_result(None)
        if self.expected_done and self.completed >= self.expected_done:
            self.done.set()


# ---------------------------------------------------------------------------- targets

class SwitchboardTarget:
    """Two WebSocket sessions speaking SPEC §3."""

    def __init__(self, args: argparse.Namespace, tracker: Tracker) -> None:
        self.args = args
        self.tracker = tracker
        self.base = args.url.rstrip("/")
        self.tenant: str | None = None
        self.readers: list[asyncio.Task] = []

    def _rest(self, method: str, path: str, body: dict | None, auth: str, raw: bool = False):
        request = urllib.request.Request(
            self.base + path, method=method, data=None if body is None else json.dumps(body).encode(),
            headers={"Authorization": auth, "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                text = response.read()
        except urllib.error.HTTPError as error:
            raise RuntimeError(f"{method} {path}: HTTP {error.code} {error.read().decode(errors='replace')}") from None
        return text if raw else json.loads(text) if text else {}

    async def connect(self) -> None:
        import websockets.asyncio.client as wsclient

        if self.args.admin_token:
            created = self._rest("POST", "/v1/tenants", {
                "name": "bench-socketio",
                "limits": {"maxConnections": 1000, "maxPeersPerRoom": 100,
                           "messagesPerSecond": 100000, "messageBurst": 100000}},
                f"Bearer {self.args.admin_token}")
            self.tenant = created["tenant"]["id"]
            key, secret = created["apiKey"], created["apiSecret"]
        else:
            key, secret = self.args.api_key, self.args.api_secret
        basic = "Basic " + base64.b64encode(f"{key}:{secret}".encode()).decode()
        ws_base = "ws" + self.base[len("http"):] if self.base.startswith("http") else self.base
        tokens = {peer: self._rest("POST", "/v1/tokens", {"room": ROOM, "peerId": peer, "ttlSeconds": 3600}, basic)["token"]
                  for peer in ("a", "b")}
        self.sockets = {}
        for peer, token in tokens.items():
            if peer == "b":
                # Each request opens a connection, which the node places on its next event loop (round
                # robin): with SWITCHBOARD_EVENT_LOOPS=N, spacers decide whether A and B share a loop.
                for _ in range(self.args.spacers):
                    self._rest("GET", "/v1/openapi.yaml", None, basic, raw=True)
            socket = await wsclient.connect(f"{ws_base}/v1/signal?access_token={token}", compression=None,
                                            max_size=None, ping_interval=None)
            welcome = json.loads(await socket.recv())
            if welcome.get("type") != "welcome":
                raise RuntimeError(f"expected welcome, got {welcome}")
            self.sockets[peer] = socket
        self.a = self.sockets["a"]
        self.readers = [asyncio.create_task(self._read_a()), asyncio.create_task(self._read_b())]

    async def _read_a(self) -> None:
        tracker = self.tracker
        async for text in self.a:
            frame = json.loads(text)
            kind = frame.get("type")
            if kind == "ack":
                tracker.acked(int(frame["id"]))
            elif kind == "error":
                ref = frame.get("ref")
                tracker.failed(int(ref) if ref is not None else None, f"switchboard error {frame}")

    async def _read_b(self) -> None:
        tracker = self.tracker
        async for text in self.sockets["b"]:
            frame = json.loads(text)
            if frame.get("type") == "signal":
                tracker.delivered(frame["data"]["n"])

    async def send(self, n: int) -> None:
        await self.a.send(json.dumps({"type": "signal", "to": "b", "data": payload(n), "id": str(n)},
                                     separators=(",", ":")))

    async def close(self) -> None:
        await close_sockets(self.sockets, self.readers)
        if self.tenant and self.args.admin_token:
            try:
                self._rest("DELETE", f"/v1/tenants/{self.tenant}", None, f"Bearer {self.args.admin_token}")
            except Exception as error:  # noqa: BLE001 — clean-up only
                print(f"could not delete tenant {self.tenant}: {error}", file=sys.stderr)


class SocketIOTarget:
    """Two python-socketio AsyncClients on the websocket transport."""

    def __init__(self, args: argparse.Namespace, tracker: Tracker) -> None:
        self.args = args
        self.tracker = tracker

    async def connect(self) -> None:
        import socketio

        tracker = self.tracker
        self.a = socketio.AsyncClient(reconnection=False)
        self.b = socketio.AsyncClient(reconnection=False)

        @self.b.on("signal")
        def on_signal(message):
            tracker.delivered(message["data"]["n"])

        for peer, client in (("a", self.a), ("b", self.b)):
            await client.connect(self.args.url, transports=["websocket"], auth={"room": ROOM, "peerId": peer},
                                 wait_timeout=10)

    async def send(self, n: int) -> None:
        tracker = self.tracker

        def on_ack(response=None):
            if isinstance(response, dict) and response.get("ok"):
                tracker.acked(n)
            else:
                tracker.failed(n, f"socket.io ack {response}")

        await self.a.emit("signal", {"to": "b", "data": payload(n)}, callback=on_ack)

    async def close(self) -> None:
        await self.a.disconnect()
        await self.b.disconnect()


class RawSocketIOTarget:
    """The same two socket.io sessions, but spoken by hand over a `websockets` connection (Engine.IO 4 /
    Socket.IO 5 text packets: `40{auth}` connect, `421["signal",…]` event with ack id 1, `431[…]` ack,
    `42["signal",…]` delivery, `2`/`3` ping/pong), so the client costs what the Switchboard client costs."""

    def __init__(self, args: argparse.Namespace, tracker: Tracker) -> None:
        self.args = args
        self.tracker = tracker
        self.readers: list[asyncio.Task] = []
        self.next_ack = 0
        self.acks: dict[int, int] = {}  # socket.io ack id → message number

    async def connect(self) -> None:
        import websockets.asyncio.client as wsclient

        base = self.args.url.rstrip("/")
        url = ("ws" + base[len("http"):] if base.startswith("http") else base) + "/socket.io/?EIO=4&transport=websocket"
        self.sockets = {}
        for peer in ("a", "b"):
            socket = await wsclient.connect(url, compression=None, max_size=None, ping_interval=None)
            opened = await socket.recv()
            if not opened.startswith("0"):
                raise RuntimeError(f"expected an Engine.IO open packet, got {opened!r}")
            await socket.send("40" + json.dumps({"room": ROOM, "peerId": peer}))
            connected = await socket.recv()
            if not connected.startswith("40"):
                raise RuntimeError(f"expected a Socket.IO connect packet, got {connected!r}")
            self.sockets[peer] = socket
        self.a = self.sockets["a"]
        self.readers = [asyncio.create_task(self._read(self.a, True)),
                        asyncio.create_task(self._read(self.sockets["b"], False))]

    async def _read(self, socket, is_sender: bool) -> None:
        tracker = self.tracker
        async for text in socket:
            if text == "2":
                await socket.send("3")
            elif is_sender and text.startswith("43"):
                bracket = text.index("[")
                n = self.acks.pop(int(text[2:bracket]), None)
                response = json.loads(text[bracket:])
                if n is not None and response and isinstance(response[0], dict) and response[0].get("ok"):
                    tracker.acked(n)
                else:
                    tracker.failed(n, f"socket.io ack {text[:80]}")
            elif not is_sender and text.startswith("42"):
                event = json.loads(text[2:])
                if event[0] == "signal":
                    tracker.delivered(event[1]["data"]["n"])

    async def send(self, n: int) -> None:
        self.next_ack += 1
        self.acks[self.next_ack] = n
        await self.a.send(f"42{self.next_ack}" + json.dumps(["signal", {"to": "b", "data": payload(n)}],
                                                            separators=(",", ":")))

    async def close(self) -> None:
        await close_sockets(self.sockets, self.readers)


# ---------------------------------------------------------------------------- runs

async def sequential(target, tracker: Tracker, first: int, count: int) -> None:
    loop = asyncio.get_running_loop()
    for n in range(first, first + count):
        future = loop.create_future()
        tracker.sent(n, future)
        await target.send(n)
        await asyncio.wait_for(future, 10)


async def paced(target, tracker: Tracker, first: int, count: int, rate: float) -> None:
    tracker.done.clear()
    tracker.completed = 0
    tracker.expected_done = count
    start = time.perf_counter()
    sent = 0
    while sent < count:
        due = min(count, int((time.perf_counter() - start) * rate) + 1) - sent
        for _ in range(due):
            tracker.sent(first + sent, None)
            await target.send(first + sent)
            sent += 1
        await asyncio.sleep(0.001)
    try:
        await asyncio.wait_for(tracker.done.wait(), 10)
    except asyncio.TimeoutError:
        print(f"timed out with {len(tracker.pending)} messages outstanding", file=sys.stderr)
    tracker.expected_done = 0


async def run(args: argparse.Namespace) -> dict:
    tracker = Tracker()
    target = {"switchboard": SwitchboardTarget, "socketio": SocketIOTarget, "socketio-raw": RawSocketIOTarget}[args.target](
        args, tracker)
    await target.connect()
    try:
        drive = (lambda first, count: paced(target, tracker, first, count, args.rate)) if args.rate else \
            (lambda first, count: sequential(target, tracker, first, count))
        if args.warmup:
            await drive(0, args.warmup)
        await asyncio.sleep(0.2)
        tracker.recording = True
        pid = args.server_pid
        stat0, threads0 = (cpu_stat_seconds(pid), thread_times(pid)) if pid else (0.0, {})
        own0 = time.process_time()
        wall0 = time.perf_counter()
        await drive(args.warmup, args.messages)
        wall = time.perf_counter() - wall0
        own = time.process_time() - own0
        stat1, threads1 = (cpu_stat_seconds(pid), thread_times(pid)) if pid else (0.0, {})
        tracker.recording = False
    finally:
        await target.close()
    rtts = sorted(tracker.round_trips)
    deliveries = sorted(tracker.deliveries)
    n = args.messages
    return {
        "target": args.label or args.target,
        "mode": f"rate {args.rate:g}/s" if args.rate else "sequential",
        "messages": n,
        "completed": len(rtts),
        "errors": tracker.errors,
        "outOfOrder": tracker.out_of_order,
        "seconds": wall,
        "messagesPerSecond": n / wall if wall else 0.0,
        "serverCPUSeconds": stat1 - stat0 if pid else None,
        "serverCPUMicrosPerMessage": (stat1 - stat0) / n * 1e6 if pid else None,
        "serverSchedMicrosPerMessage":
            sum(t - threads0.get(tid, 0.0) for tid, t in threads1.items()) / n * 1e6 if pid else None,
        "serverBusyThreads": busiest_threads(threads0, threads1) if pid else None,
        "clientCPUMicrosPerMessage": own / n * 1e6,
        "roundTripP50Micros": percentile(rtts, 50),
        "roundTripP99Micros": percentile(rtts, 99),
        "deliveryP50Micros": percentile(deliveries, 50),
        "deliveryP99Micros": percentile(deliveries, 99),
    }


def line(r: dict) -> str:
    cpu = "n/a" if r["serverCPUMicrosPerMessage"] is None else \
        f"{r['serverCPUMicrosPerMessage']:.1f} µs/msg (schedstat {r['serverSchedMicrosPerMessage']:.1f})"
    return (f"{r['target']:<12} {r['mode']:<12} messages={r['completed']}/{r['messages']} errors={r['errors']} "
            f"server CPU {cpu}  round trip p50 {r['roundTripP50Micros']:.0f} µs p99 {r['roundTripP99Micros']:.0f} µs  "
            f"(delivery p50 {r['deliveryP50Micros']:.0f} µs, client CPU {r['clientCPUMicrosPerMessage']:.0f} µs/msg, "
            f"{r['messagesPerSecond']:.0f} msg/s)"
            + (f"  server threads: {r['serverBusyThreads']}" if r["serverBusyThreads"] else ""))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--target", choices=["switchboard", "socketio", "socketio-raw"], required=True)
    parser.add_argument("--url", required=True, help="server base URL, http://host:port")
    parser.add_argument("--admin-token", help="switchboard: operator token (creates a throw-away tenant)")
    parser.add_argument("--api-key", help="switchboard: tenant API key (instead of --admin-token)")
    parser.add_argument("--api-secret", help="switchboard: tenant API secret")
    parser.add_argument("--server-pid", type=int, help="the server process, for its CPU time")
    parser.add_argument("--messages", type=int, default=5000, help="measured messages (default 5000)")
    parser.add_argument("--warmup", type=int, default=1000, help="messages before measuring (default 1000)")
    parser.add_argument("--rate", type=float, default=0, help="pipelined: messages per second (default 0 = sequential)")
    parser.add_argument("--spacers", type=int, default=0,
                        help="switchboard: HTTP requests (new connections) between connecting A and B (default 0)")
    parser.add_argument("--label", help="name printed in the result line")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    args = parser.parse_args()
    if args.target == "switchboard" and not args.admin_token and not (args.api_key and args.api_secret):
        parser.error("switchboard needs --admin-token, or --api-key and --api-secret")
    result = asyncio.run(run(args))
    print(json.dumps(result) if args.json else line(result), flush=True)
    if result["completed"] < result["messages"] or result["errors"]:
        sys.exit(1)


if __name__ == "__main__":
    main()

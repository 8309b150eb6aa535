#!/usr/bin/env python3
"""Two aiortc peers (PyPI) signal through Switchboard and talk relay-only through a
`switchboard turn` node, with nothing but the `iceServers` of their `welcome`.

It starts, on free loopback ports and from an empty temporary directory:
  * `switchboard serve` (the embedded default: SQLite, in-process bus) with
    SWITCHBOARD_TURN_EMBEDDED=false, SWITCHBOARD_TURN_URLS=turn:127.0.0.1:<port>?transport=udp
    and SWITCHBOARD_TURN_SECRETS=<secret>;
  * `switchboard turn` with the same secret (or another one, --turn-node-secret) and
    SWITCHBOARD_TURN_ALLOW_LOOPBACK=true (everything is on 127.0.0.1 here).
Then, through the REST API: a tenant (admin token), and an access token per peer (the
tenant's API key). Both peers open the WebSocket, read `iceServers` from `welcome`, build an
RTCPeerConnection with only those servers and iceTransportPolicy "relay" (aiortc then
gathers no host candidate: its candidates are the TURN allocation alone), exchange offer
and answer in `signal` frames (aiortc puts its candidates in the SDP, so no trickle), open
a data channel, and one message goes out and comes back. Checked as well: the SDPs carry
relay candidates only, the nominated pair is relay on both sides, and the TURN node's
admin /metrics counts the tenant's allocations and relayed bytes.

Usage: venv/bin/python scripts/turn-interop/aiortc_relay.py --switchboard .build/debug/switchboard
       [--turn-node-secret WRONG] [--timeout 30] [--verbose]
Exit status: 0 the message crossed the relay; 1 it did not (no connection, wrong echo,
a check failed); 2 the setup failed (a node did not start, a REST call failed).
"""
import argparse
import asyncio
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from base64 import b64encode

import websockets

import interop_ports
from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection, RTCSessionDescription
from aiortc.rtcconfiguration import RTCIceTransportPolicy

TENANT = "interop"
ROOM = "relay-room"
MESSAGE = "hello through the relay"


class SetupError(Exception):
    """The nodes or the REST API did not get as far as the peers (exit 2)."""


class RelayFailure(Exception):
    """The peers did not talk through the relay (exit 1)."""


def free_port():
    """A port free for both UDP and TCP on 127.0.0.1 (the TURN node takes both)."""
    try:
        return interop_ports.free_port()
    except OSError as error:
        raise SetupError(str(error)) from error


def http(method, url, body=None, bearer=None, basic=None, timeout=10):
    headers = {"Content-Type": "application/json"}
    if bearer:
        headers["Authorization"] = f"Bearer {bearer}"
    if basic:
        headers["Authorization"] = "Basic " + b64encode(f"{basic[0]}:{basic[1]}".encode()).decode()
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, headers=headers, method=method)
    with urllib.request.urlopen(request, timeout=timeout) as response:
        text = response.read().decode()
    return json.loads(text) if text.startswith(("{", "[")) else text


class Nodes:
    """`switchboard turn` and `switchboard serve`, started and stopped together."""

    def __init__(self, binary, secret, turn_node_secret, verbose):
        self.binary = binary
        self.secret = secret
        self.turn_node_secret = turn_node_secret
        self.verbose = verbose
        self.work = tempfile.mkdtemp(prefix="switchboard-aiortc-")
        self.processes = []
        self.admin_token = "interop-" + secrets.token_urlsafe(18)

    def start(self):
        self.turn_port, self.turn_admin = free_port(), free_port()
        env = dict(os.environ, SWITCHBOARD_TURN_ALLOW_LOOPBACK="true")
        self.turn = self._spawn(
            "turn",
            [self.binary, "turn", "--host", "127.0.0.1", "--turn-port", str(self.turn_port),
             "--admin-port", str(self.turn_admin), "--turn-public-ip", "127.0.0.1",
             "--turn-secrets", self.turn_node_secret, "--turn-relay-ports", "62000-62999",
             "--drain-timeout", "1", "--log-format", "text", "--log-level", "info"],
            env)
        self._wait_ready(f"http://127.0.0.1:{self.turn_admin}/readyz", self.turn, "turn")

        serve_dir = os.path.join(self.work, "serve")
        os.mkdir(serve_dir)  # empty: the embedded default creates its files here
        env = dict(
            os.environ,
            SWITCHBOARD_HOST="127.0.0.1", SWITCHBOARD_PORT="0", SWITCHBOARD_ADMIN_PORT="0",
            SWITCHBOARD_TURN_EMBEDDED="false",
            SWITCHBOARD_TURN_URLS=f"turn:127.0.0.1:{self.turn_port}?transport=udp",
            SWITCHBOARD_TURN_SECRETS=self.secret,
            SWITCHBOARD_ADMIN_TOKEN=self.admin_token,
            SWITCHBOARD_DRAIN_TIMEOUT="1",
        )
        self.serve = self._spawn("serve", [self.binary, "serve", "--log-format", "text"], env, cwd=serve_dir)
        # The banner gives the ports the kernel chose (port 0).
        deadline = time.time() + 30
        api = admin = None
        while time.time() < deadline and not (api and admin):
            if self.serve.poll() is not None:
                raise SetupError(f"serve exited {self.serve.returncode}:\n{self.log('serve')}")
            text = self.log("serve")
            api = api or re.search(r"REST API:\s+(http://127\.0\.0\.1:\d+)/v1", text)
            admin = admin or re.search(r"Admin:\s+(http://127\.0\.0\.1:\d+)/metrics", text)
            time.sleep(0.05)
        if not (api and admin):
            raise SetupError(f"no banner from serve within 30 s:\n{self.log('serve')}")
        self.api, self.admin = api.group(1), admin.group(1)
        self._wait_ready(self.admin + "/readyz", self.serve, "serve")

    def _spawn(self, name, argv, env, cwd=None):
        out = open(os.path.join(self.work, f"{name}.log"), "wb")
        process = subprocess.Popen(argv, env=env, cwd=cwd or self.work, stdout=out, stderr=subprocess.STDOUT)
        self.processes.append((name, process))
        return process

    def _wait_ready(self, url, process, name):
        deadline = time.time() + 30
        while time.time() < deadline:
            if process.poll() is not None:
                raise SetupError(f"{name} exited {process.returncode}:\n{self.log(name)}")
            try:
                urllib.request.urlopen(url, timeout=1).read()
                return
            except OSError:
                time.sleep(0.05)
        raise SetupError(f"{name} not ready within 30 s:\n{self.log(name)}")

    def log(self, name):
        try:
            with open(os.path.join(self.work, f"{name}.log"), errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def turn_metrics(self):
        return http("GET", f"http://127.0.0.1:{self.turn_admin}/metrics")

    def stop(self):
        """SIGTERM, then each must exit 0 (a clean drain); SIGKILL after 20 s."""
        clean = True
        for name, process in reversed(self.processes):
            if process.poll() is None:
                process.terminate()
            try:
                status = process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                status = process.wait()
            if status != 0:
                clean = False
                print(f"{name} exited {status} on SIGTERM:\n{self.log(name)[-3000:]}")
        if self.verbose:
            for name, _ in self.processes:
                print(f"--- {name} log\n{self.log(name)[-4000:]}")
        shutil.rmtree(self.work, ignore_errors=True)
        return clean


def metric_sum(text, name, **labels):
    """Sum of the samples of `name` whose labels include `labels`."""
    total = 0.0
    for line in text.splitlines():
        match = re.match(rf"{name}(\{{([^}}]*)\}})?\s+(\S+)", line)
        if not match:
            continue
        have = dict(re.findall(r'(\w+)="([^"]*)"', match.group(2) or ""))
        if all(have.get(k) == v for k, v in labels.items()):
            total += float(match.group(3))
    return total


class Peer:
    """One participant: a WebSocket session and an aiortc RTCPeerConnection."""

    def __init__(self, name, url):
        self.name = name
        self.url = url
        self.frames = asyncio.Queue()
        self.pc = None

    async def connect(self):
        self.ws = await websockets.connect(self.url)
        self.welcome = json.loads(await self.ws.recv())
        if self.welcome.get("type") != "welcome":
            raise SetupError(f"{self.name}: first frame is not welcome: {self.welcome}")
        self.reader = asyncio.create_task(self._read())
        servers = [
            RTCIceServer(urls=s["urls"], username=s.get("username"), credential=s.get("credential"))
            for s in self.welcome.get("iceServers", [])
        ]
        if not any(str(u).startswith("turn:") for s in servers for u in (s.urls if isinstance(s.urls, list) else [s.urls])):
            raise SetupError(f"{self.name}: welcome has no turn: URL in iceServers: {self.welcome.get('iceServers')}")
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=servers, iceTransportPolicy=RTCIceTransportPolicy.RELAY))

    async def _read(self):
        async for raw in self.ws:
            frame = json.loads(raw)
            if frame.get("type") in ("signal", "peer-joined", "error"):
                await self.frames.put(frame)

    async def next_signal(self):
        while True:
            frame = await self.frames.get()
            if frame["type"] == "error":
                raise RelayFailure(f"{self.name}: error frame {frame}")
            if frame["type"] == "signal":
                return frame

    async def signal(self, to, data):
        await self.ws.send(json.dumps({"type": "signal", "to": to, "id": secrets.token_hex(4), "data": data}))

    def nominated_types(self):
        """Local and remote candidate types of the nominated ICE pairs (aioice internals)."""
        if not self.pc.sctp:
            return []
        connection = self.pc.sctp.transport.transport._connection  # RTCIceTransport → aioice
        return [(pair.local_candidate.type, pair.remote_candidate.type) for pair in connection._nominated.values()]

    async def close(self):
        if self.pc:
            await self.pc.close()
        await self.ws.close()
        self.reader.cancel()


def candidate_types(sdp):
    return sorted(set(re.findall(r"a=candidate:.* typ (\w+)", sdp)))


async def talk(nodes, timeout):
    tenant = http("POST", nodes.api + "/v1/tenants", {"id": TENANT, "name": "Interop"}, bearer=nodes.admin_token)
    key = (tenant["apiKey"], tenant["apiSecret"])
    # The token's `url` is built from SWITCHBOARD_PUBLIC_URL; the banner's port is the real one.
    ws = nodes.api.replace("http://", "ws://") + "/v1/signal?access_token="
    urls = {
        name: ws + http("POST", nodes.api + "/v1/tokens", {"room": ROOM, "peerId": name}, basic=key)["token"]
        for name in ("alice", "bob")
    }
    alice, bob = Peer("alice", urls["alice"]), Peer("bob", urls["bob"])
    await alice.connect()
    await bob.connect()
    print(f"iceServers in welcome: {json.dumps(bob.welcome['iceServers'])}")
    try:
        return await asyncio.wait_for(exchange(alice, bob), timeout)
    except asyncio.TimeoutError:
        raise RelayFailure(f"no data-channel message within {timeout} s "
                           f"(ICE: alice {alice.pc.iceConnectionState}, bob {bob.pc.iceConnectionState})")
    finally:
        await alice.close()
        await bob.close()


async def exchange(alice, bob):
    """bob offers (he finds alice in his welcome's peers), alice answers and echoes."""
    if "alice" not in [p.get("peerId") for p in bob.welcome.get("peers", [])]:
        raise SetupError(f"bob's welcome does not list alice: {bob.welcome}")
    reply = asyncio.get_running_loop().create_future()
    checks = {}

    @alice.pc.on("datachannel")
    def on_datachannel(channel):
        @channel.on("message")
        def on_message(message):
            channel.send(f"echo: {message}")

    channel = bob.pc.createDataChannel("interop")

    @channel.on("open")
    def on_open():
        channel.send(MESSAGE)

    @channel.on("message")
    def on_message(message):
        if not reply.done():
            reply.set_result(message)

    await bob.pc.setLocalDescription(await bob.pc.createOffer())
    checks["offer candidates"] = candidate_types(bob.pc.localDescription.sdp)
    await bob.signal("alice", {"type": "offer", "sdp": bob.pc.localDescription.sdp})

    offer = await alice.next_signal()
    await alice.pc.setRemoteDescription(RTCSessionDescription(sdp=offer["data"]["sdp"], type=offer["data"]["type"]))
    await alice.pc.setLocalDescription(await alice.pc.createAnswer())
    checks["answer candidates"] = candidate_types(alice.pc.localDescription.sdp)
    await alice.signal("bob", {"type": "answer", "sdp": alice.pc.localDescription.sdp})

    answer = await bob.next_signal()
    await bob.pc.setRemoteDescription(RTCSessionDescription(sdp=answer["data"]["sdp"], type=answer["data"]["type"]))
    checks["echo"] = await reply
    checks["bob's nominated pair"] = bob.nominated_types()
    checks["alice's nominated pair"] = alice.nominated_types()
    return checks


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--switchboard", required=True, help="path of the switchboard executable")
    parser.add_argument("--turn-node-secret", help="the TURN node's secret (default: the one serve signs with)")
    parser.add_argument("--timeout", type=float, default=30, help="seconds for the peers to exchange the message")
    parser.add_argument("--verbose", action="store_true", help="print both nodes' logs at the end")
    args = parser.parse_args()
    secret = "aiortc-relay-" + secrets.token_urlsafe(12)
    # Absolute: the nodes run in their own (temporary) working directories.
    nodes = Nodes(os.path.abspath(args.switchboard), secret, args.turn_node_secret or secret, args.verbose)
    failures = []
    passed = 0

    def check(name, ok, detail):
        nonlocal passed
        print(f"{'ok' if ok else 'FAILED':6} {name}: {detail}")
        if ok:
            passed += 1
        else:
            failures.append(name)

    status = 0
    try:
        nodes.start()
        print(f"serve {nodes.api}, turn 127.0.0.1:{nodes.turn_port} (admin {nodes.turn_admin})")
        checks = asyncio.run(talk(nodes, args.timeout))
        check("offer has relay candidates only", checks["offer candidates"] == ["relay"], checks["offer candidates"])
        check("answer has relay candidates only", checks["answer candidates"] == ["relay"], checks["answer candidates"])
        check("the message came back over the data channel", checks["echo"] == f"echo: {MESSAGE}", repr(checks["echo"]))
        for side in ("bob's nominated pair", "alice's nominated pair"):
            check(f"{side} is relay–relay", checks[side] == [("relay", "relay")], checks[side])
        # The allocation gauge is refreshed every second: poll (deadline 5 s) while the
        # peers' allocations are gone already, so read the counters, which stay.
        deadline = time.time() + 5
        while True:
            text = nodes.turn_metrics()
            allocations = metric_sum(text, "switchboard_turn_allocations_total")
            to_peer = metric_sum(text, "switchboard_turn_relayed_bytes_total", tenant=TENANT, direction="to_peer")
            to_client = metric_sum(text, "switchboard_turn_relayed_bytes_total", tenant=TENANT, direction="to_client")
            if (allocations >= 2 and to_peer > 0 and to_client > 0) or time.time() > deadline:
                break
            time.sleep(0.1)
        check("TURN node counted the allocations", allocations >= 2, f"switchboard_turn_allocations_total {allocations:g}")
        check("TURN node relayed bytes both ways", to_peer > 0 and to_client > 0,
              f"switchboard_turn_relayed_bytes_total{{tenant=\"{TENANT}\"}} to_peer {to_peer:g}, to_client {to_client:g}")
        status = 1 if failures else 0
    except RelayFailure as failure:
        check("the peers talk through the relay", False, failure)
        try:
            text = nodes.turn_metrics()
            print(f"       TURN auth failures: {metric_sum(text, 'switchboard_turn_auth_failures_total'):g}, "
                  f"allocations: {metric_sum(text, 'switchboard_turn_allocations_total'):g}")
        except OSError:
            pass
        status = 1
    except (SetupError, OSError, KeyError, ValueError) as error:
        print(f"SETUP  {type(error).__name__}: {error}")
        status = 2
    finally:
        if not nodes.stop():
            check("both nodes exit 0 on SIGTERM", False, "see above")
            status = status or 1
    print(f"aiortc relay: {passed} passed, {len(failures)} failed")
    return status


if __name__ == "__main__":
    sys.exit(main())

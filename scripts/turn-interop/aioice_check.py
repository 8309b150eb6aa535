#!/usr/bin/env python3
"""Checks a `switchboard turn` node with aioice (PyPI), an independent STUN/TURN client.

It starts the node itself (quota 1 per tenant, loopback peers allowed) on free loopback
ports, or checks one already running with those settings and the secret below (--server,
as scripts/turn-interop/run-ci does), then expects, each from a fresh client socket:

  401  Allocate without credentials (with REALM and NONCE)
  438  Allocate with a nonce the node never issued (with a fresh NONCE)
  442  Allocate asking for TCP relaying
  403  CreatePermission for 10.0.0.1 (a private peer)
  486  a second allocation for a tenant whose quota (1) is taken
  ---  aioice's own TURN client allocates, and a datagram crosses the relay both ways

With --peer-policy it checks instead what a browser-like client (no test switches) can
reach: on a node started without --turn-allow-loopback, ChannelBind to 127.0.0.1,
10.0.0.1, 169.254.169.254, ::ffff:127.0.0.1 (IPv4-mapped) and 64:ff9b::7f00:1 (NAT64 of
127.0.0.1) is refused — 403, or 443 for the IPv6 spellings on this IPv4 relay (a peer of
another family) — and so is CreatePermission, except for 127.0.0.1 itself: that is the
node's own address here, which a peer may use on the node's relay ports only (a
permission covers an IP, not a port). Nothing the client sends toward any of them through
the relay (Send indications to a listening loopback port) arrives.

Usage: python3 -m venv venv && venv/bin/pip install aioice
       venv/bin/python scripts/turn-interop/aioice_check.py --switchboard .build/debug/switchboard
       venv/bin/python scripts/turn-interop/aioice_check.py --switchboard .build/debug/switchboard --peer-policy
       venv/bin/python scripts/turn-interop/aioice_check.py --server 127.0.0.1:3478
         (a node started with --turn-secrets aioice-check-secret --turn-quota 1
          --turn-allow-loopback --turn-public-ip 127.0.0.1)
Exits 0 when every check passes.
"""
import argparse
import asyncio
import base64
import hashlib
import hmac
import socket
import subprocess
import sys
import tempfile
import time

from aioice import stun, turn

import interop_ports

SECRET = "aioice-check-secret"
REALM = "switchboard"


def credentials(tenant="acme", peer="alice", ttl=3600):
    username = f"{int(time.time()) + ttl}:{tenant}:{peer}"
    password = base64.b64encode(hmac.new(SECRET.encode(), username.encode(), hashlib.sha1).digest()).decode()
    return username, password


free_port = interop_ports.free_port


class Client:
    """One UDP socket speaking STUN through aioice's codec."""

    def __init__(self, server):
        self.server = server
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(5)

    def exchange(self, message):
        self.sock.sendto(bytes(message), self.server)
        while True:
            data, _ = self.sock.recvfrom(65535)
            response = stun.parse_message(data)
            if response.transaction_id == message.transaction_id:
                return response

    def request(self, method, attributes=(), username=None, password=None, nonce=None):
        message = stun.Message(message_method=method, message_class=stun.Class.REQUEST)
        for name, value in attributes:
            message.attributes[name] = value
        if username:
            message.attributes["USERNAME"] = username
            message.attributes["REALM"] = REALM
            message.attributes["NONCE"] = nonce
            message.add_message_integrity(turn.make_integrity_key(username, REALM, password))
        message.add_fingerprint()
        return self.exchange(message)

    def challenge(self):
        response = self.request(stun.Method.ALLOCATE, [("REQUESTED-TRANSPORT", turn.UDP_TRANSPORT)])
        return response.attributes["NONCE"]


def error_code(response):
    if response.message_class != stun.Class.ERROR:
        return None
    return response.attributes["ERROR-CODE"][0]


async def relay_round_trip(server):
    """aioice's own TURN client: allocate, send to a local echo peer, get the echo back."""
    echo = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    echo.bind(("127.0.0.1", 0))
    echo.setblocking(False)
    received = asyncio.get_running_loop().create_future()

    class Protocol(asyncio.DatagramProtocol):
        def datagram_received(self, data, addr):
            if not received.done():
                received.set_result(data)

    username, password = credentials(tenant="relay-tenant")
    transport, _ = await turn.create_turn_endpoint(Protocol, server_addr=server, username=username, password=password)
    try:
        transport.sendto(b"ping through the relay", echo.getsockname())
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 5
        while True:
            try:
                data, addr = echo.recvfrom(65535)
                break
            except BlockingIOError:
                if loop.time() > deadline:
                    raise TimeoutError("the peer got nothing")
                await asyncio.sleep(0.02)
        echo.sendto(data, addr)
        return await asyncio.wait_for(received, 5)
    finally:
        transport.close()
        echo.close()


class Checks:
    """Counts and prints named expectations."""

    def __init__(self):
        self.names = []
        self.failures = []

    def check(self, name, actual, expected):
        self.names.append(name)
        status = "ok" if actual == expected else "FAILED"
        print(f"{status:6} {name}: got {actual}, want {expected}")
        if actual != expected:
            self.failures.append(name)

    def refused(self, name, code, refusals):
        self.names.append(name)
        ok = code in refusals
        print(f"{'ok' if ok else 'FAILED':6} {name} refused: got {code}, want {' or '.join(map(str, sorted(refusals)))}")
        if not ok:
            self.failures.append(name)

    def report(self, what):
        print(f"{what}: {len(self.names) - len(self.failures)} passed, {len(self.failures)} failed")
        return 1 if self.failures else 0


def start_or_reach(args, extra):
    """(server address, node process or None): --server, or a node started with `extra` flags."""
    if args.server:
        host, _, port = args.server.rpartition(":")
        return (host, int(port)), None
    port, admin = free_port(), free_port()
    # The node's log goes to a file, shown if it does not answer (wait_until_answering).
    log = tempfile.TemporaryFile()
    node = subprocess.Popen(
        [args.switchboard, "turn", "--host", "127.0.0.1", "--turn-port", str(port), "--admin-port", str(admin),
         "--turn-public-ip", "127.0.0.1", "--turn-secrets", SECRET, "--turn-relay-ports", "61000-61999",
         "--log-format", "text", *extra],
        stdout=log, stderr=subprocess.STDOUT)
    node.log = log
    return ("127.0.0.1", port), node


def wait_until_answering(server, node):
    """The node's first 401 challenge; a node that exits or stays silent for 10 s fails the
    check with its log."""
    deadline = time.time() + 10
    while True:
        try:
            return Client(server).challenge()
        except (socket.timeout, ConnectionRefusedError):
            if node and node.poll() is not None:
                raise RuntimeError(f"the node exited with status {node.returncode}:\n{node_log(node)}")
            if time.time() > deadline:
                raise RuntimeError(f"the node did not answer within 10 s:\n{node_log(node)}")


def node_log(node):
    if not node:
        return "(a running node, given by --server)"
    node.log.seek(0)
    return node.log.read().decode(errors="replace")[-4000:]


def main():
    parser = argparse.ArgumentParser()
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--switchboard", help="path of the switchboard executable: start a node")
    target.add_argument("--server", help="HOST:PORT of a running node (quota 1, loopback allowed, this secret)")
    parser.add_argument("--peer-policy", action="store_true", help="check the peer-address policy of a node without test switches")
    args = parser.parse_args()
    if args.peer_policy:
        return peer_policy(args)
    server, node = start_or_reach(args, ["--turn-allow-loopback", "--turn-quota", "1"])
    checks = Checks()
    check = checks.check

    try:
        wait_until_answering(server, node)
        client = Client(server)
        unauthenticated = client.request(stun.Method.ALLOCATE, [("REQUESTED-TRANSPORT", turn.UDP_TRANSPORT)])
        check("401 without credentials", error_code(unauthenticated), 401)
        check("401 carries REALM and NONCE", "REALM" in unauthenticated.attributes and "NONCE" in unauthenticated.attributes, True)

        username, password = credentials()
        stale = Client(server).request(
            stun.Method.ALLOCATE, [("REQUESTED-TRANSPORT", turn.UDP_TRANSPORT)], username, password, b"f//499k954d6OL34oL9FSTvy64sA")
        check("438 for a nonce the node never issued", error_code(stale), 438)
        check("438 carries a fresh NONCE", "NONCE" in stale.attributes, True)

        tcp = Client(server)
        nonce = tcp.challenge()
        check("442 for TCP relaying", error_code(tcp.request(stun.Method.ALLOCATE, [("REQUESTED-TRANSPORT", 0x06000000)], username, password, nonce)), 442)

        first = Client(server)
        nonce = first.challenge()
        allocated = first.request(stun.Method.ALLOCATE, [("REQUESTED-TRANSPORT", turn.UDP_TRANSPORT)], username, password, nonce)
        check("allocation succeeds", allocated.message_class, stun.Class.RESPONSE)
        refused = first.request(stun.Method.CREATE_PERMISSION, [("XOR-PEER-ADDRESS", ("10.0.0.1", 9))], username, password, nonce)
        check("403 for a private peer", error_code(refused), 403)

        second = Client(server)
        nonce = second.challenge()
        over = second.request(stun.Method.ALLOCATE, [("REQUESTED-TRANSPORT", turn.UDP_TRANSPORT)], username, password, nonce)
        check("486 over the tenant's quota", error_code(over), 486)

        echoed = asyncio.run(relay_round_trip(server))
        check("aioice relays a datagram both ways", echoed, b"ping through the relay")
    finally:
        if node:
            node.terminate()
            node.wait(timeout=40)
    return checks.report("aioice")


INTERNAL_PEERS = ["127.0.0.1", "10.0.0.1", "169.254.169.254", "::ffff:127.0.0.1", "64:ff9b::7f00:1"]


def peer_policy(args):
    """A node as deployed (no --turn-allow-loopback): internal peers are refused."""
    server, node = start_or_reach(args, [])
    checks = Checks()
    check, check_refused = checks.check, checks.refused

    # A real UDP listener on 127.0.0.1: if the relay ever forwarded to it, it would hear it.
    listener = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    listener.bind(("127.0.0.1", 0))
    listener.settimeout(1)
    target_port = listener.getsockname()[1]
    try:
        wait_until_answering(server, node)
        username, password = credentials(tenant="policy")
        client = Client(server)
        nonce = client.challenge()
        allocated = client.request(stun.Method.ALLOCATE, [("REQUESTED-TRANSPORT", turn.UDP_TRANSPORT)], username, password, nonce)
        check("allocation succeeds", allocated.message_class, stun.Class.RESPONSE)
        for number, peer in enumerate(INTERNAL_PEERS):
            # 443 (peer of another family) is as much a refusal as 403 for the IPv6 spellings.
            refusals = {403} if ":" not in peer else {403, 443}
            permission = client.request(stun.Method.CREATE_PERMISSION, [("XOR-PEER-ADDRESS", (peer, target_port))], username, password, nonce)
            if peer == "127.0.0.1":
                check("CreatePermission to the node's own address 127.0.0.1 (relay ports only)", error_code(permission), None)
            else:
                check_refused(f"CreatePermission to {peer}", error_code(permission), refusals)
            bound = client.request(
                stun.Method.CHANNEL_BIND, [("CHANNEL-NUMBER", 0x4000 + number), ("XOR-PEER-ADDRESS", (peer, target_port))],
                username, password, nonce)
            check_refused(f"ChannelBind to {peer} port {target_port}", error_code(bound), refusals)
            send = stun.Message(message_method=stun.Method.SEND, message_class=stun.Class.INDICATION)
            send.attributes["XOR-PEER-ADDRESS"] = (peer, target_port)
            send.attributes["DATA"] = b"should never arrive"
            client.sock.sendto(bytes(send), server)
        try:
            data, _ = listener.recvfrom(65535)
            heard = data
        except socket.timeout:
            heard = None
        check("nothing reached the loopback listener through the relay", heard, None)
    finally:
        listener.close()
        if node:
            node.terminate()
            node.wait(timeout=40)
    return checks.report("aioice peer policy")


if __name__ == "__main__":
    sys.exit(main())

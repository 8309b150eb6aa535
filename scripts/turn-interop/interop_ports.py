"""Ports for the TURN interop scripts (aioice_check.py, aiortc_relay.py)."""

import socket


def free_port():
    """A port free for both UDP and TCP on 127.0.0.1: a TURN node listens on both, and its
    admin server on TCP, so a port only UDP found free may still stop the node (an outgoing
    TCP connection's local port, for one). Raises OSError when 50 tries found none."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind(("127.0.0.1", 0))
            port = udp.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
                try:
                    tcp.bind(("127.0.0.1", port))
                except OSError:
                    continue
            return port
    raise OSError("no port free for both UDP and TCP on 127.0.0.1")

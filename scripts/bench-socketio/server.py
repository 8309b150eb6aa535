"""A minimal python-socketio relay: the socket.io equivalent of what a Switchboard node does
for one `signal` frame (look up the target peer in the sender's room, deliver
`{from, data, seq}` to it, acknowledge the sender). Nothing else: no auth, no audit, no
rate limiting, no metrics.

Runs python-socketio's asyncio server on aiohttp (`socketio.AsyncServer(async_mode="aiohttp")`
under `aiohttp.web.run_app`), the setup python-socketio documents first for asyncio, in one
process with one event loop. `--mode uvicorn` runs the same handlers as an ASGI app
(`socketio.ASGIApp`) under uvicorn instead (uvloop + httptools + websockets when
`uvicorn[standard]` is installed), the other common production setup.

    python server.py --host 127.0.0.1 --port 8000 [--mode aiohttp|uvicorn]

Protocol (socket.io events):
  connect   auth = {"room": str, "peerId": str}; the socket joins the room; a peer id
            already present replaces the old one
  "signal"  {"to": peerId, "data": any} → the target gets "signal" {"from", "data", "seq"};
            the sender's ack callback gets {"ok": true} (or {"error": "peer_not_found"})
"""

import argparse

import socketio
from aiohttp import web


def build_server(async_mode: str) -> socketio.AsyncServer:
    sio = socketio.AsyncServer(async_mode=async_mode, cors_allowed_origins=None, logger=False, engineio_logger=False)

    # sid → (room, peerId); (room, peerId) → sid; sid → next seq of what it receives.
    sessions: dict[str, tuple[str, str]] = {}
    peers: dict[tuple[str, str], str] = {}
    seqs: dict[str, int] = {}

    @sio.event
    async def connect(sid, environ, auth):
        if not isinstance(auth, dict):
            return False
        room, peer = auth.get("room"), auth.get("peerId")
        if not isinstance(room, str) or not isinstance(peer, str) or not room or not peer:
            return False
        await sio.enter_room(sid, room)
        sessions[sid] = (room, peer)
        peers[(room, peer)] = sid
        seqs[sid] = 0
        return True

    @sio.event
    async def disconnect(sid, *args):
        entry = sessions.pop(sid, None)
        seqs.pop(sid, None)
        if entry is not None and peers.get(entry) == sid:
            del peers[entry]

    @sio.event
    async def signal(sid, message):
        entry = sessions.get(sid)
        if entry is None or not isinstance(message, dict):
            return {"error": "bad_request"}
        room, peer = entry
        target = peers.get((room, message.get("to")))
        if target is None:
            return {"error": "peer_not_found"}
        seq = seqs[target] + 1
        seqs[target] = seq
        await sio.emit("signal", {"from": peer, "data": message.get("data"), "seq": seq}, to=target)
        return {"ok": True}

    return sio


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--mode", choices=["aiohttp", "uvicorn"], default="aiohttp")
    args = parser.parse_args()
    if args.mode == "aiohttp":
        app = web.Application()
        build_server("aiohttp").attach(app)
        web.run_app(app, host=args.host, port=args.port, access_log=None, print=None)
    else:
        import uvicorn

        app = socketio.ASGIApp(build_server("asgi"))
        uvicorn.run(app, host=args.host, port=args.port, access_log=False, log_level="warning")


if __name__ == "__main__":
    main()

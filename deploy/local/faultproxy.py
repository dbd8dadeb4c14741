#!/usr/bin/env python3
"""TCP links between Hearth's ingester nodes that can be cut, for deploy/local/cluster.sh.

    faultproxy.py STATE_DIR NAME:LISTEN_PORT:TARGET_PORT ...

Each link listens on 127.0.0.1:LISTEN_PORT and forwards to 127.0.0.1:TARGET_PORT. A
node dials its peers' Raft traffic through the links (`--ingester.raft.peer-routes`),
one link per ordered pair of nodes, so a node can be cut off from its peers while
clients still reach it directly. The mode of link NAME is read from STATE_DIR/NAME.mode
(polled every 100 ms; missing means pass):

    pass     bytes flow both ways
    drop     nothing flows either way: connections are accepted and held silent, as a
             partitioned network does (the dialer times out rather than being refused)
    oneway   the dialer's bytes reach the target, the target's answers are lost (a
             node that can send but not receive)
    slow     bytes flow both ways, at most SLOW_RATE bytes a second in each direction
             of each connection (a congested link: a snapshot streamed over it takes
             seconds, long enough to kill its sender mid-stream). The proxy's sockets
             of such a connection keep small receive buffers, so what a killed sender
             had written but the link had not yet carried is lost with it, as on a
             real link, instead of arriving from the proxy's buffers

Every change of mode closes the link's open connections, so both sides start over on
fresh connections under the new mode. Once a change is in effect the proxy writes the
mode to STATE_DIR/NAME.applied (cluster.sh waits for it).
"""

import asyncio
import os
import socket
import sys

CHUNK = 64 * 1024
SLOW_RATE = 16 * 1024
# The streams' buffer limit: asyncio stops reading a socket once twice this is
# buffered, so the proxy never holds much of a connection's data itself (what it holds
# would still arrive after its sender died).
STREAM_LIMIT = 4 * 1024


class Link:
    def __init__(self, name, listen, target):
        self.name = name
        self.listen = listen
        self.target = target
        self.mode = "pass"
        self.conns = set()

    def close_all(self):
        for w in list(self.conns):
            w.close()
        self.conns.clear()


async def pipe(link, reader, writer, upstream):
    """Copies reader to writer while the link's mode lets this direction through."""
    try:
        while True:
            slow = link.mode == "slow"
            # A slow link reads a tenth of a second's worth at a time and waits after it.
            data = await reader.read(SLOW_RATE // 10 if slow else CHUNK)
            if not data:
                break
            if link.mode in ("pass", "slow") or (link.mode == "oneway" and upstream):
                writer.write(data)
                await writer.drain()
            if slow:
                await asyncio.sleep(len(data) / SLOW_RATE)
    except (ConnectionError, OSError, asyncio.CancelledError):
        pass
    finally:
        writer.close()


def small_buffers(writer):
    sock = writer.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SLOW_RATE // 4)


async def handle(link, client_r, client_w):
    link.conns.add(client_w)
    try:
        server_r, server_w = await asyncio.open_connection(
            "127.0.0.1", link.target, limit=STREAM_LIMIT
        )
    except OSError:
        client_w.close()
        link.conns.discard(client_w)
        return
    link.conns.add(server_w)
    if link.mode == "slow":
        small_buffers(client_w)
        small_buffers(server_w)
    await asyncio.gather(
        pipe(link, client_r, server_w, True),
        pipe(link, server_r, client_w, False),
    )
    link.conns.discard(client_w)
    link.conns.discard(server_w)


async def watch_modes(state_dir, links):
    while True:
        for link in links:
            try:
                with open(os.path.join(state_dir, link.name + ".mode")) as f:
                    mode = f.read().strip() or "pass"
            except FileNotFoundError:
                mode = "pass"
            if mode not in ("pass", "drop", "oneway", "slow"):
                mode = "pass"
            if mode != link.mode:
                link.mode = mode
                link.close_all()
            applied = os.path.join(state_dir, link.name + ".applied")
            try:
                with open(applied) as f:
                    done = f.read().strip()
            except FileNotFoundError:
                done = None
            if done != mode:
                with open(applied + ".tmp", "w") as f:
                    f.write(mode + "\n")
                os.replace(applied + ".tmp", applied)
        await asyncio.sleep(0.1)


async def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    state_dir = sys.argv[1]
    os.makedirs(state_dir, exist_ok=True)
    links = []
    for spec in sys.argv[2:]:
        name, listen, target = spec.rsplit(":", 2)
        links.append(Link(name, int(listen), int(target)))
    for link in links:
        await asyncio.start_server(
            lambda r, w, link=link: handle(link, r, w),
            "127.0.0.1",
            link.listen,
            limit=STREAM_LIMIT,
        )
    await watch_modes(state_dir, links)


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass

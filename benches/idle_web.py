#!/usr/bin/env python3
"""Server memory per idle registered connection: plain TCP against WebSocket.

Starts `natter serve` (release binary by default) on loopback ports, opens N
connections of one kind, registers each (NICK, then WELCOME), reads every
line the server sends until it has been quiet for a while, and reads the
server's RSS from /proc before and after. Each kind runs ROUNDS times on a
fresh server; the report is the median bytes per connection of each kind and
their difference. Loopback only; every wait has a deadline.

    benches/idle_web.py [--clients 1000] [--rounds 3] [--bin target/release/natter]

Python's standard library only: the WebSocket client here is the few lines a
test needs (handshake, masked text frames out, frames in are only drained).
"""

import argparse
import base64
import os
import re
import selectors
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time

DEADLINE = 120.0
QUIET = 2.0


def rss(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def start(binary):
    args = [binary, "serve", "--bind", "127.0.0.1:0", "--web-bind", "127.0.0.1:0",
            "--history", "off", "--accounts", "memory", "--rate", "0", "--threads", "2",
            "--max-clients", "100000"]
    # The log goes to a file: a pipe nobody reads would stall the server
    # once a thousand "connected" lines fill it.
    log_file = tempfile.TemporaryFile()
    proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=log_file, env={**os.environ, "NO_COLOR": "1"})
    log, tcp, web = b"", None, None
    end = time.time() + 15
    while time.time() < end and not (tcp and web):
        log_file.seek(0)
        log = log_file.read()
        text = re.sub(rb"\x1b\[[0-9;]*m", b"", log).decode("utf-8", "replace")
        m = re.search(r'listening.*?address="?127\.0\.0\.1:(\d+)', text)
        tcp = tcp or (m and int(m.group(1)))
        m = re.search(r'web client.*?url="?http://127\.0\.0\.1:(\d+)', text)
        web = web or (m and int(m.group(1)))
        time.sleep(0.05)
    if not (tcp and web):
        proc.kill()
        raise RuntimeError(f"server did not start: {log!r}")
    return proc, tcp, web


def ws_frame(text):
    data = text.encode()
    mask = os.urandom(4)
    head = bytes([0x81])
    if len(data) < 126:
        head += bytes([0x80 | len(data)])
    else:
        head += bytes([0x80 | 126]) + struct.pack("!H", len(data))
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(data))


def ws_open(port):
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall((f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
               f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
               "Sec-WebSocket-Version: 13\r\n\r\n").encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = s.recv(4096)
        if not chunk:
            raise RuntimeError("closed during the handshake")
        head += chunk
    if not head.startswith(b"HTTP/1.1 101"):
        raise RuntimeError(f"no upgrade: {head[:80]!r}")
    return s, head.split(b"\r\n\r\n", 1)[1]


def round_(binary, kind, clients):
    proc, tcp, web = start(binary)
    try:
        time.sleep(1.0)
        before = rss(proc.pid)
        sel = selectors.DefaultSelector()
        socks = []
        for i in range(clients):
            nick = f"idle{i}"
            if kind == "plain":
                s = socket.create_connection(("127.0.0.1", tcp), timeout=10)
                s.sendall(f"NICK {nick}\r\n".encode())
                seen = b""
            else:
                s, seen = ws_open(web)
                s.sendall(ws_frame(f"NICK {nick}"))
            s.setblocking(False)
            socks.append(s)
            sel.register(s, selectors.EVENT_READ, [seen])
            # Drain as we go, so nobody's outbox fills during the storm.
            for key, _ in sel.select(timeout=0):
                drain(key)
        end = time.time() + DEADLINE
        last = time.time()
        while time.time() < end and time.time() - last < QUIET:
            for key, _ in sel.select(timeout=0.2):
                if drain(key):
                    last = time.time()
        welcomed = sum(1 for s in socks if b"WELCOME" in sel.get_key(s).data[0])
        if welcomed != clients:
            raise RuntimeError(f"{kind}: {welcomed}/{clients} welcomed")
        time.sleep(1.0)
        after = rss(proc.pid)
        for s in socks:
            s.close()
        return (after - before) / clients, before, after
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


def drain(key):
    """Reads what is there; keeps the start (for WELCOME). True if any."""
    got = False
    while True:
        try:
            chunk = key.fileobj.recv(65536)
        except BlockingIOError:
            return got
        if not chunk:
            return got
        got = True
        seen = key.data
        if len(seen[0]) < 4096:
            seen[0] += chunk


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--clients", type=int, default=1000)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--bin", default="target/release/natter")
    a = p.parse_args()
    results = {}
    for kind in ("plain", "ws"):
        per = []
        for r in range(a.rounds):
            each, before, after = round_(a.bin, kind, a.clients)
            per.append(each)
            print(f"{kind} round {r + 1}: {each:,.0f} B/conn (RSS {before / 2**20:.1f} -> "
                  f"{after / 2**20:.1f} MiB)", file=sys.stderr)
        results[kind] = per
    pm, wm = statistics.median(results["plain"]), statistics.median(results["ws"])
    print(f"clients={a.clients} rounds={a.rounds} load={os.getloadavg()[0]:.2f}")
    print(f"plain: median {pm:,.0f} B/conn ({', '.join(f'{x:,.0f}' for x in results['plain'])})")
    print(f"ws:    median {wm:,.0f} B/conn ({', '.join(f'{x:,.0f}' for x in results['ws'])})")
    print(f"ws - plain: {wm - pm:,.0f} B/conn ({(wm - pm) / 1024:.2f} KiB)")


if __name__ == "__main__":
    main()

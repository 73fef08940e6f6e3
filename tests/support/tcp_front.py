"""A loopback TCP front that forwards to a server, run as its own process so a test can
SIGKILL it: every open connection through it breaks at once, as when an S3 endpoint dies.

    python tests/tcp_front.py LISTEN_PORT UPSTREAM_PORT [DIE_ON_REGEX]

With ``DIE_ON_REGEX`` the front dies by itself (``os._exit``: the kernel drops every
connection, as for SIGKILL) the moment a client sends bytes matching it, before forwarding
them: e.g. the HTTP request line of the PUT that would commit a Delta version. That puts
the outage exactly between a write's data files and its commit, every time.

The S3 test server keeps its objects in memory (see lakeloop.services), so the fault tests
kill this front, not the server: to the job it is the S3 endpoint going down mid-request
and coming back, while the objects stored before the outage stay, as S3's own do.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path


def _pump(src: socket.socket, dst: socket.socket, die_on: "re.Pattern[bytes] | None" = None) -> None:
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            if die_on is not None and die_on.search(data):
                print(f"dying on {data[:200]!r}", file=sys.stderr, flush=True)
                os._exit(17)
            dst.sendall(data)
    except OSError:
        pass
    finally:
        for sock, how in ((dst, socket.SHUT_WR), (src, socket.SHUT_RD)):
            try:
                sock.shutdown(how)
            except OSError:
                pass


def _serve(listen_port: int, upstream_port: int, die_on: "re.Pattern[bytes] | None" = None) -> None:
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", listen_port))
    server.listen(128)
    while True:
        client, _ = server.accept()
        try:
            upstream = socket.create_connection(("127.0.0.1", upstream_port), timeout=5)
            upstream.settimeout(None)
        except OSError:
            client.close()
            continue
        threading.Thread(target=_pump, args=(client, upstream, die_on), daemon=True).start()
        threading.Thread(target=_pump, args=(upstream, client), daemon=True).start()


class TcpFront:
    """Start/kill the front process; ``port`` is where clients connect."""

    def __init__(self, port: int, upstream_port: int, log: Path, die_on: str | None = None):
        self.port, self.upstream_port, self.log, self.die_on = port, upstream_port, log, die_on
        self.proc: subprocess.Popen | None = None

    def start(self, timeout_s: float = 10.0) -> "TcpFront":
        cmd = [sys.executable, __file__, str(self.port), str(self.upstream_port)]
        if self.die_on:
            cmd.append(self.die_on)
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with socket.socket() as probe:
                probe.settimeout(0.2)
                if probe.connect_ex(("127.0.0.1", self.port)) == 0:
                    return self
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise RuntimeError(f"the TCP front on 127.0.0.1:{self.port} did not start; see {self.log}")

    def died(self) -> bool:
        """Whether the front has exited (killed, or dead by its DIE_ON rule)."""
        return self.proc is not None and self.proc.poll() is not None

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)


if __name__ == "__main__":
    _serve(int(sys.argv[1]), int(sys.argv[2]), re.compile(sys.argv[3].encode()) if len(sys.argv) > 3 else None)

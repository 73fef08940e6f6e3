"""A real headless Chromium, driven over the DevTools protocol on a pipe (no websocket, no
driver binary): open a page, collect its console errors, evaluate JavaScript, take a screenshot.

Chromium comes from Debian's packages (``./dev/setup.sh --with-browser`` installs it; the
test setup does). ``--remote-debugging-pipe`` makes it read protocol commands on file
descriptor 3 and write replies and events on 4, each a JSON message ended by a NUL byte.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any

# Debian's /usr/bin/chromium is a shell launcher; the binary itself is started directly.
CANDIDATES = ("/usr/lib/chromium/chromium", "chromium", "chromium-browser", "google-chrome", "chrome")


def chromium_path() -> str | None:
    return next((p for p in map(shutil.which, CANDIDATES) if p), None)


@dataclass
class PageCheck:
    """What the browser saw of one page."""

    console_errors: list[str] = field(default_factory=list)
    values: dict[str, Any] = field(default_factory=dict)
    screenshot_png: bytes = b""


class Chromium:
    """One headless browser process; use as a context manager."""

    def __init__(self, timeout_s: float = 30.0):
        binary = chromium_path()
        if binary is None:
            raise RuntimeError("no Chromium on PATH; run ./dev/setup.sh --with-browser (apt-get install chromium)")
        self._timeout = timeout_s
        self._profile = tempfile.mkdtemp(prefix="lakeloop-chromium-")
        commands_r, self._commands_w = os.pipe()
        self._replies_r, replies_w = os.pipe()

        def wire_pipes() -> None:  # in the child: the protocol's fds 3 (commands) and 4 (replies)
            # Through copies above 10 first: a pipe end may itself be fd 3 or 4, and dup2 onto the
            # same number would keep it close-on-exec.
            commands, replies = fcntl.fcntl(commands_r, fcntl.F_DUPFD, 10), fcntl.fcntl(replies_w, fcntl.F_DUPFD, 10)
            os.dup2(commands, 3)
            os.dup2(replies, 4)

        self._process = subprocess.Popen(
            [binary, "--headless=new", "--remote-debugging-pipe", "--no-sandbox", "--disable-gpu",
             "--no-first-run", "--no-default-browser-check", "--disable-extensions", "--disable-sync",
             "--window-size=1280,2000", f"--user-data-dir={self._profile}", "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            preexec_fn=wire_pipes, close_fds=False,
        )
        os.close(commands_r)
        os.close(replies_w)
        self._buffer = b""
        self._next_id = 0
        self.events: list[dict[str, Any]] = []

    def __enter__(self) -> "Chromium":
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self._send("Browser.close")
        except Exception:  # noqa: BLE001 - closing a browser that already died
            pass
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
        os.close(self._commands_w)
        os.close(self._replies_r)
        shutil.rmtree(self._profile, ignore_errors=True)

    def _read_message(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            if time.monotonic() > deadline:
                raise TimeoutError("Chromium did not answer in time")
            chunk = os.read(self._replies_r, 1 << 16)
            if not chunk:
                raise RuntimeError("Chromium closed its DevTools pipe")
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def _send(self, method: str, params: dict[str, Any] | None = None, session: str | None = None) -> dict[str, Any]:
        """Send one command and return its result; events that arrive meanwhile are kept in ``events``."""
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self._commands_w, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + self._timeout
        while True:
            reply = self._read_message(deadline)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def _wait_for(self, method: str, session: str) -> None:
        deadline = time.monotonic() + self._timeout
        while not any(e.get("method") == method and e.get("sessionId") == session for e in self.events):
            self.events.append(self._read_message(deadline))

    def check_page(self, url: str, expressions: dict[str, str]) -> PageCheck:
        """Load ``url``, evaluate each JavaScript expression (by name), screenshot the page, and
        gather console errors, uncaught exceptions and error log entries (CSP violations among them)."""
        target = self._send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self._send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Page.enable", "Runtime.enable", "Log.enable"):
            self._send(domain, session=session)
        self.events.clear()
        self._send("Page.navigate", {"url": url}, session)
        self._wait_for("Page.loadEventFired", session)
        check = PageCheck()
        for name, expression in expressions.items():
            result = self._send("Runtime.evaluate", {"expression": expression, "returnByValue": True,
                                                     "awaitPromise": True}, session)
            check.values[name] = result.get("result", {}).get("value")
        shot = self._send("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True}, session)
        check.screenshot_png = base64.b64decode(shot["data"])
        for event in self.events:
            params = event.get("params", {})
            if event.get("method") == "Runtime.consoleAPICalled" and params.get("type") == "error":
                check.console_errors.append(" ".join(str(a.get("value", a.get("description"))) for a in params["args"]))
            elif event.get("method") == "Runtime.exceptionThrown":
                check.console_errors.append(params["exceptionDetails"].get("text", "exception"))
            elif event.get("method") == "Log.entryAdded" and params["entry"].get("level") == "error":
                check.console_errors.append(params["entry"].get("text", ""))
        self._send("Target.closeTarget", {"targetId": target})
        return check

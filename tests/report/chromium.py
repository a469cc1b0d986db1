"""A small headless-Chromium page checker for the HTML reports (standard library only).

Chromium is driven through the Chrome DevTools Protocol (CDP) over
``--remote-debugging-pipe``: the browser reads NUL-terminated JSON messages from its
file descriptor 3 and writes its answers and events, NUL-terminated too, to file
descriptor 4. One browser is started per :func:`check_page` call, with a fresh profile in a
temporary directory, and is always shut down (killed if need be) before the call returns.

The page is opened from disk (``file://``) with every ``http(s)``/``ws(s)``/``ftp`` request
failed on purpose through the ``Fetch`` domain, so the check never waits on the network and
behaves the same with or without one; such requests are still recorded, because a
self-contained report must make none.

Example (needs Chromium, so not run as a doctest)::

    result = check_page(Path("report.html"), screenshot=Path("report.png"))
    assert result.ok, "\\n".join(result.problems())
"""

from __future__ import annotations

import base64
import contextlib
import json
import math
import os
import queue
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["PageCheck", "check_page", "find_chromium"]

#: Executable names tried, in order, on ``PATH`` when ``$FLATNESS_CHROMIUM`` is not set.
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")

#: Flags known to work headless as root in a container without network access.
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--disable-dev-shm-usage",
    "--mute-audio",
    "--hide-scrollbars",
)

#: URL schemes a self-contained page may load from.
LOCAL_SCHEMES = ("data:", "file:", "about:", "chrome:", "blob:", "devtools:")

#: Requests matching these patterns are failed before they reach the network.
_BLOCKED_PATTERNS = ("http://*", "https://*", "ws://*", "wss://*", "ftp://*")

#: Longest full-page screenshot, in CSS pixels.
MAX_SCREENSHOT_HEIGHT = 20000

# Runs in a child process: move the two pipe ends to fds 3 and 4, then exec Chromium.
_TRAMPOLINE = """
import fcntl, os, sys
ends = [fcntl.fcntl(int(fd), fcntl.F_DUPFD, 10) for fd in sys.argv[1:3]]
for fd in sys.argv[1:3]:
    os.close(int(fd))
for target, fd in zip((3, 4), ends):
    os.dup2(fd, target)
    os.close(fd)
os.execv(sys.argv[3], sys.argv[3:])
"""

_IMAGES_JS = """
(async () => {
  const deadline = Date.now() + 2000;
  while (Array.from(document.images).some((img) => !img.complete) && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return {
    title: document.title,
    href: location.href,
    images: Array.from(document.images, (img) => ({
      src: img.currentSrc || img.src || img.getAttribute("src") || "",
      complete: img.complete,
      naturalWidth: img.naturalWidth,
      naturalHeight: img.naturalHeight,
    })),
  };
})()
"""


def find_chromium() -> str | None:
    """Return the Chromium executable to use, or ``None`` if there is none.

    ``$FLATNESS_CHROMIUM`` wins when set (a path or a name on ``PATH``); otherwise the first
    of :data:`CHROMIUM_NAMES` found on ``PATH``.
    """
    override = os.environ.get("FLATNESS_CHROMIUM", "").strip()
    if override:
        return shutil.which(override) or override
    for name in CHROMIUM_NAMES:
        path = shutil.which(name)
        if path:
            return path
    return None


@dataclass(frozen=True)
class PageCheck:
    """What a headless browser saw when loading one page.

    Attributes:
        images: One dict per ``<img>`` in document order with ``src`` (``data:`` URIs cut to
            their first 40 characters), ``complete``, ``naturalWidth`` and ``naturalHeight``.
        broken_images: The images that did not load (not complete, or zero natural width).
        console_errors: ``console.error`` calls and browser log entries of level error.
        exceptions: Uncaught JavaScript exceptions.
        external_requests: URLs of requests whose scheme is not local (see
            :data:`LOCAL_SCHEMES`), in the order first seen.
        title: ``document.title``.
        screenshot: Path of the full-page PNG, if one was asked for.
    """

    images: list[dict[str, Any]] = field(default_factory=list)
    broken_images: list[dict[str, Any]] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)
    exceptions: list[str] = field(default_factory=list)
    external_requests: list[str] = field(default_factory=list)
    title: str = ""
    screenshot: Path | None = None

    @property
    def ok(self) -> bool:
        """True when no image is broken and there are no errors and no external requests."""
        return not (
            self.broken_images or self.console_errors or self.exceptions or self.external_requests
        )

    def problems(self) -> list[str]:
        """Human-readable lines, one per problem, for assertion messages."""
        lines = [
            f"broken image: {img['src']} (complete={img['complete']}, "
            f"naturalWidth={img['naturalWidth']})"
            for img in self.broken_images
        ]
        lines += [f"console error: {text}" for text in self.console_errors]
        lines += [f"uncaught exception: {text}" for text in self.exceptions]
        lines += [f"external request: {url}" for url in self.external_requests]
        return lines


def check_page(
    html: Path,
    *,
    screenshot: Path | None = None,
    timeout: float = 60,
    width: int = 1200,
    height: int = 900,
) -> PageCheck:
    """Load ``html`` in headless Chromium and report images, errors and network requests.

    Args:
        html: The HTML file to open (as a ``file://`` URL).
        screenshot: If given, a full-page PNG is written there (height capped at
            :data:`MAX_SCREENSHOT_HEIGHT` CSS pixels).
        timeout: Seconds for the whole check (browser start included, shutdown excluded).
        width: Viewport width in CSS pixels.
        height: Viewport height in CSS pixels (the screenshot uses the document height).

    Returns:
        The :class:`PageCheck`.

    Raises:
        FileNotFoundError: If ``html`` does not exist.
        RuntimeError: If no Chromium is found, it cannot start, exits early, or the check
            takes longer than ``timeout`` (the message ends with Chromium's stderr).
    """
    html = Path(html).resolve()
    if not html.is_file():
        raise FileNotFoundError(f"html: no such file {html}")
    executable = find_chromium()
    if executable is None:
        raise RuntimeError(
            "no Chromium found: install Debian's chromium package or set FLATNESS_CHROMIUM"
        )
    if not (os.path.isfile(executable) and os.access(executable, os.X_OK)):
        raise RuntimeError(
            f"Chromium executable {executable!r} (from FLATNESS_CHROMIUM) is not an executable file"
        )
    with _Browser(executable) as browser:
        return _PageSession(browser, time.monotonic() + timeout).run(
            html.as_uri(), screenshot=screenshot, width=width, height=height
        )


class _Browser:
    """One Chromium process and its DevTools pipe; a context manager that always cleans up."""

    def __init__(self, executable: str) -> None:
        self.executable = executable
        self.tmpdir = Path(tempfile.mkdtemp(prefix="flatness-chromium-"))
        self.stderr_path = self.tmpdir / "stderr.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.to_browser = -1
        self.from_browser = -1
        self.messages: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self.closed = False  # the browser closed its end of the pipe
        self.responses: dict[int, dict[str, Any]] = {}
        self.on_event: Callable[[dict[str, Any]], None] = lambda message: None
        self._next_id = 0
        self._stop = threading.Event()
        self._reader: threading.Thread | None = None

    def __enter__(self) -> _Browser:
        try:
            self._start()
        except BaseException:
            self._shutdown()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._shutdown()

    def _start(self) -> None:
        # Chromium wants the pipe on fds 3 (commands in) and 4 (replies out). subprocess
        # keeps passed fds at their own numbers (which may be 3 or 4 already), so a tiny
        # Python trampoline moves them into place and execs the browser.
        cmd_read, self.to_browser = os.pipe()
        self.from_browser, reply_write = os.pipe()
        profile = self.tmpdir / "profile"
        profile.mkdir()
        args = [
            self.executable,
            *CHROMIUM_FLAGS,
            "--remote-debugging-pipe",
            f"--user-data-dir={profile}",
            "about:blank",
        ]
        try:
            with open(self.stderr_path, "wb") as stderr:
                self.proc = subprocess.Popen(
                    [sys.executable, "-c", _TRAMPOLINE, str(cmd_read), str(reply_write), *args],
                    stdin=subprocess.DEVNULL,
                    stdout=stderr,
                    stderr=stderr,
                    pass_fds=(cmd_read, reply_write),
                    start_new_session=True,
                )
        finally:
            os.close(cmd_read)
            os.close(reply_write)
        self._reader = threading.Thread(target=self._read_loop, daemon=True)
        self._reader.start()

    def _read_loop(self) -> None:
        parts: list[bytes] = []  # pieces of the message being received (screenshots are big)
        try:
            while not self._stop.is_set():
                ready, _, _ = select.select([self.from_browser], [], [], 0.1)
                if not ready:
                    continue
                chunk = os.read(self.from_browser, 1 << 20)
                if not chunk:
                    break
                end = chunk.find(b"\0")
                while end >= 0:
                    parts.append(chunk[:end])
                    raw = b"".join(parts)
                    parts = []
                    if raw.strip():
                        self.messages.put(json.loads(raw))
                    chunk = chunk[end + 1 :]
                    end = chunk.find(b"\0")
                parts.append(chunk)
        except (OSError, ValueError):
            pass
        finally:
            self.messages.put(None)

    def stderr_tail(self, chars: int = 3000) -> str:
        """The last ``chars`` characters Chromium wrote to stdout/stderr."""
        try:
            text = self.stderr_path.read_text(errors="replace")
        except OSError:
            return "(no stderr)"
        # D-Bus complaints are harmless noise in containers; keep the lines that matter.
        if not text.strip():
            return "(empty stderr)"
        lines = [line for line in text.splitlines() if line.strip() and "dbus" not in line]
        text = "\n".join(lines)
        return text[-chars:] if text else "(nothing but D-Bus warnings on stderr)"

    def fail(self, what: str) -> RuntimeError:
        """A RuntimeError saying ``what`` went wrong, with Chromium's stderr appended."""
        code = self.proc.poll() if self.proc is not None else None
        status = f" (Chromium exited with code {code})" if code is not None else ""
        return RuntimeError(
            f"{what}{status}; executable {self.executable}\n"
            f"--- Chromium stderr (tail) ---\n{self.stderr_tail()}"
        )

    def send(self, method: str, params: dict[str, Any] | None = None, *, session: str = "") -> int:
        """Send one command without waiting; return its id."""
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        data = json.dumps(message).encode() + b"\0"
        try:
            while data:
                data = data[os.write(self.to_browser, data) :]
        except OSError as err:
            raise self.fail(f"cannot send {method} to Chromium: {err}") from err
        return self._next_id

    def pump(self, deadline: float, what: str) -> None:
        """Handle one incoming message (blocking until ``deadline``)."""
        remaining = deadline - time.monotonic()
        if self.closed:
            raise self.fail(f"Chromium closed the DevTools pipe while waiting for {what}")
        if remaining <= 0:
            raise self.fail(f"timed out waiting for {what}")
        try:
            message = self.messages.get(timeout=remaining)
        except queue.Empty:
            raise self.fail(f"timed out waiting for {what}") from None
        if message is None:
            self.closed = True
            raise self.fail(f"Chromium closed the DevTools pipe while waiting for {what}")
        if "id" in message:
            self.responses[message["id"]] = message
        else:
            self.on_event(message)

    def call(
        self,
        method: str,
        params: dict[str, Any] | None = None,
        *,
        session: str = "",
        deadline: float,
    ) -> dict[str, Any]:
        """Send a command and wait for its result; protocol errors become RuntimeError."""
        ident = self.send(method, params, session=session)
        while ident not in self.responses:
            self.pump(deadline, method)
        response = self.responses.pop(ident)
        if "error" in response:
            raise self.fail(f"{method} failed: {response['error']}")
        result: dict[str, Any] = response.get("result", {})
        return result

    def _shutdown(self) -> None:
        proc = self.proc
        if proc is not None and proc.poll() is None:
            if not self.closed and self.to_browser >= 0:
                # Ask politely first, then wait (briefly) for the pipe to close.
                with contextlib.suppress(RuntimeError):
                    self.send("Browser.close")
                    deadline = time.monotonic() + 5
                    while not self.closed and time.monotonic() < deadline:
                        with contextlib.suppress(RuntimeError):
                            self.pump(deadline, "Browser.close")
            # Kill what is left of the browser's process group (renderers, zygote) while the
            # main process is still unreaped, so the group id cannot have been reused.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=10)
        self._stop.set()
        if self._reader is not None:
            self._reader.join(timeout=2)
        for fd in (self.to_browser, self.from_browser):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self.to_browser = self.from_browser = -1
        shutil.rmtree(self.tmpdir, ignore_errors=True)


class _PageSession:
    """Collects one page's events; drives the navigation, inspection and screenshot."""

    def __init__(self, browser: _Browser, deadline: float) -> None:
        self.browser = browser
        self.deadline = deadline
        self.session = ""
        self.loads = 0
        self.console_errors: list[str] = []
        self.exceptions: list[str] = []
        self.external: dict[str, None] = {}  # ordered set
        browser.on_event = self._on_event

    def _call(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        return self.browser.call(method, params, session=self.session, deadline=self.deadline)

    def _on_event(self, message: dict[str, Any]) -> None:
        if message.get("sessionId", "") != self.session:
            return
        method = message.get("method", "")
        params = message.get("params", {})
        if method == "Page.loadEventFired":
            self.loads += 1
        elif method == "Network.requestWillBeSent":
            self._record_url(params.get("request", {}).get("url", ""))
        elif method == "Fetch.requestPaused":
            self._record_url(params.get("request", {}).get("url", ""))
            self.browser.send(
                "Fetch.failRequest",
                {"requestId": params["requestId"], "errorReason": "BlockedByClient"},
                session=self.session,
            )
        elif method == "Runtime.consoleAPICalled" and params.get("type") == "error":
            self.console_errors.append(" ".join(_remote_text(arg) for arg in params["args"]))
        elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
            entry = params["entry"]
            where = f" ({entry['url']})" if entry.get("url") else ""
            self.console_errors.append(f"{entry.get('text', '')}{where}")
        elif method == "Runtime.exceptionThrown":
            self.exceptions.append(_exception_text(params.get("exceptionDetails", {})))

    def _record_url(self, url: str) -> None:
        if url and not url.lower().startswith(LOCAL_SCHEMES):
            self.external[url] = None

    def run(self, url: str, *, screenshot: Path | None, width: int, height: int) -> PageCheck:
        browser = self.browser
        target = browser.call(
            "Target.createTarget", {"url": "about:blank"}, deadline=self.deadline
        )["targetId"]
        self.session = browser.call(
            "Target.attachToTarget", {"targetId": target, "flatten": True}, deadline=self.deadline
        )["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            self._call(f"{domain}.enable")
        self._call(
            "Fetch.enable", {"patterns": [{"urlPattern": pattern} for pattern in _BLOCKED_PATTERNS]}
        )
        self._set_viewport(width, height)

        loads_before = self.loads
        navigation = self._call("Page.navigate", {"url": url})
        if navigation.get("errorText"):
            raise browser.fail(f"navigation to {url} failed: {navigation['errorText']}")
        while True:
            while self.loads == loads_before:
                browser.pump(self.deadline, f"the load event of {url}")
            info = self._evaluate(_IMAGES_JS)
            if str(info.get("href", "")).startswith("file:"):
                break
            loads_before = self.loads  # a late load event of about:blank; wait for ours

        shot = None
        if screenshot is not None:
            metrics = self._call("Page.getLayoutMetrics")
            size = metrics.get("cssContentSize") or metrics.get("contentSize", {})
            full = min(max(height, math.ceil(size.get("height", height))), MAX_SCREENSHOT_HEIGHT)
            self._set_viewport(width, full)
            clip = {"x": 0, "y": 0, "width": width, "height": full, "scale": 1}
            data = self._call(
                "Page.captureScreenshot",
                {"format": "png", "captureBeyondViewport": True, "clip": clip},
            )["data"]
            shot = Path(screenshot)
            shot.parent.mkdir(parents=True, exist_ok=True)
            shot.write_bytes(base64.b64decode(data))

        images = [_image_record(img) for img in info.get("images", [])]
        return PageCheck(
            images=images,
            broken_images=[img for img in images if not img["complete"] or not img["naturalWidth"]],
            console_errors=list(self.console_errors),
            exceptions=list(self.exceptions),
            external_requests=list(self.external),
            title=str(info.get("title", "")),
            screenshot=shot,
        )

    def _set_viewport(self, width: int, height: int) -> None:
        self._call(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
        )

    def _evaluate(self, expression: str) -> dict[str, Any]:
        result = self._call(
            "Runtime.evaluate",
            {"expression": expression, "awaitPromise": True, "returnByValue": True},
        )
        if "exceptionDetails" in result:
            raise self.browser.fail(
                f"evaluating the page inspection script failed: "
                f"{_exception_text(result['exceptionDetails'])}"
            )
        value: dict[str, Any] = result.get("result", {}).get("value", {})
        return value


def _image_record(img: dict[str, Any]) -> dict[str, Any]:
    src = str(img.get("src", ""))
    if src.startswith("data:"):
        src = src[:40]
    return {
        "src": src,
        "complete": bool(img.get("complete")),
        "naturalWidth": int(img.get("naturalWidth") or 0),
        "naturalHeight": int(img.get("naturalHeight") or 0),
    }


def _remote_text(arg: dict[str, Any]) -> str:
    """Text of a CDP ``Runtime.RemoteObject`` (a console argument)."""
    if "value" in arg:
        return str(arg["value"])
    return str(arg.get("description") or arg.get("unserializableValue") or arg.get("type", ""))


def _exception_text(details: dict[str, Any]) -> str:
    """One line for a CDP ``Runtime.ExceptionDetails``."""
    exception = details.get("exception") or {}
    text = exception.get("description") or details.get("text") or "exception"
    first = str(text).splitlines()[0] if str(text).strip() else "exception"
    where = details.get("url") or ""
    if where:
        where = f" ({where}:{details.get('lineNumber', 0) + 1})"
    return f"{first}{where}"

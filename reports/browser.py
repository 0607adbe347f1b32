"""Open a page in headless Chromium: its DOM after loading, its console messages, the
network requests it made, and optionally a screenshot. Used by the report's tests and by
`python -m bench report --screenshot`.

One Chromium run does it all (--dump-dom with --screenshot). Console messages come from
Chromium's own log on stderr (--enable-logging=stderr: lines with "CONSOLE"); network
requests from a net log (--log-net-log), keeping only requests made on behalf of a file://
page (the browser's own background requests to its vendor are left out). Every host name
resolves to nothing (--host-resolver-rules), so a page that needs the network cannot
silently get it. A throwaway profile directory keeps runs independent.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")
#: what in Chromium's stderr is a message from the page, or a failure to load something
CONSOLE = re.compile(r"CONSOLE|Uncaught|Failed to load resource|net::ERR_")


def find_chromium() -> str | None:
    """Path of a Chromium/Chrome binary ($CHROMIUM first), or None."""
    env = os.environ.get("CHROMIUM")
    if env and shutil.which(env):
        return shutil.which(env)
    for name in NAMES:
        path = shutil.which(name)
        if path:
            return path
    return None


@dataclass
class PageLoad:
    dom: str  # the serialized DOM after loading
    console: list[str] = field(default_factory=list)  # console / load-failure lines
    requests: list[str] = field(default_factory=list)  # network URLs the page asked for
    screenshot: Path | None = None
    returncode: int = 0
    stderr: str = ""


def load_page(page: Path, screenshot: Path | None = None, window: tuple[int, int] = (1400, 4000),
              timeout: float = 120.0, binary: str | None = None) -> PageLoad:
    """Load a local HTML file in headless Chromium. RuntimeError if none is installed or
    it produced no DOM."""
    binary = binary or find_chromium()
    if binary is None:
        raise RuntimeError("no Chromium on PATH (tried " + ", ".join(NAMES) + "; or set $CHROMIUM)")
    page = Path(page).resolve()
    with tempfile.TemporaryDirectory(prefix="medbench-chromium-") as tmp:
        netlog = Path(tmp) / "net.json"
        cmd = [binary, "--headless=new", "--no-sandbox", "--disable-gpu",
               "--enable-logging=stderr", "--v=0", f"--user-data-dir={tmp}/profile",
               "--no-first-run", "--disable-extensions", "--disable-background-networking",
               "--disable-component-update", "--disable-sync", "--hide-scrollbars",
               "--host-resolver-rules=MAP * ~NOTFOUND", f"--log-net-log={netlog}",
               f"--window-size={window[0]},{window[1]}", "--dump-dom"]
        if screenshot is not None:
            screenshot = Path(screenshot).resolve()
            cmd.append(f"--screenshot={screenshot}")
        cmd.append(page.as_uri())
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        requests = _page_requests(netlog)
    if not proc.stdout.strip():
        raise RuntimeError(f"{binary} returned no DOM (exit code {proc.returncode}): "
                           + proc.stderr.strip()[-500:])
    console = [line for line in proc.stderr.splitlines() if CONSOLE.search(line)]
    return PageLoad(proc.stdout, console, requests,
                    screenshot if screenshot is not None and screenshot.exists() else None,
                    proc.returncode, proc.stderr)


def _page_requests(netlog: Path) -> list[str]:
    """URLs of the network requests a file:// page started (from Chromium's net log)."""
    try:
        doc = json.loads(netlog.read_text())
    except (OSError, ValueError):
        return []
    start = doc.get("constants", {}).get("logEventTypes", {}).get("URL_REQUEST_START_JOB")
    urls = []
    for event in doc.get("events", []):
        params = event.get("params") or {}
        if event.get("type") == start and str(params.get("network_isolation_key", "")
                                               ).startswith("file://"):
            urls.append(params.get("url", "?"))
    return urls

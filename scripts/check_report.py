#!/usr/bin/env python3
"""Open a taskfit HTML report in real headless Chromium and check it the way a person would look at it.

Checks: the page loads, every plot (an inline <svg> in a <figure>) is laid out with a visible size and
drawn content, the leaderboard table has rows, and the browser logged no console errors or exceptions.
Writes a full-page screenshot. Talks to Chromium over the DevTools protocol on a loopback port.

    python scripts/check_report.py runs/mr-compare/report.html --screenshot docs/report.png

Exit code 0 when every check passes; otherwise each failure is printed.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

MEASURE = """
(() => {
  const figures = [...document.querySelectorAll('figure')].map(f => {
    const svg = f.querySelector('svg');
    const box = svg ? svg.getBoundingClientRect() : {width: 0, height: 0};
    const drawn = svg ? svg.querySelectorAll('path, line, use, polyline, rect').length : 0;
    return {id: f.id, width: box.width, height: box.height, drawn: drawn};
  });
  return JSON.stringify({
    title: document.title,
    figures: figures,
    tableRows: document.querySelectorAll('table tbody tr').length,
    height: document.documentElement.scrollHeight,
  });
})()
"""


def stop(browser: subprocess.Popen) -> None:
    """Terminate Chromium and every helper process it started (they share its process group)."""
    for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 5)):
        try:
            os.killpg(browser.pid, sig)
        except ProcessLookupError:
            return
        try:
            browser.wait(wait)
            time.sleep(0.2)  # helpers exit just after the browser process
            return
        except subprocess.TimeoutExpired:
            continue


def find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        if path := shutil.which(name):
            return path
    return None


class DevTools:
    def __init__(self, url: str) -> None:
        import websocket  # websocket-client

        self.ws = websocket.create_connection(url, timeout=30, suppress_origin=True)
        self.next_id = 0
        self.events: list[dict] = []

    def call(self, method: str, **params) -> dict:
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.recv())
            if message.get("id") == self.next_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})
            self.events.append(message)

    def wait_for(self, event: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(e.get("method") == event for e in self.events):
                return
            self.ws.settimeout(max(0.1, deadline - time.monotonic()))
            self.events.append(json.loads(self.ws.recv()))
        raise TimeoutError(f"no {event} within {timeout} s")


def check(report: Path, screenshot: Path | None, min_figures: int) -> list[str]:
    chromium = find_chromium()
    if chromium is None:
        return ["no Chromium found (Debian: apt-get install chromium)"]
    problems: list[str] = []
    # Chromium's helper processes may still write to the profile while it is removed: ignore that
    with tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as profile:
        browser = subprocess.Popen(
            [
                chromium,
                "--headless",
                "--no-sandbox",  # runs as root in CI containers
                "--disable-gpu",
                "--no-first-run",
                "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0",
                f"--user-data-dir={profile}",
                "--window-size=1280,900",
                "about:blank",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # its own process group: stopping it stops its helpers too
        )
        try:
            port_file = Path(profile) / "DevToolsActivePort"
            deadline = time.monotonic() + 60
            while not port_file.exists() or not port_file.read_text().strip():
                if time.monotonic() > deadline or browser.poll() is not None:
                    return ["Chromium did not start (no DevToolsActivePort)"]
                time.sleep(0.1)
            port = int(port_file.read_text().split()[0])
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as response:
                pages = [t for t in json.load(response) if t["type"] == "page"]
            tools = DevTools(pages[0]["webSocketDebuggerUrl"])
            for domain in ("Page", "Runtime", "Log"):
                tools.call(f"{domain}.enable")
            tools.call("Page.navigate", url=report.resolve().as_uri())
            tools.wait_for("Page.loadEventFired")
            page = json.loads(
                tools.call("Runtime.evaluate", expression=MEASURE, returnByValue=True)["result"]["value"]
            )
            for e in tools.events:
                method, params = e.get("method"), e.get("params", {})
                if method == "Runtime.exceptionThrown":
                    problems.append(f"page exception: {params['exceptionDetails'].get('text')}")
                elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
                    problems.append(f"console error: {[a.get('value') for a in params.get('args', [])]}")
                elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
                    problems.append(f"browser error: {params['entry']['text']}")
            if len(page["figures"]) < min_figures:
                problems.append(f"{len(page['figures'])} figures, expected at least {min_figures}")
            for f in page["figures"]:
                if f["width"] < 200 or f["height"] < 100 or f["drawn"] < 5:
                    problems.append(f"plot {f['id']} not visibly drawn: {f}")
            if page["tableRows"] < 1:
                problems.append("the leaderboard table has no rows")
            if screenshot:
                width = 1280
                tools.call(
                    "Emulation.setDeviceMetricsOverride",
                    width=width,
                    height=min(int(page["height"]), 8000),
                    deviceScaleFactor=1,
                    mobile=False,
                )
                shot = tools.call("Page.captureScreenshot", format="png", captureBeyondViewport=True)
                screenshot.parent.mkdir(parents=True, exist_ok=True)
                screenshot.write_bytes(base64.b64decode(shot["data"]))
            print(json.dumps(page, indent=1))
        finally:
            stop(browser)
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("report", type=Path)
    parser.add_argument("--screenshot", type=Path)
    parser.add_argument("--min-figures", type=int, default=3)
    args = parser.parse_args()
    if not args.report.exists():
        print(f"{args.report}: no such file", file=sys.stderr)
        return 2
    problems = check(args.report, args.screenshot, args.min_figures)
    for p in problems:
        print(f"FAIL: {p}", file=sys.stderr)
    if not problems:
        print(
            f"ok: {args.report} renders in headless Chromium"
            + (f"; screenshot {args.screenshot}" if args.screenshot else "")
        )
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Shared launcher for the browser tests: Playwright driving Debian's Chromium.

The flags keep Chromium off the network (this machine has none beyond localhost) and out
of any user profile; as root it needs --no-sandbox. Every test imports `launch()`.
"""
import os
import sys
import tempfile

from playwright.sync_api import sync_playwright

FLAGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium_path():
    path = os.environ.get("HISTODIFF_CHROMIUM", "/usr/bin/chromium")
    if not os.path.exists(path):
        sys.exit(f"browser tests: no Chromium at {path} (scripts/services/chromium.sh installs it)")
    return path


class Browser:
    """A headless Chromium page that records console errors and page errors."""

    def __enter__(self):
        self._pw = sync_playwright().start()
        self._profile = tempfile.TemporaryDirectory()
        self.context = self._pw.chromium.launch_persistent_context(
            self._profile.name,
            executable_path=chromium_path(),
            headless=True,
            args=FLAGS,
            viewport={"width": 1280, "height": 900},
        )
        self.errors = []
        self.page = self.context.new_page()
        self.page.on("console", lambda m: m.type == "error" and self.errors.append(m.text))
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        return self

    def __exit__(self, *exc):
        self.context.close()
        self._pw.stop()
        self._profile.cleanup()


def check(cond, what):
    """Fails the test with `what` (a plain assert would vanish under python -O)."""
    if not cond:
        raise SystemExit(f"FAILED: {what}")
    print(f"ok: {what}")

"""Headless Chromium for browser tests: Debian's chromium driven by Playwright, and app zips.

Playwright never downloads a browser here: CI installs `apt-get install -y chromium` and the
`playwright` pip package, and every launch points at /usr/bin/chromium.
"""

from __future__ import annotations

import io
import os
import tempfile
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from playwright.sync_api import Page, sync_playwright

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)  # fixed, so the same folder always packs to the same bytes


class ChromiumMissingError(RuntimeError):
    """Debian's chromium is not installed where the browser tests look for it."""


def chromium_path() -> str:
    """The Chromium binary the browser tests drive, or ChromiumMissingError saying how to get it."""
    if not os.access(CHROMIUM, os.X_OK):
        raise ChromiumMissingError(
            f"{CHROMIUM} not found: install Debian's browser with "
            "`apt-get update && apt-get install -y chromium` (Playwright's own download is not used)"
        )
    return str(CHROMIUM)


def require_chromium() -> str:
    """chromium_path() for a test: fail when it is missing (scripts/test.sh installs it)."""
    try:
        return chromium_path()
    except ChromiumMissingError as exc:
        pytest.fail(str(exc))


@contextmanager
def browser_page(*, timeout_ms: float = 15_000) -> Iterator[Page]:
    """A Playwright Page in a fresh headless Chromium with its own throwaway profile."""
    executable = chromium_path()
    with tempfile.TemporaryDirectory(prefix="herald-chromium-") as profile, sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            profile,
            executable_path=executable,
            headless=True,
            args=list(CHROMIUM_ARGS),
        )
        try:
            page = context.pages[0] if context.pages else context.new_page()
            page.set_default_timeout(timeout_ms)
            yield page
        finally:
            context.close()


def zip_directory(path: Path, *, folder: str | None = None) -> bytes:
    """Pack a folder into an App Hub-style zip in memory; `folder` nests it in one top-level folder."""
    root = Path(path)
    if not root.is_dir():
        raise NotADirectoryError(root)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for file in sorted(p for p in root.rglob("*") if p.is_file() and not p.is_symlink()):
            name = file.relative_to(root).as_posix()
            if folder:
                name = f"{folder}/{name}"
            info = zipfile.ZipInfo(name, date_time=_ZIP_DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            archive.writestr(info, file.read_bytes())
    return buffer.getvalue()

"""Headless Chromium for tests, on loopback only (Debian's ``chromium`` and ``chromedriver``)."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["CHROMIUM_FLAGS", "chromium_available", "headless_chromium"]

#: Headless, and nothing in the background: no component updates, sync or metrics, which
#: would try to reach the network.
CHROMIUM_FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--disable-features=Translate,OptimizationHints,MediaRouter",
    "--metrics-recording-only",
    "--window-size=1280,900",
)


def _executables() -> tuple[str | None, str | None]:
    return shutil.which("chromium"), shutil.which("chromedriver")


def chromium_available() -> bool:
    """Return True when Debian's chromium and chromedriver are installed."""
    return None not in _executables()


@contextmanager
def headless_chromium() -> Iterator[Any]:
    """Yield a Selenium ``webdriver.Chrome`` on a fresh profile; quit it afterwards."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    browser, driver_path = _executables()
    if browser is None or driver_path is None:
        raise RuntimeError(
            "chromium and chromedriver are needed (Debian: chromium chromium-driver)"
        )
    os.environ.setdefault("SE_OFFLINE", "true")  # Selenium Manager must never download
    profile = tempfile.mkdtemp(prefix="dedupstore-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    # find_element waits for an element the next page has not rendered yet: a long
    # deadline, so a busy machine slows a test down instead of failing it.
    driver.implicitly_wait(60)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)

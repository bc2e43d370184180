"""The system Chromium (Debian ``chromium`` + ``chromium-driver``) driven by Selenium, offline.

No browser or driver is downloaded: both paths are given, so Selenium Manager
never runs. The network is blocked twice over: every request goes to a proxy
on a closed loopback port, and the DevTools network log (``performance``) is
kept so a test can assert that no http(s) request was even attempted.
Run as a script it saves a screenshot of a report page (how docs/report-websocket.png is made;
docs/REPORT.md has the commands).
"""

from __future__ import annotations

import json
import shutil
import socket
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.support.ui import WebDriverWait

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
WIDTH = 1280


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def browser_paths() -> tuple[str, str]:
    """The Chromium and chromedriver executables; AssertionError naming the Debian packages if missing."""
    chromium = shutil.which("chromium") or CHROMIUM
    driver = shutil.which("chromedriver") or CHROMEDRIVER
    missing = [name for name, path in (("chromium", chromium), ("chromium-driver", driver)) if not Path(path).is_file()]
    assert not missing, f"install the Debian packages {' '.join(missing)} (make test does)"
    return chromium, driver


@contextmanager
def offline_chromium(height: int = 900) -> Iterator[webdriver.Chrome]:
    chromium, driver_path = browser_paths()
    with tempfile.TemporaryDirectory(prefix="mproxy-chromium-") as profile:
        options = Options()
        options.binary_location = chromium
        for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
                     "--disable-background-networking", "--disable-component-update", "--disable-sync",
                     "--disable-dev-shm-usage", "--disable-extensions", "--no-default-browser-check",
                     f"--user-data-dir={profile}", f"--window-size={WIDTH},{height}",
                     f"--proxy-server=http://127.0.0.1:{closed_port()}", "--proxy-bypass-list=<-loopback>"):
            options.add_argument(flag)
        options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
        service = Service(executable_path=driver_path, log_output=str(Path(profile) / "chromedriver.log"))
        browser = webdriver.Chrome(service=service, options=options)
        try:
            browser.execute_cdp_cmd("Network.enable", {})
            yield browser
        finally:
            browser.quit()


def open_report(browser: webdriver.Chrome, page: Path, timeout: float = 60) -> str:
    """Load ``page`` from file:// and wait until its script says the charts are drawn (or failed)."""
    browser.get(page.resolve().as_uri())
    WebDriverWait(browser, timeout).until(
        lambda b: b.execute_script("return document.body && document.body.dataset.charts"))
    return browser.execute_script("return document.body.dataset.charts")


def requested_urls(browser: webdriver.Chrome) -> list[str]:
    """Every URL the page asked the network stack for, from the DevTools log (file:// and data: included)."""
    urls = []
    for entry in browser.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
    return urls


def console_errors(browser: webdriver.Chrome) -> list[dict[str, Any]]:
    return [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]


def full_page_screenshot(browser: webdriver.Chrome, path: Path, max_height: int = 4000) -> None:
    """The whole page (up to ``max_height`` pixels) as a PNG."""
    height = min(max_height, browser.execute_script("return document.documentElement.scrollHeight"))
    browser.set_window_size(WIDTH, height + 120)
    browser.execute_script("window.scrollTo(0, 0)")
    browser.save_screenshot(str(path))


def main() -> None:
    import argparse

    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    parser = argparse.ArgumentParser(description="Screenshot a report page in the offline Chromium.")
    parser.add_argument("page", type=Path)
    parser.add_argument("png", type=Path)
    parser.add_argument("--max-height", type=int, default=4000)
    parser.add_argument("--hover", type=int, metavar="ROW", help="hover this timeline bar (0 = first) first")
    args = parser.parse_args()
    with offline_chromium() as chrome:
        assert open_report(chrome, args.page) == "rendered"
        full_page_screenshot(chrome, args.png, max_height=args.max_height)
        if args.hover is not None:
            bars = chrome.find_elements(By.CSS_SELECTOR, "#chart-timeline g.client_bars_marks > path")
            ActionChains(chrome).move_to_element(bars[args.hover]).perform()
            WebDriverWait(chrome, 10).until(lambda b: b.find_elements(By.CSS_SELECTOR, "#vg-tooltip-element.visible"))
            chrome.save_screenshot(str(args.png))


if __name__ == "__main__":
    main()

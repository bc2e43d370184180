"""A report page in the real Chromium, offline: it draws, asks no network, has one bar per tunneled client.

The bar count is compared with ``mproxy stats --json`` (a separate command, the
same captures); the marks are counted twice, through the Vega view's scene
graph and in the SVG the page shows.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from cli_run import mproxy
from report.browser import console_errors, full_page_screenshot, offline_chromium, open_report, requested_urls
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.actions.wheel_input import ScrollOrigin
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CAPTURES = Path(__file__).resolve().parents[2] / "captures"

MARK_COUNTER = """((chart, markName) => {
  let count = 0;
  const walk = (item) => {
    if (item.marktype && item.name === markName) count += item.items.length;
    for (const child of item.items || []) walk(child);
  };
  walk(window.mproxyViews[chart].scenegraph().root);
  return count;
})"""
"""Items of the named mark in a chart's Vega scene graph (the view each page keeps in ``mproxyViews``)."""
COUNT_MARKS = f"return {MARK_COUNTER}(arguments[0], arguments[1]);"


@pytest.fixture(scope="module")
def chromium():
    with offline_chromium() as browser:
        yield browser


@pytest.mark.parametrize("capture", ["websocket.pcap", "impaired.pcap"])
def test_report_in_chromium(chromium, capture, tmp_path):
    page = tmp_path / "report.html"
    made = mproxy("report", str(CAPTURES / capture), "-o", str(page))
    assert made.returncode == 0, made.stderr
    stats = json.loads(mproxy("stats", "--json", str(CAPTURES / capture)).stdout)
    clients = len(stats["sessions"])
    assert clients >= 6

    chromium.get_log("performance")  # what the browser did before this page is not the page's
    chromium.get_log("browser")
    assert open_report(chromium, page) == "rendered"
    urls = requested_urls(chromium)
    assert [u for u in urls if not u.startswith(("file:", "data:"))] == []
    assert page.resolve().as_uri() in urls
    assert console_errors(chromium) == []

    assert chromium.execute_script(COUNT_MARKS, "timeline", "client_bars_marks") == clients
    bars = chromium.find_elements(By.CSS_SELECTOR, "#chart-timeline g.client_bars_marks > path")
    assert len(bars) == clients
    for chart in ("throughput", "top_clients", "control"):
        assert chromium.find_elements(By.CSS_SELECTOR, f"#chart-{chart} svg"), chart

    busiest = max(stats["sessions"], key=lambda s: s["bytes_in"] + s["bytes_out"])
    row = next(i for i, c in enumerate(sorted(stats["sessions"], key=lambda s: (s["tunnel"], s["start"])))
               if c is busiest)
    ActionChains(chromium).move_to_element(bars[row]).perform()
    tooltip = WebDriverWait(chromium, 10).until(
        lambda b: next(iter(b.find_elements(By.CSS_SELECTOR, "#vg-tooltip-element.visible")), None))
    text = tooltip.text
    for fact in (busiest["client"], busiest["name"], busiest["service"], f"{busiest['bytes_out']:,}",
                 busiest["ended_by"], "packets", "#"):
        assert fact in text, (fact, text)

    table = chromium.find_element(By.ID, "clients-table")
    header = table.find_elements(By.TAG_NAME, "th")[4]  # bytes from client
    header.click()
    header.click()
    time.sleep(0.1)
    first_row = table.find_element(By.CSS_SELECTOR, "tbody tr td:nth-child(5)").get_attribute("data-sort")
    assert int(first_row) == max(s["bytes_in"] for s in stats["sessions"])
    assert console_errors(chromium) == []

    # the wheel zooms the time axis, a drag pans it
    domain = "return mproxyViews.timeline.scale('x').domain()"
    start, end = chromium.execute_script(domain)
    plot = chromium.find_element(By.CSS_SELECTOR, "#chart-timeline svg")
    ActionChains(chromium).scroll_from_origin(ScrollOrigin.from_element(plot), 0, -300).perform()
    zoomed = WebDriverWait(chromium, 10).until(lambda b: b.execute_script(domain) != [start, end] and
                                                b.execute_script(domain))
    assert start <= zoomed[0] < zoomed[1] <= end and zoomed[1] - zoomed[0] < (end - start) * 0.9
    ActionChains(chromium).move_to_element(plot).click_and_hold().move_by_offset(150, 0).release().perform()
    panned = WebDriverWait(chromium, 10).until(lambda b: b.execute_script(domain) != zoomed and
                                                b.execute_script(domain))
    assert panned[0] < zoomed[0] and panned[1] - panned[0] == pytest.approx(zoomed[1] - zoomed[0])
    assert console_errors(chromium) == []

    shot = tmp_path / f"{capture}.png"
    full_page_screenshot(chromium, shot)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 50000


def test_empty_report_in_chromium(chromium, tmp_path):
    from tunnel_capture import write_pcap

    page = tmp_path / "empty.html"
    assert mproxy("report", str(write_pcap(tmp_path / "empty.pcap")), "-o", str(page)).returncode == 0
    chromium.get_log("browser")
    assert open_report(chromium, page) == "none"
    assert "holds no TCP packets" in chromium.find_element(By.ID, "empty").text
    assert console_errors(chromium) == []


def test_thousands_of_clients_in_chromium(chromium, tmp_path):
    """Past the limit the page draws exactly the limit's worth of bars, and says how many it left out."""
    from report.many_clients import many_clients_capture

    page = tmp_path / "many.html"
    made = mproxy("report", str(many_clients_capture(tmp_path / "many.pcap", 3200)), "-o", str(page))
    assert made.returncode == 0, made.stderr
    chromium.get_log("browser")
    assert open_report(chromium, page, timeout=120) == "rendered"
    assert chromium.execute_script(COUNT_MARKS, "timeline", "client_bars_marks") == 3000
    assert "200 less busy clients are not drawn" in chromium.find_element(By.ID, "hidden-clients").text
    assert console_errors(chromium) == []


@pytest.fixture(scope="module")
def firefox():
    from report.firefox import offline_firefox

    with offline_firefox() as browser:
        yield browser


@pytest.mark.parametrize("capture", ["websocket.pcap", "impaired.pcap"])
def test_report_in_firefox(firefox, capture, tmp_path):
    """The same page in Firefox ESR: drawn, offline, no console error, one bar per tunneled client."""
    page = tmp_path / "report.html"
    assert mproxy("report", str(CAPTURES / capture), "-o", str(page)).returncode == 0
    clients = len(json.loads(mproxy("stats", "--json", str(CAPTURES / capture)).stdout)["sessions"])
    firefox.open(page.resolve().as_uri())
    assert firefox.wait_for("document.body.dataset.charts") == "rendered"
    assert firefox.evaluate("document.querySelectorAll('#chart-timeline g.client_bars_marks > path').length") == clients
    assert firefox.evaluate(f"{MARK_COUNTER}('timeline', 'client_bars_marks')") == clients
    assert [u for u in firefox.requests() if not u.startswith(("file:", "data:"))] == []
    assert firefox.console_errors() == []

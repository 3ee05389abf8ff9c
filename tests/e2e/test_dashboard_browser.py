"""The Dashboard page in a real headless browser (Debian's chromium + chromedriver, selenium),
over the whole line under the local runtime (every component as ggc_user when root): camera
images dropped into the inbox appear live, an operator's feedback reaches the local bucket with
the label drawn, and the table's filters and paging work.

With VQI_DASHBOARD_SCREENSHOTS=<folder> the browser's screenshots are written there (the README's
images come from `VQI_DASHBOARD_SCREENSHOTS=components/dashboard/docs`)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from vqitools.demo import dashboard_url

from .line import build_components, by_image, drop, running_graph

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
BUCKET = "vqi-review-local"  # scripts/sites/local.yaml


def browser_or_reason() -> str:
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (requirements-dev.txt)"
    if not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)):
        return "Debian's chromium and chromium-driver are not installed (scripts/test does it)"
    return ""


@pytest.fixture(scope="module")
def line(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    reason = browser_or_reason()
    if reason:
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    build_components()
    root = tmp_path_factory.mktemp("dash") / "root"
    with socket.socket() as probe:  # a fixed port, as on a device: a restart comes back on it
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with running_graph(root, {"com.example.vqi.Dashboard": {"Port": port}}) as graph:
        yield graph


@pytest.fixture(scope="module")
def browser(line: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    # a profile pytest removes, instead of one chromium would leave in /tmp
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium')}")
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                "--window-size=1440,1000", "--disable-gpu"):
        options.add_argument(arg)
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    driver.set_page_load_timeout(30)
    try:
        driver.get(dashboard_url(line.root))
        until(lambda: driver.find_element("id", "live-state").text == "live", 20,
              "the live stream to connect")
        yield driver
    finally:
        driver.quit()


def until(condition: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = condition()
            if value:
                return value
        except Exception as exc:  # the element is not there yet
            last = exc
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what} ({last})")


def screenshot(driver: Any, name: str) -> None:
    folder = os.environ.get("VQI_DASHBOARD_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(Path(folder) / name))


def live_ids(driver: Any) -> list:
    return [e.get_attribute("data-image-id")
            for e in driver.find_elements("css selector", "#live .live-row")]


@pytest.mark.timeout(1800)
def test_dropped_images_appear_in_the_live_stream_without_a_reload(line: Any,
                                                                   browser: Any) -> None:
    browser.execute_script("window.__notReloaded = true")
    names = drop(line.root / "inbox", "live")
    until(lambda: len(live_ids(browser)) >= len(names), 60, "every dropped image, live")
    assert browser.execute_script("return window.__notReloaded") is True
    stats = browser.execute_script("return window.__vqi")
    assert stats["events"] >= len(names) and stats["rendered"] >= len(names)
    until(lambda: browser.find_elements("css selector", "#defects .defect img"), 20,
          "the latest defect images")
    until(lambda: all(browser.execute_script("return arguments[0].naturalWidth", img) > 0
                      for img in browser.find_elements("css selector", "#defects .defect img")),
          20, "the defect images to load")
    boxes = browser.find_elements("css selector", "#defects .defect .box.model")
    assert boxes, "the model's boxes are drawn on the defect images"
    until(lambda: browser.find_element("id", "kpi-total").text == str(len(names)), 20,
          "the counts to follow")
    refused = [entry["message"] for entry in browser.get_log("browser")
               if "Content Security Policy" in entry["message"]]
    assert not refused, refused  # the page needs nothing its own policy forbids
    screenshot(browser, "dashboard.png")


def test_the_dashboard_runs_as_the_component_user(line: Any) -> None:
    import pwd

    _state, pid = line.state("com.example.vqi.Dashboard")
    uid = int(next(row for row in Path(f"/proc/{pid}/status").read_text().splitlines()
                   if row.startswith("Uid:")).split()[1])
    expected = "ggc_user" if os.geteuid() == 0 else pwd.getpwuid(os.geteuid()).pw_name
    assert pwd.getpwuid(uid).pw_name == expected


@pytest.mark.timeout(600)
def test_a_missed_defect_drawn_by_the_operator_reaches_the_bucket(line: Any,
                                                                  browser: Any) -> None:
    from selenium.webdriver.common.action_chains import ActionChains

    browser.find_element("id", "f-refresh").click()
    row = until(lambda: browser.find_element(
        "css selector", "#table tr.row"), 30, "the results table")
    image_id = row.get_attribute("data-image-id")
    row.click()
    until(lambda: browser.find_element("css selector", "#detail .frame.big img"), 20,
          "the result's image")
    browser.find_element("id", "fb-missed").click()
    frame = browser.find_element("css selector", "#detail .frame.big")
    width, height = frame.size["width"], frame.size["height"]
    # from (20 %, 30 %) to (50 %, 45 %) of the image, measured from its centre
    ActionChains(browser).move_to_element_with_offset(frame, int(-0.3 * width),
                                                      int(-0.2 * height)) \
        .click_and_hold().move_by_offset(int(0.3 * width), int(0.15 * height)).release() \
        .perform()
    until(lambda: "1 box" in browser.find_element("id", "fb-send-missed").text, 10,
          "the drawn box")
    screenshot(browser, "feedback.png")
    browser.find_element("id", "fb-send-missed").click()
    until(lambda: "sent" in browser.find_element("id", "fb-sent").text, 20, "the confirmation")

    feedback = line.root / "cloud" / "s3" / BUCKET / "vqi" / "review" / "feedback"
    label = until(lambda: next(iter(feedback.rglob(f"{image_id}.label.txt")), None), 60,
                  "the operator's label in the local bucket")
    drawn = label.read_text().splitlines()[-1].split()
    assert drawn[0] == "0"
    cx, cy, w, h = map(float, drawn[1:])
    assert cx == pytest.approx(0.35, abs=0.03) and cy == pytest.approx(0.375, abs=0.03)
    assert w == pytest.approx(0.30, abs=0.03) and h == pytest.approx(0.15, abs=0.03)
    sent = json.loads(label.with_name(f"{image_id}.json").read_text())
    assert sent["label"] == "missed_defect" and sent["result"]["image_id"] == image_id
    assert label.with_name(f"{image_id}.prelabel.txt").exists()
    assert label.with_name(f"{image_id}.jpg").stat().st_size > 0
    browser.find_element("css selector", "#detail .close").click()


@pytest.mark.timeout(900)
def test_the_table_filters_by_verdict_and_pages(line: Any, browser: Any) -> None:
    from selenium.webdriver.support.ui import Select

    names = drop(line.root / "inbox", "more")
    until(lambda: len(live_ids(browser)) >= 2 * len(names), 60, "the second batch, live")
    browser.find_element("id", "f-refresh").click()
    until(lambda: f"({2 * len(names)} results)" in browser.find_element("id", "p-status").text,
          20, "every result in the table")
    Select(browser.find_element("id", "f-verdict")).select_by_visible_text("DEFECT")
    until(lambda: "(12 results)" in browser.find_element("id", "p-status").text, 20,
          "the DEFECT filter")  # 6 defective samples, dropped twice
    verdicts = {e.text for e in browser.find_elements("css selector", "#table tr.row .verdict")}
    assert verdicts == {"DEFECT"}
    Select(browser.find_element("id", "f-size")).select_by_visible_text("10")
    until(lambda: browser.find_element("id", "p-status").text == "page 1 of 2 (12 results)",
          20, "two pages of ten")
    first = [e.get_attribute("data-image-id")
             for e in browser.find_elements("css selector", "#table tr.row")]
    browser.find_element("id", "p-next").click()
    until(lambda: browser.find_element("id", "p-status").text.startswith("page 2 of 2"), 20,
          "the second page")
    second = [e.get_attribute("data-image-id")
              for e in browser.find_elements("css selector", "#table tr.row")]
    assert len(first) == 10 and len(second) == 2 and not set(first) & set(second)
    screenshot(browser, "results.png")
    Select(browser.find_element("id", "f-verdict")).select_by_visible_text("OK")
    until(lambda: "(8 results)" in browser.find_element("id", "p-status").text, 20,
          "the OK filter")


@pytest.mark.timeout(600)
def test_after_the_dashboard_restarts_the_open_page_reconnects_and_still_sends(
        line: Any, browser: Any) -> None:
    import signal

    _state, pid = line.state("com.example.vqi.Dashboard")
    os.kill(pid, signal.SIGKILL)  # the nucleus restarts it: new process, new CSRF token
    until(lambda: line.state("com.example.vqi.Dashboard")[0] == "RUNNING"
          and line.state("com.example.vqi.Dashboard")[1] not in (None, pid), 120,
          "the Dashboard restarted")
    until(lambda: browser.find_element("id", "live-state").text == "live", 60,
          "the page to reconnect")
    names = drop(line.root / "inbox", "after")
    until(lambda: set(live_ids(browser)) >= set(by_name(line.root, names)), 60,
          "results after the restart, live")
    browser.find_element("id", "f-refresh").click()
    row = until(lambda: browser.find_element("css selector", "#table tr.row"), 30, "a row")
    image_id = row.get_attribute("data-image-id")
    row.click()
    until(lambda: browser.find_element("id", "fb-confirm").is_enabled(), 20, "the buttons")
    browser.find_element("id", "fb-confirm").click()  # with the old page's CSRF token first
    until(lambda: "Confirm sent" in browser.find_element("id", "fb-sent").text, 20,
          "the confirmation")
    feedback = line.root / "cloud" / "s3" / BUCKET / "vqi" / "review" / "feedback"
    until(lambda: next(iter(feedback.rglob(f"{image_id}.label.txt")), None), 60,
          "the confirmation in the local bucket")


def by_name(root: Path, names: list) -> list:
    """The image ids Kinesis received for these camera files."""
    found = by_image(root)
    return [found[n]["image_id"] for n in names if n in found]

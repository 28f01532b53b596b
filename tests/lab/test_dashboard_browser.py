"""The dashboard (``/``) in a real browser: Debian's chromium and chromedriver, driven by Selenium,
against a lab daemon with default settings (plus capacities and an API token file).

The daemon runs in the lab's router namespace, the browser in the host namespace: the page is
reached through `pathsteer_lab.http.Forwarder` (127.0.0.1:<free port> → the API's Unix socket,
a file the host reaches). The test opens the page, sees the lab's 3 paths and the routes, cuts
the path that carries the route and, without a reload, sees that path DOWN and the reroute in the
timeline and in the route's row within 2 s; then drains a path through the page (a wrong token
first: the page says so and asks again). The browser console must hold no error besides the
403 the wrong token was answered with.

A screenshot goes into the test's tmp_path; with ``PATHSTEER_SCREENSHOT=1`` it is also copied
to docs/dashboard.png (the README shows it; the run then plays four minutes of load and a
lossy path first, so that the charts have something to draw)."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time

import pytest

import pathsteer_lab as lab
from pathsteer_lab import measure
from pathsteer_lab.http import Forwarder
from pathsteer_lab.labconfig import lab_config
from pathsteer_lab.labrun import LabDaemon

pytestmark = pytest.mark.lab

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
PREFIX = "198.51.100.0/24"
SERVER = "198.51.100.10"
TOKEN = "dashboard-lab-token-0123456789abcdef"
CAPACITIES = {"p1": "100mbit", "p2": "50mbit", "p3": "50mbit"}
DOCS_PNG = os.path.join(os.path.dirname(__file__), "..", "..", "docs", "dashboard.png")

# What the page shows, read in one round trip (a poll every 20 ms stays cheap).
PAGE_STATE = """
const q = (s) => document.querySelector(s);
const row = [...document.querySelectorAll('#routes tbody tr')].find((tr) => tr.dataset.prefix === arguments[0]);
return {
  conn: q('#conn').dataset.state,
  paths: Object.fromEntries([...document.querySelectorAll('#paths .path')].map(
      (c) => [c.dataset.path, c.querySelector('.state').textContent])),
  util: [...document.querySelectorAll('#paths .util-text')].map((e) => e.textContent),
  via: row ? row.querySelector('td.via').textContent : null,
  routes: document.querySelectorAll('#routes tbody tr[data-prefix]').length,
  events: [...document.querySelectorAll('#events li')].slice(0, 20).map(
      (li) => [li.dataset.name, li.querySelector('.text').textContent]),
  marker: window.__notReloaded === true,
};
"""


@pytest.fixture
def browser(tmp_path):
    if not (os.access(CHROMIUM, os.X_OK) and os.access(CHROMEDRIVER, os.X_OK)):
        pytest.skip(f"needs {CHROMIUM} and {CHROMEDRIVER} (Debian: chromium chromium-driver)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                f"--user-data-dir={tmp_path / 'chromium'}", "--window-size=1280,900", "--lang=en-US"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = Service(CHROMEDRIVER, log_output=str(tmp_path / "chromedriver.log"))
    driver = webdriver.Chrome(service=service, options=options)   # starts chromedriver and chromium
    try:
        driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                               {"width": 1280, "height": 900, "deviceScaleFactor": 1, "mobile": False})
        yield driver
    finally:
        driver.quit()                  # ends chromium, then chromedriver (service.stop)


def wait_for(what: str, fn, timeout: float, interval: float = 0.02):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"{what} not within {timeout:g} s; last: {last!r}")


def severe(driver) -> list[dict]:
    return [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]


@pytest.fixture
def daemon(lab3, tmp_path):
    """The lab's daemon: defaults, the paths' capacities, and a token for writes."""
    t = lab3
    for name, delay in (("p1", "1ms"), ("p2", "10ms"), ("p3", "20ms")):
        lab.set_path(t.name, name, delay=delay)
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    os.chmod(token_file, 0o600)
    cfg = lab_config(t, socket=f"/run/pathsteer/{t.name}-steer.sock", capacities=CAPACITIES)
    cfg["api"] = {"token_file": str(token_file)}
    d = LabDaemon(t, cfg, str(tmp_path))
    try:
        yield t, d.start()
    finally:
        d.kill()


def story_for_the_screenshot(t, stack: contextlib.ExitStack) -> None:
    """Four minutes for the charts to show: some load on the path in use, and a lossy,
    jittery half-minute on p3."""
    stack.enter_context(measure.IperfServer(t))
    load = t.popen("client", ["iperf3", "-c", SERVER, "-t", "300", "-b", "12M", "-P", "1"],
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    stack.callback(lambda: (load.kill(), load.wait()))
    time.sleep(90)
    lab.set_path(t.name, "p3", loss="8%", jitter="6ms")
    time.sleep(30)
    lab.set_path(t.name, "p3", loss=0, jitter=0)
    time.sleep(110)


def test_dashboard_shows_the_paths_routes_and_a_reroute_live(daemon, browser, tmp_path):
    from selenium.webdriver.common.by import By

    t, d = daemon
    d.wait_via(PREFIX, "p1", timeout=10)
    screenshot = os.environ.get("PATHSTEER_SCREENSHOT") == "1"

    with contextlib.ExitStack() as stack:
        fwd = stack.enter_context(Forwarder(d.api_socket))
        browser.get(fwd.url + "/")
        state = lambda: browser.execute_script(PAGE_STATE, PREFIX)  # noqa: E731
        first = wait_for("the page live with 3 paths and the route via p1", lambda: (
            (s := state())["conn"] == "live" and sorted(s["paths"]) == ["p1", "p2", "p3"]
            and s["paths"]["p1"] == "UP" and s["via"] == "p1" and s["routes"] >= 2) and s, timeout=15)
        print(f"page: {first['paths']}, {first['routes']} routes, {PREFIX} via {first['via']}, "
              f"utilisation {first['util']}")
        assert all("Mbit/s" in u for u in first["util"]), first["util"]
        assert browser.find_element(By.ID, "guard-section").get_attribute("hidden") is not None, \
            "no guard in this daemon: its panel is hidden"
        if screenshot:
            story_for_the_screenshot(t, stack)
        browser.execute_script("window.__notReloaded = true;")

        cut = time.time()
        lab.set_path(t.name, "p1", down=True)
        down = wait_for("p1 DOWN on the page", lambda: state()["paths"].get("p1") == "DOWN" and time.time(), 5)
        rerouted = wait_for("the reroute in the timeline and the row", lambda: (
            (s := state())["via"] == "p2" and any(n == "steer.change" and PREFIX in x and "p1 → p2" in x
                                                  for n, x in s["events"])) and time.time(), 5)
        after = state()
        print(f"after the cut: p1 DOWN on the page at {down - cut:.3f} s, the reroute at {rerouted - cut:.3f} s")
        assert after["marker"], "the page reloaded"
        assert down - cut < 2.0 and rerouted - cut < 2.0
        assert any(n == "path.state" and x.startswith("p1: ") and x.endswith("→ down")
                   for n, x in after["events"]), after["events"]
        errors = severe(browser)
        assert not errors, errors

        time.sleep(3 if screenshot else 1)
        browser.save_screenshot(str(tmp_path / "dashboard.png"))
        if screenshot:
            shutil.copyfile(tmp_path / "dashboard.png", DOCS_PNG)

        # a write through the page: a wrong token is refused (403), the page asks again
        browser.find_element(By.ID, "token-button").click()          # "Set token"
        wait_for("the token dialog", lambda: browser.find_element(By.ID, "token-dialog").get_attribute("open"), 3)
        browser.find_element(By.ID, "token-input").send_keys("wrong-token")
        browser.find_element(By.ID, "token-ok").click()
        assert browser.find_element(By.ID, "token-button").text == "Token set"
        browser.find_element(By.CSS_SELECTOR, '#paths [data-path="p3"] button.drain').click()
        wait_for("the drain dialog", lambda: browser.find_element(By.ID, "drain-dialog").get_attribute("open"), 3)
        browser.find_element(By.ID, "drain-reason").send_keys("fibre work")
        browser.find_element(By.CSS_SELECTOR, '#drain-form button[value="ok"]').click()
        wait_for("the token dialog", lambda: browser.find_element(By.ID, "token-dialog").get_attribute("open"), 5)
        said = browser.find_element(By.ID, "token-error").text
        assert "refused the token (403)" in said, said
        browser.find_element(By.ID, "token-input").send_keys(TOKEN)
        browser.find_element(By.ID, "token-ok").click()
        wait_for("p3 DRAINED on the page", lambda: state()["paths"].get("p3") == "DRAINED", 5)
        assert "fibre work" in browser.find_element(By.CSS_SELECTOR, '[data-path="p3"] .drain-note').text
        assert d.http("GET", "/api/v1/paths/p3")[1]["drained"]["reason"] == "fibre work"
        browser.find_element(By.CSS_SELECTOR, '#paths [data-path="p3"] button.drain').click()   # Undrain
        wait_for("p3 back", lambda: state()["paths"].get("p3") in ("UP", "DEGRADED"), 5)
        errors = severe(browser)
        assert len(errors) == 1 and "/drain" in errors[0]["message"] and "403" in errors[0]["message"], errors

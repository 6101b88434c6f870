"""report.html in a real headless Chromium (Debian's `chromium` + `chromium-driver`, driven by selenium).

The page is loaded from `file://` exactly as a user opens it; the tests check the DOM (images load,
filters and search change the visible rows, sort orders them, pages stay at 50 rows with 10,000 pairs),
that hostile text stays text, and that the console shows no error. A screenshot is kept in each test's
tmp folder. `scripts/test.sh` installs the browser when it is missing; without it these tests fail
(they never skip silently) unless IEB_SKIP_BROWSER=1 is set on purpose.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import pytest

from tests.conftest import EVIL_TEXT

CHROMIUM = os.environ.get("IEB_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("IEB_CHROMEDRIVER", "/usr/bin/chromedriver")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--window-size=1280,1600")


@pytest.fixture(scope="module")
def browser():
    if os.environ.get("IEB_SKIP_BROWSER") == "1":
        pytest.skip("IEB_SKIP_BROWSER=1")
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not Path(p).is_file()]
    assert not missing, (f"{', '.join(missing)} not found: run the tests with scripts/test.sh, which installs "
                         "Debian's chromium and chromium-driver (or set IEB_SKIP_BROWSER=1 to skip on purpose)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="ieb-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def open_page(driver, path: Path) -> None:
    driver.get_log("browser")  # drop what earlier pages logged
    driver.get(path.resolve().as_uri())
    driver.execute_script("return document.readyState")


def console_errors(driver) -> list[dict]:
    return [e for e in driver.get_log("browser") if e["level"] in ("SEVERE", "ERROR")]


def rows(driver) -> list[dict]:
    return driver.execute_script("""
        return Array.from(document.querySelectorAll('#rows article.pair')).map(a => ({
          id: a.dataset.pairId, status: a.dataset.status, category: a.dataset.category,
          score: a.querySelector('.score') ? parseFloat(a.querySelector('.score').textContent) : null,
          images: Array.from(a.querySelectorAll('img')).map(i => ({
            role: i.closest('figure').className, src: i.getAttribute('src'),
            loaded: i.complete && i.naturalWidth > 0}))}));""")


def choose(driver, select_id: str, value: str) -> None:
    driver.execute_script("const s = document.getElementById(arguments[0]); s.value = arguments[1];"
                          "s.dispatchEvent(new Event('change'));", select_id, value)


def search(driver, text: str) -> None:
    driver.execute_script("const s = document.getElementById('f-search'); s.value = arguments[0];"
                          "s.dispatchEvent(new Event('input'));", text)


def wait_images(driver, timeout: float = 10.0) -> None:
    """Scroll every image into view (they are lazy) and wait until all have loaded or failed."""
    driver.execute_script("document.querySelectorAll('#rows img').forEach(i => i.loading = 'eager');")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if driver.execute_script("return Array.from(document.querySelectorAll('#rows img')).every(i => i.complete)"):
            return
        time.sleep(0.1)


def test_gallery_page_in_chromium(browser, gallery_run, tmp_path):
    report = json.loads((gallery_run / "report.json").read_text(encoding="utf-8"))
    pairs = report["pairs"]
    open_page(browser, gallery_run / "report.html")
    assert browser.execute_script("return document.documentElement.lang") == "zh-CN"  # Chinese categories

    # first page: every pair (fewer than 50), originals and edits side by side, every image loads
    wait_images(browser)
    shown = rows(browser)
    assert [r["id"] for r in shown] == [p["pair_id"] for p in pairs]
    by_id = {r["id"]: r for r in shown}
    scored = next(p for p in pairs if p["status"] == "scored")
    roles = [i["role"] for i in by_id[scored["pair_id"]]["images"]]
    assert roles == ["img-original", "img-edited"]
    assert all(i["loaded"] for r in shown for i in r["images"]), [r for r in shown if not all(
        i["loaded"] for i in r["images"])]
    assert all(i["src"].startswith("thumbs/") for r in shown for i in r["images"])
    assert [i["role"] for i in by_id["ref-1"]["images"]] == ["img-original", "img-edited", "img-reference"]
    assert by_id["bad-b64"]["images"] == []  # invalid input: placeholders, no broken images

    # hostile text is shown as text, and no injected element exists
    evil = browser.execute_script("return Array.from(document.querySelectorAll('#rows article')).find("
                                  "a => a.dataset.pairId === '../../evil').querySelector('.instruction').textContent")
    assert evil.endswith(EVIL_TEXT)
    assert browser.execute_script("return document.querySelectorAll('script').length") == 2
    assert browser.execute_script("return typeof window.alert") == "function"

    # the status filter shows exactly the pairs with that status
    for status in ("scored", "edit_failed", "score_failed", "invalid_input"):
        choose(browser, "f-status", status)
        assert sorted(r["id"] for r in rows(browser)) == sorted(p["pair_id"] for p in pairs
                                                                if p["status"] == status), status
    failed = rows(browser)
    choose(browser, "f-status", "edit_failed")
    err = browser.execute_script("return document.querySelector('#rows article .error').textContent")
    assert "injected edit failure" in err
    choose(browser, "f-status", "")

    # category filter, then search within it
    categories = list(report["categories"])
    choose(browser, "f-category", str(categories.index("环境")))
    assert {r["category"] for r in rows(browser)} == {"环境"}
    assert len(rows(browser)) == report["categories"]["环境"]["pairs"]
    choose(browser, "f-category", "")
    search(browser, "天空")
    assert [r["id"] for r in rows(browser)] == ["ref-1"]
    search(browser, "")

    # sort by score: scored pairs high to low, unscored last; and low to high
    choose(browser, "f-sort", "desc")
    got = [r["score"] for r in rows(browser)]
    expected = sorted((p["score"] for p in pairs if p["status"] == "scored"), reverse=True)
    assert got[:len(expected)] == pytest.approx(expected, abs=0.0051)
    assert all(s is None for s in got[len(expected):])
    choose(browser, "f-sort", "asc")
    assert [r["score"] for r in rows(browser)][:len(expected)] == pytest.approx(sorted(expected), abs=0.0051)
    choose(browser, "f-sort", "plan")

    # a click on a thumbnail opens the full image
    browser.execute_script("document.querySelector('#rows a.full').click()")
    assert browser.execute_script("return document.getElementById('lightbox').classList.contains('open')")
    full = browser.execute_script("return document.querySelector('#lightbox img').src")
    assert "/images/" in full or "/originals/" in full
    browser.execute_script("document.getElementById('lightbox').click()")

    # the charts are inline SVG: one bar per category, 10 histogram bins
    assert browser.execute_script("return document.querySelectorAll('#chart-categories g.cat-bar').length") == \
        len(categories)
    assert browser.execute_script("return document.querySelectorAll('#chart-histogram g.hist-bin').length") == 10
    assert console_errors(browser) == []
    assert failed  # the score_failed filter above was not empty
    shot = tmp_path / "gallery.png"
    browser.save_screenshot(str(shot))
    assert shot.stat().st_size > 10_000


def test_ten_thousand_pairs_stay_paginated(browser, tmp_path):
    """10,000 pairs: one page of 50 cards is rendered, filters and pages answer quickly."""
    from src.report import write_html
    from tests.test_gallery import synthetic_report

    report = synthetic_report(10_000)
    html = tmp_path / "report.html"
    write_html(report, {"r": report, "failures": []}, html, tmp_path)
    assert html.stat().st_size < 15_000_000
    t0 = time.monotonic()
    open_page(browser, html)
    assert len(rows(browser)) == 50
    load_s = time.monotonic() - t0
    t0 = time.monotonic()
    choose(browser, "f-status", "score_failed")
    n_failed = sum(p["status"] == "score_failed" for p in report["pairs"])
    info = browser.find_element("id", "page-info").text
    assert f"/ {n_failed} (10000)" in info, info
    choose(browser, "f-status", "")
    choose(browser, "f-sort", "desc")
    top = rows(browser)[0]["score"]
    assert top == pytest.approx(max(p["score"] for p in report["pairs"] if p["score"] is not None), abs=0.0051)
    browser.find_element("id", "next").click()
    assert rows(browser)[0]["id"] != rows(browser)[-1]["id"] and len(rows(browser)) == 50
    interact_s = time.monotonic() - t0
    assert load_s < 20 and interact_s < 10, (load_s, interact_s)  # generous: a shared 2-core machine
    assert console_errors(browser) == []
    browser.save_screenshot(str(tmp_path / "ten_thousand.png"))

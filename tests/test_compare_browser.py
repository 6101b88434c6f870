"""compare.html in a real headless Chromium (the `browser` fixture of tests/test_browser.py): images load,
the filters change the visible rows, the console shows no error; a screenshot is kept in tmp_path."""

from __future__ import annotations

from src.cli import main
from tests.run_records import write_run
from tests.test_browser import browser, console_errors, open_page  # noqa: F401  (browser is a fixture)
from tests.test_compare import A_SCORES, B_SCORES


def visible(driver) -> list[dict]:
    return driver.execute_script("""
        return Array.from(document.querySelectorAll('#pairs tr.pair')).filter(tr => tr.style.display !== 'none')
          .map(tr => ({text: tr.dataset.text, images: Array.from(tr.querySelectorAll('img')).map(
            i => i.complete && i.naturalWidth > 0)}));""")


def test_compare_page_in_chromium(browser, tmp_path):  # noqa: F811
    write_run(tmp_path / "runs" / "A", A_SCORES)
    write_run(tmp_path / "runs" / "B", B_SCORES)
    out = tmp_path / "cmp"
    assert main(["compare", str(tmp_path / "runs"), "--out", str(out), "--n-resamples", "100"]) == 0
    open_page(browser, out / "compare.html")
    shown = visible(browser)
    assert len(shown) == 6
    assert sum(len(r["images"]) for r in shown) == 11 and all(all(r["images"]) for r in shown)  # c1 failed in B
    browser.execute_script("const s = document.getElementById('f-category'); s.value = '因果';"
                           "s.dispatchEvent(new Event('change'));")
    assert len(visible(browser)) == 4
    browser.execute_script("document.getElementById('f-common').click();")
    assert [r["text"].split()[0] for r in visible(browser)] == ["c2", "c3", "c4"]
    browser.execute_script("const q = document.getElementById('f-search'); q.value = 'C4';"
                           "q.dispatchEvent(new Event('input'));")
    assert [r["text"].split()[0] for r in visible(browser)] == ["c4"]
    assert browser.find_element("id", "f-count").text == "1 / 6 个样本对"  # Chinese categories: Chinese labels
    assert browser.execute_script("return document.documentElement.lang") == "zh"
    assert console_errors(browser) == []
    browser.save_screenshot(str(tmp_path / "compare.png"))

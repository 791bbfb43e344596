"""The report pages in a real browser (headless Chromium): the DOM holds the sections, flags and
images, the inline sort code runs, and no request leaves the page (network names resolve nowhere
and the net log holds only file: and data: URLs).

Skipped only when Chromium is absent and the CI variable is unset; on CI a missing browser fails.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from test_report_pages import _background, _run_case, _two_tumours

from gliocascade.report import build_report


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    if os.environ.get("CI"):
        pytest.fail("CI is set but no chromium on PATH (apt-get install -y chromium)")
    pytest.skip("chromium not installed (apt-get install -y chromium)")


def _browse(page: Path, tmp: Path, *extra: str, query: str = "") -> tuple[str, list[str]]:
    """The DOM after the page's scripts ran, and the URLs of the requests the page made."""
    netlog = tmp / f"net-{len(list(tmp.glob('net-*')))}.json"
    cmd = [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={tmp / 'profile'}", "--host-resolver-rules=MAP * ~NOTFOUND",
           f"--log-net-log={netlog}", *extra, page.as_uri() + query]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout, page_requests(netlog)


def page_requests(netlog: Path) -> list[str]:
    """URLs of network requests a page started (the browser's own update and time checks have no origin)."""
    doc = json.loads(netlog.read_text())
    start = doc["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
    jobs = [e.get("params", {}) for e in doc["events"] if e["type"] == start]
    return [p["url"] for p in jobs if "url" in p and p.get("initiator") != "not an origin"]


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    """A four-case report: a clean case, an empty one, one with a reference, one that failed."""
    root = tmp_path_factory.mktemp("browser")
    run = root / "run"
    labels = _two_tumours()
    bg = _background(labels.shape)
    _run_case(run, "caseA", labels, bg, reference=np.roll(labels, 2, axis=0))
    _run_case(run, "caseB", np.zeros_like(labels), bg, reference=labels)
    _run_case(run, "caseC", labels, bg, reference=labels)
    build_report(sorted(run.glob("*/*_metrics.csv")), root / "rep", run, failures=[("caseD", "predict: out of memory")])
    return root / "rep"


def test_cohort_page_in_a_browser_sorts_and_stays_offline(report, tmp_path):
    dom, urls = _browse(report / "report.html", tmp_path, "--dump-dom", query="?sort=dice_WT&desc=1")
    assert "<h2>Summary</h2>" in dom and "<h2>Cases</h2>" in dom
    assert re.search(r"id=\"cases\"[^>]*data-sorted=\"dice_WT desc\"", dom), "the sort code did not run"
    order = re.findall(r"<tr id=\"(case\w)\"", dom)
    assert order[:3] == ["caseC", "caseA", "caseB"] and order[3] == "caseD"  # Dice 1, shifted, empty; no Dice last
    assert "empty prediction" in dom and "failed: predict: out of memory" in dom
    assert dom.count("thumbnail\" src=\"data:image/png") == 3
    assert urls == []

    dom_asc, _ = _browse(report / "report.html", tmp_path, "--dump-dom", query="?sort=case_id")
    assert re.findall(r"<tr id=\"(case\w)\"", dom_asc) == ["caseA", "caseB", "caseC", "caseD"]


def test_case_page_in_a_browser_shows_its_sections_and_images(report, tmp_path):
    dom, urls = _browse(report / "cases" / "caseA.html", tmp_path, "--dump-dom")
    for section in ("Segmentation", "Prediction vs reference", "Facts"):
        assert f"<h2>{section}</h2>" in dom
    assert dom.count("class=\"slice\"") == 12 + 6 + 3
    assert "HD95 WT (mm)" in dom and "not tuned" in dom
    assert urls == []


def test_the_request_check_sees_a_page_that_reaches_out(tmp_path):
    """The control: a page with one external image is caught, so an empty list above means something."""
    page = tmp_path / "leaky.html"
    page.write_text("<!DOCTYPE html><html><body><img src='http://example.invalid/x.png'></body></html>")
    _, urls = _browse(page, tmp_path, "--dump-dom")
    assert urls == ["http://example.invalid/x.png"]


def test_screenshots_are_drawn(report, tmp_path):
    """Both pages draw at 1400 px. GLIOCASCADE_SCREENSHOTS=DIR also keeps the shots there (docs/),
    taken of GLIOCASCADE_SCREENSHOT_REPORT when set: a real run's report folder, so the README shows
    what a run writes (phantom cases only: the BraTS-GLI and expert cases may not be redistributed), of
    the case GLIOCASCADE_SCREENSHOT_CASE names (default: the first)."""
    source = Path(os.environ.get("GLIOCASCADE_SCREENSHOT_REPORT") or report)
    pages = sorted((source / "cases").glob("*.html")) if source != report else [report / "cases" / "caseA.html"]
    case_page = source / "cases" / f"{os.environ['GLIOCASCADE_SCREENSHOT_CASE']}.html" \
        if source != report and os.environ.get("GLIOCASCADE_SCREENSHOT_CASE") else pages[0]
    for page in (source / "report.html", case_page):
        shot = tmp_path / f"{page.stem}.png"
        _browse(page, tmp_path, f"--screenshot={shot}", "--window-size=1400,1000", "--hide-scrollbars")
        from PIL import Image

        img = np.asarray(Image.open(shot).convert("RGB"))
        assert img.shape[1] == 1400
        assert len(np.unique(img.reshape(-1, 3), axis=0)) > 50  # text and images, not a blank page
        if os.environ.get("GLIOCASCADE_SCREENSHOTS"):  # refresh the screenshots kept under docs/
            name = "report_cohort.png" if page.name == "report.html" else "report_case.png"
            dest = Path(os.environ["GLIOCASCADE_SCREENSHOTS"]) / name
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(shot, dest)


class DevTools:
    """Chromium driven through the DevTools protocol over ``--remote-debugging-pipe`` (fds 3 and 4,
    NUL-separated JSON): layout and clicks need a live page, and no websocket package is needed."""

    def __init__(self, tmp: Path, width: int = 1400, height: int = 900):
        to_chrome, self._out = os.pipe()
        self._in, from_chrome = os.pipe()

        def child() -> None:
            os.dup2(to_chrome, 3)
            os.dup2(from_chrome, 4)

        self.proc = subprocess.Popen(
            [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--remote-debugging-pipe",
             f"--user-data-dir={tmp / 'cdp-profile'}", f"--window-size={width},{height}",
             "--host-resolver-rules=MAP * ~NOTFOUND", "about:blank"],
            pass_fds=(3, 4), preexec_fn=child, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(to_chrome)
        os.close(from_chrome)
        self._buf, self._id, self.session = b"", 0, None
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        self.session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]

    def send(self, method: str, params: dict | None = None) -> dict:
        self._id += 1
        msg = {"id": self._id, "method": method, "params": params or {}}
        if self.session:
            msg["sessionId"] = self.session
        os.write(self._out, json.dumps(msg).encode() + b"\0")
        while True:
            while b"\0" not in self._buf:
                chunk = os.read(self._in, 1 << 16)
                assert chunk, "chromium closed the DevTools pipe"
                self._buf += chunk
            raw, self._buf = self._buf.split(b"\0", 1)
            reply = json.loads(raw)
            if reply.get("id") == self._id:
                assert "error" not in reply, reply["error"]
                return reply["result"]

    def open(self, url: str) -> None:
        self.send("Page.navigate", {"url": url})
        for _ in range(100):
            if self.eval("document.readyState") == "complete":
                return
            time.sleep(0.05)
        raise AssertionError(f"{url} did not load")

    def eval(self, expression: str):
        return self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True})["result"].get("value")

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()
        os.close(self._out)
        os.close(self._in)


def test_cohort_table_fits_a_1400_px_window_and_sorts_on_click(report, tmp_path):
    _chromium()
    browser = DevTools(tmp_path)
    try:
        browser.open((report / "report.html").as_uri())
        page_width, window = browser.eval("[document.documentElement.scrollWidth, window.innerWidth]")
        assert window == 1400 and page_width <= window, page_width
        table, container = browser.eval("[document.getElementById('cases').scrollWidth,"
                                        " document.querySelector('.wrap').clientWidth]")
        assert table > container  # 23 columns: the table scrolls inside its container, the page does not
        rows = "Array.from(document.querySelectorAll('#cases tbody tr')).map(r => r.id)"
        header = "Array.from(document.querySelectorAll('#cases th')).find(h => h.dataset.col === 'dice_WT')"
        browser.eval(f"{header}.click()")
        assert browser.eval(rows) == ["caseB", "caseA", "caseC", "caseD"]  # ascending, no Dice last
        browser.eval(f"{header}.click()")
        assert browser.eval(rows) == ["caseC", "caseA", "caseB", "caseD"]
        assert browser.eval(f"{header}.getAttribute('aria-sort')") == "descending"
    finally:
        browser.close()

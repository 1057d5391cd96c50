"""The leaderboard site in a real browser: headless Chromium driven over the DevTools protocol.

Chromium speaks the protocol over a pipe (``--remote-debugging-pipe``: JSON messages separated
by NUL bytes on file descriptors 3 and 4), so no extra package is needed. Without a Chromium the
tests are skipped with the reason; ``.ci/run`` installs Debian's ``chromium``.
"""

import json
import os
import select
import shutil
import subprocess
import time

import pytest

from oltr_bench.report.collect import collect
from oltr_bench.report.rows import build_rows
from oltr_bench.report.site import build_site
from tests.report_fixtures import make_entry, make_run

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_chromium() -> str | None:
    named = os.environ.get("OLTR_BENCH_CHROMIUM")
    if named:
        return named
    for name in CANDIDATES:
        if shutil.which(name):
            return shutil.which(name)
    return None


class Chromium:
    """A headless Chromium and one page, driven through the DevTools protocol over a pipe."""

    def __init__(self, executable: str, profile: str, timeout: float = 60.0):
        self.timeout = timeout
        to_browser_r, to_browser_w = os.pipe()
        from_browser_r, from_browser_w = os.pipe()

        def child_fds():  # the protocol pipe must be fds 3 (browser reads) and 4 (browser writes)
            read_end, write_end = os.dup(to_browser_r), os.dup(from_browser_w)
            os.dup2(read_end, 3)
            os.dup2(write_end, 4)

        args = [executable, "--headless", "--remote-debugging-pipe", "--disable-gpu", "--no-first-run",
                "--no-default-browser-check", "--disable-extensions", "--window-size=1600,1000", f"--user-data-dir={profile}"]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            args.append("--no-sandbox")  # Chromium refuses to run as root with its sandbox
        self.process = subprocess.Popen(args + ["about:blank"], close_fds=False, preexec_fn=child_fds,
                                        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(to_browser_r)
        os.close(from_browser_w)
        self.writer = os.fdopen(to_browser_w, "wb", buffering=0)
        self.reader = os.fdopen(from_browser_r, "rb", buffering=0)
        self.buffer = b""
        self.last_id = 0
        self.events: list[dict] = []
        target = self.send("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.send("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        for domain in ("Page", "Runtime", "Log"):
            self.send(f"{domain}.enable", page=True)

    def _message(self) -> dict:
        deadline = time.monotonic() + self.timeout
        while b"\0" not in self.buffer:
            ready, _, _ = select.select([self.reader], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                raise TimeoutError(f"Chromium sent nothing for {self.timeout} s")
            chunk = self.reader.read(1 << 16)
            if not chunk:
                raise RuntimeError(f"Chromium closed the protocol pipe (exit status {self.process.poll()})")
            self.buffer += chunk
        message, self.buffer = self.buffer.split(b"\0", 1)
        return json.loads(message)

    def send(self, method: str, page: bool = False, **params):
        self.last_id += 1
        message = {"id": self.last_id, "method": method, "params": params}
        if page:
            message["sessionId"] = self.session
        self.writer.write(json.dumps(message).encode() + b"\0")
        while True:
            reply = self._message()
            if reply.get("id") == self.last_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply["result"]
            self.events.append(reply)

    def wait_for(self, event: str) -> dict:
        while True:
            for i, message in enumerate(self.events):
                if message.get("method") == event:
                    return self.events.pop(i)
            self.events.append(self._message())

    def open(self, url: str) -> None:
        self.events = [e for e in self.events if e.get("method") != "Page.loadEventFired"]
        self.send("Page.navigate", page=True, url=url)
        self.wait_for("Page.loadEventFired")

    def eval(self, expression: str):
        result = self.send("Runtime.evaluate", page=True, expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def click(self, selector: str) -> None:
        """A real mouse click (pressed + released) at the centre of the element."""
        box = self.eval(f"(() => {{ const e = document.querySelector({json.dumps(selector)});"
                        "e.scrollIntoView({block: 'center', inline: 'center'});"
                        "const r = e.getBoundingClientRect(); return [r.x + r.width / 2, r.y + r.height / 2]; })()")
        for kind in ("mousePressed", "mouseReleased"):
            self.send("Input.dispatchMouseEvent", page=True, type=kind, x=box[0], y=box[1], button="left", clickCount=1)

    def problems(self) -> list[str]:
        """Uncaught exceptions and console errors (a CSP violation is one) seen so far."""
        out = []
        for event in self.events:
            if event.get("method") == "Runtime.exceptionThrown":
                out.append(str(event["params"]["exceptionDetails"]))
            elif event.get("method") == "Log.entryAdded" and event["params"]["entry"]["level"] == "error":
                out.append(event["params"]["entry"]["text"])
        return out

    def close(self) -> None:
        try:
            self.send("Browser.close")
        except (RuntimeError, TimeoutError, OSError):
            pass
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.writer.close()
        self.reader.close()


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    executable = find_chromium()
    if executable is None:
        pytest.skip("no Chromium found (looked for $OLTR_BENCH_CHROMIUM and " + ", ".join(CANDIDATES)
                    + " on PATH); install Debian's chromium package (apt-get install -y chromium) to run the browser tests")
    chromium = Chromium(executable, str(tmp_path_factory.mktemp("chromium-profile")))
    yield chromium
    chromium.close()


OPEN_F = {"A paper": 0.30, "B paper": None, "C paper": 0.45, "D paper": 0.10}
FPR95 = {"A paper": 0.5, "C paper": 0.2, "D paper": 0.8}
OVERVIEW_F = {"focal": 0.2, "dme": 0.5, "range": 0.3}
# Every metric of the page's groups on one row, so that the table is wider than the window.
ALL = {"top1": 0.2, "many": 0.3, "medium": 0.2, "few": 0.1, "macro_f1": 0.2, "open_top1": 0.2, "open_many": 0.3,
       "open_medium": 0.2, "open_few": 0.1, "auroc": 0.7, "aupr_in": 0.8, "aupr_out": 0.6, "oscr": 0.3, "ece": 0.05}


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    root = tmp_path_factory.mktemp("browser-site")
    for i, (name, f) in enumerate(OPEN_F.items()):
        metrics = {"top1": 0.2 + 0.1 * i} if f is None else {"top1": 0.2 + 0.1 * i, "open_f1": f}
        if name == "A paper":
            metrics = {**ALL, **metrics}
        if name in FPR95:
            metrics["fpr95"] = FPR95[name]
        make_entry(root / "lb", f"e{i}", name=name, metrics=metrics, backbone="resnet10" if i % 2 else "resnet50")
    make_entry(root / "lb", "evil", name="<script>window.pwned = 1</script>",
               notes='<img src=x onerror="window.pwned = 2">', metrics={"open_f1": 0.2})
    make_run(root / "runs", metrics={"top1": 0.5, "many": 0.6, "medium": 0.5, "few": 0.3, "open_f1": 0.25})
    for method, f in OVERVIEW_F.items():  # published results of another dataset, for the methods overview
        make_entry(root / "lb", f"in-{method}", dataset="imagenet_lt", method=method, metrics={"top1": 0.3, "open_f1": f})
    rows = build_rows(collect([root / "runs"], leaderboard_dirs=[root / "lb"]))
    build_site(rows, root / "site")
    return root / "site", rows


ROWS = "Array.from(document.querySelectorAll('table.leaderboard tbody tr'))"


def names(browser):
    return browser.eval(f"{ROWS}.map(r => r.cells[1].textContent.trim())")


def ranks(browser):
    return browser.eval(f"{ROWS}.map(r => r.cells[0].textContent.trim())")


def header(key: str) -> str:
    return f"table.leaderboard thead th[data-key={key}] button"


def test_rows_are_ranked_by_open_f_and_shown_in_rank_order(browser, site):
    path, _ = site
    browser.open((path / "toy_lt" / "index.html").as_uri())
    # Open F under the page's protocol, higher first; B paper has neither open F nor few-shot accuracy.
    assert names(browser) == ["C paper", "A paper", "plain", "<script>window.pwned = 1</script>", "D paper", "B paper"]
    assert ranks(browser) == ["1", "2", "3", "4", "5", "–"]
    assert browser.eval("document.querySelector('table.leaderboard th.rank').getAttribute('aria-sort')") == "ascending"
    assert browser.problems() == []


def test_clicking_a_column_header_sorts_the_table_in_the_metrics_direction(browser, site):
    path, _ = site
    browser.open((path / "toy_lt" / "index.html").as_uri())
    assert browser.eval(f"document.querySelector('{header('open_f1')}').textContent") == "Open F"
    browser.click(header("top1"))
    after = names(browser)
    # Descending by top-1 (higher is better).
    assert after == ["plain", "D paper", "C paper", "B paper", "A paper", "<script>window.pwned = 1</script>"]
    assert browser.eval("document.querySelector('table.leaderboard thead th[data-key=top1]').getAttribute('aria-sort')") == "descending"
    assert browser.eval("document.querySelector('table.leaderboard th.rank').getAttribute('aria-sort')") == "none"
    browser.click(header("top1"))
    assert names(browser)[:3] == ["A paper", "B paper", "C paper"]  # ascending (D and plain tie at 0.5)
    # FPR@95 is better when lower: the first click puts the lowest first (rows without one last).
    browser.click(header("fpr95"))
    assert names(browser)[:3] == ["C paper", "A paper", "D paper"]
    assert browser.eval("document.querySelector('table.leaderboard thead th[data-key=fpr95]').getAttribute('aria-sort')") == "ascending"
    browser.click("table.leaderboard thead th.name button")
    assert names(browser) == ["<script>window.pwned = 1</script>", "A paper", "B paper", "C paper", "D paper", "plain"]
    browser.click("table.leaderboard thead th.rank button")  # back to the ranking, best first
    assert ranks(browser) == ["1", "2", "3", "4", "5", "–"]
    assert browser.problems() == []


def test_percent_by_default_and_the_switch_to_fractions(browser, site):
    path, _ = site
    cell = f"{ROWS}[0].querySelector('td:nth-child(' + (1 + Array.from(document.querySelectorAll('table.leaderboard thead th')).findIndex(h => h.dataset.key === 'open_f1')) + ')').textContent.trim()"
    browser.open((path / "toy_lt" / "index.html").as_uri())
    assert browser.eval(cell) == "45.0" and browser.eval("document.querySelector('input[name=units][value=percent]').checked")
    browser.click("input[name=units][value=fraction]")
    assert browser.eval(cell) == "0.450"
    # Every number on the page follows, and the choice holds on the next page (the methods overview).
    assert browser.eval("Array.from(document.querySelectorAll('[data-pct]')).every(e => e.textContent === e.dataset.frac)")
    browser.open((path / "index.html").as_uri())
    assert browser.eval("document.querySelector('table.overview [data-pct]').textContent") == "0.500"
    browser.click("input[name=units][value=percent]")
    assert browser.eval("document.querySelector('table.overview [data-pct]').textContent") == "50.0"
    assert browser.problems() == []


def test_the_name_column_stays_in_view_while_the_metrics_scroll(browser, site):
    path, _ = site
    browser.send("Emulation.setDeviceMetricsOverride", page=True, width=1400, height=900, deviceScaleFactor=1, mobile=False)
    try:
        browser.open((path / "toy_lt" / "index.html").as_uri())
        box = "document.querySelector('.scroll')"
        assert browser.eval(f"{box}.scrollWidth > {box}.clientWidth + 200")  # the table is wider than the window
        geometry = ("(() => { const c = document.querySelector('table.leaderboard tbody td.name');"
                    "const r = c.getBoundingClientRect(); const s = document.querySelector('.scroll').getBoundingClientRect();"
                    "const hit = document.elementFromPoint(r.x + 8, r.y + r.height / 2);"
                    "return [r.left - s.left, c.contains(hit)]; })()")
        before = browser.eval(geometry)
        browser.eval(f"{box}.scrollLeft = {box}.scrollWidth")
        assert browser.eval(f"{box}.scrollLeft") > 200
        after = browser.eval(geometry)
        assert after == before and after[1] is True  # same place, on top of the scrolled cells
        # The metric columns did move.
        assert browser.eval("document.querySelector('table.leaderboard thead th[data-key=ece]').getBoundingClientRect().right <= 1400")
    finally:
        browser.send("Emulation.clearDeviceMetricsOverride", page=True)
    assert browser.problems() == []


def test_column_groups_show_and_hide(browser, site):
    path, _ = site
    browser.open((path / "toy_lt" / "index.html").as_uri())
    shown = "getComputedStyle(document.querySelector('table.leaderboard thead th[data-key=auroc]')).display !== 'none'"
    assert browser.eval(shown)
    browser.click("input[data-group=detection]")
    assert not browser.eval(shown)
    assert browser.eval("getComputedStyle(document.querySelector('table.leaderboard tbody td.g-detection')).display") == "none"
    assert browser.eval("getComputedStyle(document.querySelector('table.leaderboard thead th[data-key=open_f1]')).display") != "none"
    browser.click("input[data-group=detection]")
    assert browser.eval(shown)
    assert browser.problems() == []


def test_the_search_box_and_filters_hide_rows(browser, site):
    path, _ = site
    browser.open((path / "toy_lt" / "index.html").as_uri())
    visible = f"{ROWS}.filter(r => !r.hidden).map(r => r.cells[1].textContent.trim())"
    browser.click("input[data-search]")
    browser.send("Input.insertText", page=True, text="C PAP")
    assert browser.eval(visible) == ["C paper"]
    assert browser.eval("document.querySelector('form.filters .shown').textContent") == "1 of 6 rows"
    browser.eval("document.querySelector('input[data-search]').value = ''")
    browser.send("Input.insertText", page=True, text="resnet10")  # backbones match too
    assert browser.eval(visible) == ["plain", "<script>window.pwned = 1</script>", "D paper", "B paper"]
    browser.eval("(() => { const s = document.querySelector('select[data-filter=source]'); s.value = 'reproduced';"
                 "s.dispatchEvent(new Event('change', {bubbles: true})); })()")
    assert browser.eval(visible) == ["plain"] and browser.eval("document.querySelector('form.filters .shown').textContent") == "1 of 6 rows"
    assert browser.problems() == []


def test_strings_from_entries_never_run_and_plots_load(browser, site):
    path, rows = site
    evil = next(r for r in rows if "pwned" in r.name)
    browser.open((path / "toy_lt" / evil.slug / "index.html").as_uri())
    assert browser.eval("typeof window.pwned") == "undefined"
    assert browser.eval("document.querySelector('h1').textContent").startswith("<script>window.pwned = 1</script>")
    run = next(r for r in rows if r.kind == "run")
    browser.open((path / "toy_lt" / run.slug / "index.html").as_uri())
    time.sleep(0.5)  # lazy images
    sizes = browser.eval("Promise.all(Array.from(document.images).map(i => i.decode().then(() => i.naturalWidth, () => 0)))")
    assert len(sizes) == 6 and all(w > 0 for w in sizes)
    assert browser.eval("typeof window.pwned") == "undefined"
    assert browser.problems() == []


def test_the_methods_overview_sorts_by_a_dataset_column(browser, site):
    path, _ = site
    browser.open((path / "index.html").as_uri())
    methods = "Array.from(document.querySelectorAll('table.overview tbody tr')).map(r => r.cells[0].textContent.trim())"
    assert browser.eval(methods) == ["dme", "focal", "plain", "range"]
    header = "table.overview thead th[title='imagenet_lt, published, protocol oltr: open_f1'] button"
    browser.click(header)
    # Descending by ImageNet-LT open F; plain (only toy_lt results) last.
    assert browser.eval(methods) == ["dme", "range", "focal", "plain"]
    browser.click(header)
    assert browser.eval(methods) == ["focal", "range", "dme", "plain"]
    # A group header spans columns and does not sort.
    browser.click("table.overview thead th.group:nth-child(2)")
    assert browser.eval(methods) == ["focal", "range", "dme", "plain"]
    assert browser.problems() == []

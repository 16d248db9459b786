"""The HTML results page (``index.html``): its numbers equal the stored results, and in headless Chromium (Debian's
chromium through its chromedriver; nothing downloaded) its own controls sort by a metric and filter by a prior,
and a cell's drawer shows its loss curves and samples."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from harness.cli import main

from conftest import write_config

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
KEY = ["prior", "regularizer", "beta"]


@pytest.fixture(scope="module")
def board(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real run: gaussian, realnvp and gan priors × kl/none × two β × two seeds (gan × kl skipped)."""
    tmp = tmp_path_factory.mktemp("page")
    cfg = write_config(tmp / "b.yaml", beta=[0.1, 1.0], seeds=[0, 1],
                       priors={"gaussian": {}, "realnvp": {"depth": 2, "hidden": 16},
                               "gan": {"hidden": 16, "d_steps": 1, "noise_dim": 4}},
                       evaluators={"reconstruction": {}, "prior_fit": {}})  # fmt: skip
    out = tmp / "out"
    assert main(["run", str(cfg), "--out", str(out), "--quiet", "--device", "cpu"]) == 0
    return out


def expected_order(out: Path, metric: str, ascending: bool, prior: str | None = None) -> list[tuple[str, str, str]]:
    """(prior, regularizer, β) of each configuration measured on ``metric``, ordered by its mean over seeds,
    computed here from results.csv."""
    frame = pd.read_csv(out / "results.csv")
    frame = frame[frame["metric"] == metric]
    if prior is not None:
        frame = frame[frame["prior"] == prior]
    frame = frame.assign(beta=frame["beta"].map(lambda b: "–" if pd.isna(b) else f"{b:g}"))
    means = frame.groupby(KEY)["value"].mean().sort_values(ascending=ascending)
    return [tuple(key) for key in means.index]


def test_run_writes_the_page_beside_the_leaderboard_with_the_stored_numbers(board):
    page = (board / "index.html").read_text(encoding="utf-8")
    start = page.index('<script type="application/json" id="report-data">') + len(
        '<script type="application/json" id="report-data">')
    data = json.loads(page[start:page.index("</script>", start)])
    bench = data["benchmarks"][0]
    assert bench["name"] == "tiny" and bench["primary"] == "reconstruction.mse"
    frame = pd.read_csv(board / "results.csv")
    for config in bench["configs"]:
        for metric, (mean, _, count) in config["stats"].items():
            rows = frame[(frame["prior"] == config["prior"]) & (frame["regularizer"] == config["regularizer"])
                         & (frame["metric"] == metric)]
            rows = rows[rows["beta"].isna()] if config["beta"] == "–" else rows[rows["beta"] == float(config["beta"])]
            assert count == len(rows) == 2
            assert mean == pytest.approx(rows["value"].mean(), rel=1e-12)
    skipped = [p for p in bench["problems"] if p["status"] == "skipped"]
    assert len(skipped) == 4 and all("gan" in p["label"] and p["reason"] for p in skipped)
    assert len(bench["cells"]) == 18 and all(c["history"] for c in bench["cells"] if c["status"] == "done")
    # Nothing outside the file: no http(s) source, stylesheet or import.
    assert "src=\"http" not in page and "href=\"http" not in page and "import(\"http" not in page


def test_report_rewrites_the_page_and_a_folder_without_results_is_one_error_line(board, tmp_path, capsys):
    (board / "index.html").unlink()
    assert main(["report", str(board)]) == 0
    assert (board / "index.html").is_file() and "file://" in capsys.readouterr().out
    assert main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and str(tmp_path) in err[0]


@pytest.fixture(scope="module")
def browser() -> Any:
    if not (CHROMIUM and CHROMEDRIVER):
        pytest.skip("needs Debian's chromium and its driver: apt-get install chromium chromium-driver")
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1400,1200"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    yield driver
    driver.quit()


def _open(driver: Any, page: Path) -> None:
    driver.get(page.resolve().as_uri())
    deadline = time.monotonic() + 30
    while driver.execute_script("return document.body.dataset.ready") != "true":
        assert time.monotonic() < deadline, "the page never finished building"
        time.sleep(0.1)
    errors = [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    assert not errors, errors


def _visible_rows(driver: Any) -> list[dict[str, str]]:
    headers = [th.text.strip() for th in driver.find_elements("css selector", "table.board thead th")]
    rows = []
    for tr in driver.find_elements("css selector", "table.board tbody tr"):
        cells = [td.text.strip() for td in tr.find_elements("css selector", "td")]
        rows.append(dict(zip(headers, cells)))
    return rows


def _keys(rows: list[dict[str, str]]) -> list[tuple[str, str, str]]:
    return [(r["prior"], r["regularizer"], r["β"]) for r in rows]


def _wait_for(condition: Any, what: str, timeout: float = 15.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)
    return value


def test_the_page_sorts_by_the_chosen_metric_and_filters_by_prior_in_chromium(board, browser):
    from selenium.webdriver.support.ui import Select

    _open(browser, board / "index.html")
    rows = _visible_rows(browser)
    assert _keys(rows) == expected_order(board, "reconstruction.mse", ascending=True)  # ranked by the primary
    assert _wait_for(lambda: browser.find_elements("css selector", ".metric-chart svg, .metric-chart canvas"),
                     "the metric chart")

    # The metric picker sorts by that metric, best (lowest NLL) first; gan has no density, so no NLL: last.
    Select(browser.find_element("css selector", "select.metric-choice")).select_by_value("prior_fit.nll")
    order = _keys(_visible_rows(browser))
    measured = expected_order(board, "prior_fit.nll", ascending=True)
    assert order[:len(measured)] == measured and {k[0] for k in order[len(measured):]} == {"gan"}

    # A column header click sorts by it: ascending, then descending.
    header = next(th for th in browser.find_elements("css selector", "table.board thead th")
                  if th.text.startswith("reconstruction.psnr"))
    header.click()
    assert _keys(_visible_rows(browser)) == expected_order(board, "reconstruction.psnr", ascending=True)
    header.click()
    assert _keys(_visible_rows(browser)) == expected_order(board, "reconstruction.psnr", ascending=False)

    # The prior pane keeps realnvp's rows only, still in the order chosen.
    pane = next(p for p in browser.find_elements("css selector", "div.dtsp-searchPane")
                if p.find_elements("css selector", "input[placeholder='prior']"))
    entry = next(e for e in pane.find_elements("css selector", "span.dtsp-name") if e.text.strip() == "realnvp")
    entry.click()
    filtered = _wait_for(lambda: (r := _visible_rows(browser)) and all(x["prior"] == "realnvp" for x in r) and r,
                         "the prior filter")
    assert _keys(filtered) == expected_order(board, "reconstruction.psnr", ascending=False, prior="realnvp")
    assert len(filtered) == 3


def test_a_cells_link_opens_its_drawer_with_loss_curves_and_samples_in_chromium(board, browser):
    _open(browser, board / "index.html")
    link = browser.find_element("css selector", "table.board td.cells a")
    cell_id = link.get_attribute("href").rsplit("#cell-", 1)[1]
    link.click()
    drawer = browser.find_element("id", f"cell-{cell_id}")
    assert drawer.get_attribute("open") is not None
    assert _wait_for(lambda: drawer.find_elements("css selector", ".loss-chart svg, .loss-chart canvas"),
                     "the loss curves")
    image = drawer.find_element("css selector", "img[alt='samples']")
    assert _wait_for(lambda: browser.execute_script("return arguments[0].naturalWidth", image), "the sample grid")
    assert cell_id in drawer.text

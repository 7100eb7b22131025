"""The MLflow UI in a real (headless Chromium) browser shows a HiPO sweep: parent, children and a HiPO metric.

Needs Debian's ``chromium`` and ``chromium-driver`` packages (skipped with the reason when absent). Screenshots go to
``test-artifacts/mlflow_ui.png`` (runs table, sweep expanded) and ``test-artifacts/mlflow_ui_run.png`` (a child run).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from mlflow.entities import Metric
from mlflow.tracking import MlflowClient

pytestmark = [pytest.mark.browser, pytest.mark.slow]

REPO_ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO_ROOT / "test-artifacts"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
METRIC = "train/rewards/accuracy/Mt"
FINAL = {"dpo-seed0": 0.625, "hipo-seed0": 0.875}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.3)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def _log_sweep(uri: str, artifacts: Path) -> dict[str, str]:
    """A parent sweep run with two FINISHED children that log the HiPO metric over 4 steps."""
    client = MlflowClient(uri)
    experiment_id = client.create_experiment(
        "hipo-ui",
        artifact_location=artifacts.as_uri(),
        tags={"mlflow.experimentKind": "custom_model_development"},  # open on the runs table, not the GenAI view
    )
    parent = client.create_run(
        experiment_id, run_name="sweep-ui", tags={"hipo.role": "sweep", "hipo.sweep_id": "ui-1"}
    ).info.run_id
    ids = {"experiment": experiment_id, "parent": parent}
    for name, final in FINAL.items():
        tags = {"mlflow.parentRunId": parent, "hipo.sweep_id": "ui-1", "hipo.method": name.split("-")[0]}
        run_id = client.create_run(experiment_id, run_name=name, tags=tags).info.run_id
        now = int(time.time() * 1000)
        client.log_batch(run_id, metrics=[Metric(METRIC, final * step / 3, now + step, step) for step in range(4)])
        client.set_terminated(run_id, "FINISHED")
        ids[name] = run_id
    client.set_terminated(parent, "FINISHED")
    return ids


@pytest.fixture
def mlflow_server(tmp_path: Path) -> Iterator[tuple[str, dict[str, str]]]:
    """``mlflow ui`` on a free 127.0.0.1 port against a fresh store with the sweep; always stopped afterwards."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    ids = _log_sweep(uri, tmp_path / "artifacts")
    port = _free_port()
    log_path = tmp_path / "mlflow_ui.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri, "--host", "127.0.0.1",
             "--port", str(port), "--workers", "1"],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    base = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"mlflow ui exited with {proc.returncode}:\n{log_path.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{base}/health", timeout=2) as response:
                return response.status == 200
        except OSError:
            return False

    try:
        _wait_for(healthy, 90, f"mlflow ui on {base}")
        yield base, ids
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)  # the server's own process group (start_new_session)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=15)


@pytest.fixture
def browser():
    """Headless Chromium driven by Selenium (skips when the Debian packages are missing)."""
    if CHROMIUM is None or CHROMEDRIVER is None:
        pytest.skip(
            "needs Debian's `chromium` and `chromium-driver` packages (apt-get install chromium chromium-driver)"
        )
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1600,900"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def _body_text(driver) -> str:
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.common.by import By

    try:
        return driver.find_element(By.TAG_NAME, "body").text
    except WebDriverException:
        return ""


def test_mlflow_ui_shows_the_sweep_and_a_hipo_metric(mlflow_server, browser) -> None:
    from selenium.webdriver.common.by import By

    base, ids = mlflow_server
    ARTIFACTS.mkdir(exist_ok=True)
    browser.get(f"{base}/#/experiments/{ids['experiment']}/runs")
    _wait_for(lambda: "sweep-ui" in _body_text(browser), 60, "the parent run in the runs table")
    for close in browser.find_elements(By.CSS_SELECTOR, "button[aria-label='Close']"):
        close.click()  # the assistant side panel hides the table's metric columns
    # the children are nested under the parent: expand it with the button in its run-name cell
    row = browser.find_element(By.CSS_SELECTOR, f"[role='row'][row-id='{ids['parent']}']")
    row.find_element(By.CSS_SELECTOR, "button[data-component-id*='runnamecellrenderer']").click()
    _wait_for(lambda: all(name in _body_text(browser) for name in FINAL), 30, "the child runs after expanding")
    browser.save_screenshot(str(ARTIFACTS / "mlflow_ui.png"))
    table = _body_text(browser)
    assert "hipo-ui" in table and "3 matching runs" in table

    browser.get(f"{base}/#/experiments/{ids['experiment']}/runs/{ids['hipo-seed0']}")
    _wait_for(lambda: METRIC in _body_text(browser), 60, f"metric {METRIC} on the run page")
    browser.save_screenshot(str(ARTIFACTS / "mlflow_ui_run.png"))
    page = _body_text(browser)
    assert "hipo-seed0" in page and str(FINAL["hipo-seed0"]) in page
    assert (ARTIFACTS / "mlflow_ui.png").read_bytes().startswith(b"\x89PNG")

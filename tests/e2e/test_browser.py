"""The Airflow UI in a real browser (Debian's headless Chromium, driven by Playwright): log in, open the typed trigger
form of ``capillary_to_aep_backfill``, submit a one-day backfill and watch the run succeed."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from airflow_stack import AirflowAPI, AirflowStack
from conftest import ACCEPTED_PER_DAY, REPO
from playwright.sync_api import Browser, Page, expect, sync_playwright

from airflow_provider_capillary.testing.aep_emulator import AEPEmulator

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

CHROMIUM = Path("/usr/bin/chromium")
#: Flags Chromium needs on these machines: root without a sandbox, no GPU, and no calls to Google's services.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
SCREENSHOTS = REPO / "tests" / "e2e" / "artifacts"
DAG_ID = "capillary_to_aep_backfill"
DAY = "2025-06-01"
RUN_TIMEOUT = 200.0
#: How long a UI assertion waits (ms): Playwright's 5 s default was too short for the first page after signing in
#: on a loaded 2-core machine.
UI_TIMEOUT_MS = 30_000
expect.set_options(timeout=UI_TIMEOUT_MS)
#: The trigger form's fields, by title, as the DAG's Params declare them.
PARAM_TITLES = ("Start date", "End date", "Record types", "Mode", "Dry run", "Max records per second")


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Debian's Chromium, headless (Playwright's own browser builds cannot be downloaded here)."""
    assert CHROMIUM.exists(), f"{CHROMIUM} is missing: run scripts/ci_services.sh (apt-get install chromium)"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A fresh browser page, tall enough to show the whole trigger form."""
    context = browser.new_context(viewport={"width": 1400, "height": 1700})
    context.set_default_timeout(UI_TIMEOUT_MS)
    yield context.new_page()
    context.close()


def screenshot(page: Page, name: str) -> Path:
    """Save a screenshot under ``tests/e2e/artifacts/`` and return its path."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / name
    page.screenshot(path=str(path))
    return path


def log_in(page: Page, url: str, password: str) -> None:
    """Sign in on the simple auth manager's login page, as a person would."""
    page.goto(f"{url}/")
    expect(page.get_by_text("Sign into Airflow")).to_be_visible()
    page.get_by_label("Username").fill("admin")
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("link", name="Dags")).to_be_visible()


def test_trigger_form_runs_a_one_day_backfill(
    page: Page, airflow_stack: AirflowStack, airflow_api: AirflowAPI, aep_emulator: AEPEmulator
) -> None:
    aep_emulator.reset()
    log_in(page, airflow_stack.url, airflow_stack.admin_password())

    page.goto(f"{airflow_stack.url}/dags/{DAG_ID}")
    page.get_by_role("button", name="Trigger").first.click()
    form = page.get_by_role("dialog")
    expect(form.get_by_text(f"Trigger Dag - {DAG_ID}")).to_be_visible()
    expect(form.get_by_text("Run Parameters")).to_be_visible()
    for title in PARAM_TITLES:  # each field's label: the Param's title and the "required" mark
        expect(form.locator("label").filter(has_text=re.compile(rf"^{re.escape(title)}\W*$"))).to_be_visible()
    # Typed fields, as the Params declare them: date pickers, a list, an enum, a switch and a bounded number.
    start, end = form.locator("#element_start_date"), form.locator("#element_end_date")
    assert start.get_attribute("type") == end.get_attribute("type") == "date"
    assert form.locator("#element_record_types").input_value().split() == ["customer", "transaction", "loyalty_event"]
    assert form.locator("input[name=element_mode]").input_value() == "auto"
    assert form.locator("input[name=element_dry_run]").get_attribute("type") == "checkbox"
    assert not form.locator("input[name=element_dry_run]").is_checked()
    rate = form.get_by_role("spinbutton")
    assert (rate.input_value(), rate.get_attribute("aria-valuemax")) == ("10000", "100000")
    # A DAG without a periodic schedule cannot be backfilled by Airflow itself: its Params do the date range.
    assert form.get_by_role("radio", name="Backfill").is_disabled()

    start.fill(DAY)
    end.fill(DAY)
    form_shot = screenshot(page, "trigger_form.png")
    form.get_by_role("button", name="Trigger").click()

    page.wait_for_url(f"**/dags/{DAG_ID}/runs/**")
    run_id = page.url.rsplit("/runs/", 1)[1].split("?")[0]
    run = airflow_api.call("GET", f"/api/v2/dags/{DAG_ID}/dagRuns/{run_id}")
    assert run["triggered_by"] == "ui"
    assert run["conf"] == {
        "start_date": DAY,
        "end_date": DAY,
        "record_types": ["customer", "transaction", "loyalty_event"],
        "mode": "auto",
        "dry_run": False,
        "max_records_per_second": 10000,
    }

    header = page.get_by_role("heading", name=run_id).locator("xpath=..")
    deadline = time.monotonic() + RUN_TIMEOUT
    while time.monotonic() < deadline:
        airflow_stack.check_running()
        state = header.inner_text().replace(run_id, "").strip()
        if state in ("Success", "Failed"):
            break
        time.sleep(5)
        page.reload()
    assert state == "Success", f"the run page shows {state!r} after {RUN_TIMEOUT} s"
    run_shot = screenshot(page, "finished_run.png")

    datasets = aep_emulator.state.stats()["sandboxes"]["prod"]["datasets"].values()
    assert {d["name"]: (d["accepted"], d["duplicates"]) for d in datasets} == {
        name: (count, 0) for name, count in ACCEPTED_PER_DAY.items()
    }
    print(f"screenshots: {form_shot} {run_shot}")

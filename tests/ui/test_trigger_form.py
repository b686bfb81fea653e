"""The deploy form in the Airflow UI, driven in Debian's headless Chromium by Playwright: a person
logs in, opens deploy_llama4's trigger form, is refused a bad deployment name with the field named
(and no run exists), corrects it, and triggers a dry run that then succeeds.

Playwright never downloads a browser here: it launches /usr/bin/chromium (Debian's package
chromium; .ci/run installs it). Screenshots of the filled form and of the page as it was last (the
finished run's, when the test passes) are kept in .cache/ui-test/."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.ui.conftest import DAG_ID, wait_for_run

CHROMIUM = Path("/usr/bin/chromium")
SHOTS = Path(__file__).resolve().parents[2] / ".cache" / "ui-test"
# Without the background-networking switches Chromium keeps calling Google's hosts, which this
# closed network refuses; --no-sandbox because CI runs as root.
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture
def page(local_airflow):
    from playwright.sync_api import expect, sync_playwright

    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium package (apt-get install chromium)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(60_000)
        # The UI renders on a loaded 2-core machine beside four Airflow processes: allow the
        # assertions the same patience as the actions (Playwright's default is 5 s).
        expect.set_options(timeout=30_000)
        try:
            yield page
        finally:
            SHOTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(SHOTS / "last-page.png"), full_page=True)
            browser.close()


def _section(dialog, name: str):
    """Open a section of the form and wait until it is open. The sections are an accordion
    (opening one may close another) whose header toggles, and the form may re-render once the
    DAG's params arrive, so a blind click can close a section that was already open."""
    from playwright.sync_api import expect

    header = dialog.get_by_role("button", name=name, exact=True)
    if header.get_attribute("aria-expanded") != "true":
        header.click()
    expect(header).to_have_attribute("aria-expanded", "true")


def test_the_form_refuses_a_bad_name_then_triggers_a_dry_run(local_airflow, page):
    from playwright.sync_api import expect

    api = local_airflow.api()
    page.goto(f"{local_airflow.base_url}/dags/{DAG_ID}")
    page.fill("input[name=username]", "admin")
    page.fill("input[name=password]", local_airflow.password)
    page.get_by_role("button", name="Sign In").click()
    page.get_by_role("button", name="Trigger Dag").first.click()
    dialog = page.get_by_role("dialog")
    for section in ("Model", "Cluster", "Serving overrides", "Checks", "Lifecycle"):
        expect(dialog.get_by_text(section, exact=True)).to_be_visible()

    _section(dialog, "Model")
    # Titles (a required field's label ends in the form's "*") and the catalog's choices, as the
    # params declare them.
    for title in ("Model", "Accelerator", "Catalog profile", "Deployment name"):
        expect(dialog.get_by_text(re.compile(rf"^{re.escape(title)}\s*\*?$")).first).to_be_visible()
    expect(dialog.get_by_role("combobox", name="Accelerator")).to_be_visible()
    expect(dialog.get_by_text("gpu: NVIDIA (p5/p4d/g5/g6e); neuron: AWS Trainium2 (trn2).")).to_be_visible()
    page.fill("#element_deployment_name", "Bad_Name!")
    _section(dialog, "Advanced Options")
    page.get_by_label("Run ID").fill("ui-bad-name")
    dialog.get_by_role("button", name="Trigger").click()
    expect(dialog.get_by_text("Invalid input for param deployment_name")).to_be_visible()
    assert not api.found(f"/api/v2/dags/{DAG_ID}/dagRuns/ui-bad-name")

    _section(dialog, "Model")
    page.fill("#element_deployment_name", "ui-dry-run")
    _section(dialog, "Cluster")
    page.fill("#element_namespace", "llm-ui")
    _section(dialog, "Lifecycle")
    dry_run = page.locator("input[name=element_dry_run]")
    page.locator(f"label[for='{dry_run.get_attribute('id')}']").last.click()  # the switch
    expect(dry_run).to_be_checked()
    _section(dialog, "Advanced Options")
    page.get_by_label("Run ID").fill("ui-dry-run")
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "trigger-form.png"), full_page=True)
    dialog.get_by_role("button", name="Trigger").click()
    expect(dialog).to_be_hidden()

    assert wait_for_run(api, "ui-dry-run") == "success"
    # As a person sees it: the run's page says it succeeded.
    page.goto(f"{local_airflow.base_url}/dags/{DAG_ID}/runs/ui-dry-run")
    expect(page.get_by_text("Success").first).to_be_visible()
    run = api.run(DAG_ID, "ui-dry-run")
    assert run["conf"]["deployment_name"] == "ui-dry-run" and run["conf"]["dry_run"] is True
    assert run["conf"]["namespace"] == "llm-ui"
    assert "DRY RUN" in api.xcom(DAG_ID, "ui-dry-run", "register")["report"]

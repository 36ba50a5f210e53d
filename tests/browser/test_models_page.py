"""The models page in a real browser: a training run finishes in the real Celery worker and
the page shows the new model's metrics in place, without a reload, under the project's
navigation bar."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from core.runs import run_enqueue
from scoring.models import TrainingRun
from scoring.services.training import training_run_create
from tests.browser.pages import log_in
from tests.scoring.test_training import CONFIG, _import

pytestmark = [pytest.mark.browser, pytest.mark.worker]


def test_a_finished_training_run_shows_its_metrics_without_a_reload(
    page: Page, live_server, transactional_db, celery_worker, admin, project, tmp_path
):
    _import(project, tmp_path)
    # Made here and sent to the worker only once the page watches it, so that the run
    # cannot finish before the page has loaded (then there would be nothing to refresh).
    run = training_run_create(project=project, config=CONFIG, created_by=admin)
    log_in(page, live_server.url, admin.username)
    page.goto(f"{live_server.url}/projects/{project.slug}/models/")
    expect(page.locator("nav.project-nav a[aria-current=page]")).to_have_text("Models")
    card = page.locator(f"#training-run-{run.id}")
    expect(card.locator(".run")).to_have_attribute("data-status", "queued")
    expect(card.locator("table.metrics")).to_have_count(0)
    page.evaluate("window.__noReload = 1")

    run_enqueue(run)

    expect(card.locator(".run")).to_have_attribute("data-status", "succeeded", timeout=180_000)
    # The runs section reloaded itself: the active badge and the metrics are there, and
    # the page is the same page (a reload would have dropped the variable).
    expect(card.locator(".badge.active")).to_be_visible()
    metrics = card.locator("table.metrics")
    expect(metrics).to_contain_text("Accuracy")
    assert page.evaluate("window.__noReload") == 1
    assert "Reload" not in page.content()
    run.refresh_from_db()
    assert run.status == TrainingRun.Status.SUCCEEDED, run.error
    assert run.model_version.is_active
    accuracy = run.model_version.metrics["eval_accuracy"]
    expect(metrics).to_contain_text(f"{accuracy:.3f}")

"""The AI annotators page (curation.judges) in a real browser: create annotators, run one
through the real Celery worker and watch its progress section poll (htmx) until it is done.

Here rather than in tests/judges/ so that it shares this folder's one Playwright instance."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from annotation.models import Comparison, Judgement
from curation.judges.models import AIAnnotator, AIJudgingRun
from tests.browser.pages import log_in
from tests.judges.conftest import labelled_project, reward_model_train

pytestmark = [pytest.mark.browser, pytest.mark.worker]

KEY = "sk-browser-91b2-NEVER-SHOWN"


def test_create_and_run_an_annotator_from_the_page(
    page: Page, live_server, transactional_db, celery_worker, admin, project, tmp_path
):
    labelled_project(project, tmp_path, n=30)
    reward_model_train(project)
    Comparison.objects.filter(project=project).update(route=Comparison.Route.AI)
    log_in(page, live_server.url, admin.username)
    url = f"{live_server.url}/projects/{project.slug}/ai-annotators/"
    page.goto(url)
    expect(page.locator("h1")).to_have_text("AI annotators")

    # A remote one with a key: the key goes in and never comes back out.
    page.fill("#id_name", "gpt")
    page.select_option("#id_kind", "remote_llm")
    page.fill("#id_base_url", "https://llm.example.com/v1")
    page.fill("#id_model", "judge-1")
    page.fill("#id_api_key", KEY)
    page.click("section.card button[type=submit]")
    expect(page.locator("tr[data-name=gpt] td.key")).to_have_text("set")
    assert KEY not in page.content()
    assert AIAnnotator.objects.get(name="gpt").api_key == KEY

    # The reward-model judge, run on the comparisons routed to AI.
    page.fill("#id_name", "rm")
    page.select_option("#id_kind", "reward_model")
    page.click("section.card button[type=submit]")
    row = page.locator("tr[data-name=rm]")
    expect(row).to_be_visible()
    row.locator("select[name=scope]").select_option("routed")
    row.get_by_role("button", name="Run").click()

    run = page.locator("section.run-card div.run").first
    expect(run).to_have_attribute("data-status", "succeeded", timeout=120_000)
    expect(run.locator(".counts")).to_contain_text("ok 30 · failed 0 · already judged 0")
    assert run.get_attribute("hx-get") is None  # finished: polling stopped
    done = AIJudgingRun.objects.get()
    assert (done.status, done.progress_done, done.progress_total) == ("succeeded", 30, 30)
    assert Judgement.objects.filter(source_name="ai:rm", source_kind="ai").count() == 30
    page.reload()
    expect(row.locator("td.num").first).to_have_text("30 / 0")

"""The import page in a real browser: upload, the job page's htmx progress, the outcome.

The upload goes through the live server to the real Celery worker (the `celery_worker`
session fixture), which imports the file into the test database; the job page polls the
run's element in its #progress section (`div.run`, the shared run-progress partial) with htmx
until the job is finished.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from django.db import connection
from playwright.sync_api import Page, expect

from annotation.models import Candidate, Comparison, ImportJob, Judgement, Prompt
from tests.browser.pages import log_in

pytestmark = [pytest.mark.browser, pytest.mark.worker]

ROWS = 50_000
FINISHED = ("succeeded", "failed")
JOB_URL = re.compile(r"/projects/alpha/imports/(\d+)/$")

# Runs in every document before its own scripts: records the run's element in #progress as
# first rendered and after each htmx swap, and every htmx request's status code.
RECORDER = r"""
window.__progress = [];
window.__requests = [];
(() => {
  const snap = (how) => {
    const el = document.querySelector("#progress .run");
    if (!el) return;
    const bar = el.querySelector("progress");
    const steps = el.querySelector(".steps");
    window.__progress.push({
      how,
      status: el.dataset.status,
      line: el.querySelector(".run-head").textContent.replace(/\s+/g, " ").trim(),
      value: bar ? Number(bar.value) : null,
      steps: steps ? steps.textContent.trim() : null,
      polling: el.hasAttribute("hx-get"),
    });
  };
  document.addEventListener("DOMContentLoaded", () => snap("load"));
  document.addEventListener("htmx:afterSettle", () => snap("swap"));
  document.addEventListener("htmx:afterRequest", (e) => {
    window.__requests.push(e.detail.xhr ? e.detail.xhr.status : null);
  });
})();
"""


def _log_in(page: Page, base_url: str, username: str) -> None:
    log_in(page, base_url, username)
    expect(page.locator(".topbar .who")).to_have_text(username)


def _upload(page: Page, base_url: str, path: Path) -> int:
    """Upload `path` on the import page; return the job id of the job page it lands on."""
    page.add_init_script(RECORDER)
    page.goto(f"{base_url}/projects/alpha/import/")
    expect(page.locator("h1")).to_have_text("Import preference data")
    page.set_input_files("#id_file", str(path))
    page.click("#import-form button[type=submit]")
    page.wait_for_url(JOB_URL)
    # Set after the job page has loaded: a navigation (a full page load) would drop it.
    page.evaluate("window.__marker = 1")
    return int(JOB_URL.search(page.url).group(1))


def _wait_until_finished(page: Page, timeout_ms: int = 120_000) -> str:
    """Wait until the recorder has seen the run finished (htmx settles a swap after it is
    made: waiting on the DOM alone could read the history before the last swap is in it)."""
    page.wait_for_function(
        "['succeeded', 'failed'].includes(window.__progress.at(-1)?.status)", timeout=timeout_ms
    )
    return page.locator("#progress .run").get_attribute("data-status")


def _jsonl(path: Path, rows: list[dict | str]) -> Path:
    with path.open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write((row if isinstance(row, str) else json.dumps(row)) + "\n")
    return path


def test_import_page_shows_live_progress_then_summary(
    page: Page, live_server, transactional_db, celery_worker, admin, project, tmp_path
):
    path = _jsonl(
        tmp_path / "prefs.jsonl",
        [
            {
                "prompt": f"Question {i}: how do I keep basil alive on a windowsill?",
                "chosen": f"Answer {i}: water when the top soil is dry and give it sun.",
                "rejected": f"Answer {i}: basil cannot be grown indoors.",
            }
            for i in range(ROWS)
        ],
    )
    _log_in(page, live_server.url, admin.username)

    job_id = _upload(page, live_server.url, path)

    progress = page.locator("#progress")
    expect(progress).to_be_visible()
    assert _wait_until_finished(page) == "succeeded", progress.inner_text()

    # No page load since the job page opened: every change came from htmx swaps.
    assert page.evaluate("window.__marker") == 1
    history = page.evaluate("window.__progress")
    requests = page.evaluate("window.__requests")
    assert history[0]["how"] == "load", history
    swaps = [h for h in history if h["how"] == "swap"]
    assert swaps, history
    # Polling showed the job unfinished at least once, then finished, and then stopped.
    assert any(s["status"] in ("queued", "running") for s in swaps), history
    assert swaps[-1]["status"] == "succeeded", history
    assert swaps[-1]["polling"] is False, history
    assert [h["status"] for h in history].index("succeeded") == len(history) - 1, history
    assert requests[-1] == 286, requests  # htmx's "stop polling"
    assert all(code == 200 for code in requests[:-1]), requests
    # The bar moved while the job ran (validating is its first half, writing its second),
    # with the rows counted as it went.
    running = [s for s in swaps if s["status"] == "running"]
    assert any(0 < s["value"] < 100 for s in running), history
    assert all(re.fullmatch(r"[\d,]+ / ([\d,]+|\?) rows", s["steps"]) for s in running), history
    assert any(s["steps"].endswith(f" / {ROWS:,} rows") for s in running), history

    # Finished: the bar and its Cancel button make way for the outcome.
    expect(progress.locator("progress")).to_have_count(0)
    expect(progress.get_by_role("button", name="Cancel")).to_have_count(0)
    expect(progress.locator(".summary")).to_contain_text(f"imported {ROWS} comparisons")
    expect(progress.locator(".summary")).to_contain_text(f"({ROWS} prompts, {2 * ROWS} candidates)")
    expect(progress.get_by_role("link", name="Back to the project")).to_be_visible()
    # The polling has stopped: no further requests arrive.
    page.wait_for_timeout(1_200)
    assert page.evaluate("window.__requests.length") == len(requests)

    job = ImportJob.objects.get(pk=job_id)
    assert job.status == ImportJob.Status.SUCCEEDED
    assert (job.progress_done, job.progress_total, job.percent) == (ROWS, ROWS, 100)
    assert Comparison.objects.filter(project=project).count() == ROWS
    _embedding_stop(project)


def _embedding_stop(project) -> None:
    """The import set off the embedding of its 150,000 texts in the session's worker: minutes
    of CPU that are not this test's subject and would hold the worker from the next test.
    With the rows gone, that task stops at its next round (it embeds what is missing)."""
    tables = {m: m._meta.db_table for m in (Judgement, Comparison, Candidate, Prompt)}
    with connection.cursor() as cursor:
        cursor.execute(
            f"DELETE FROM {tables[Judgement]} WHERE comparison_id IN "
            f"(SELECT id FROM {tables[Comparison]} WHERE project_id = %s)",
            [project.id],
        )
        cursor.execute(f"DELETE FROM {tables[Comparison]} WHERE project_id = %s", [project.id])
        cursor.execute(
            f"DELETE FROM {tables[Candidate]} WHERE prompt_id IN "
            f"(SELECT id FROM {tables[Prompt]} WHERE project_id = %s)",
            [project.id],
        )
        cursor.execute(f"DELETE FROM {tables[Prompt]} WHERE project_id = %s", [project.id])


def test_import_page_reports_bad_rows_and_imports_nothing(
    page: Page, live_server, transactional_db, celery_worker, admin, project, tmp_path
):
    path = _jsonl(
        tmp_path / "bad.jsonl",
        [
            {"prompt": "Good row", "chosen": "A helpful answer.", "rejected": "A rude answer."},
            '{"prompt": "Broken", "chosen": "no closing brace"',
            {"prompt": "Same twice", "chosen": "Identical.", "rejected": "Identical."},
            {"prompt": "Another good row", "chosen": "Yes.", "rejected": "No."},
        ],
    )
    _log_in(page, live_server.url, admin.username)

    job_id = _upload(page, live_server.url, path)

    progress = page.locator("#progress")
    assert _wait_until_finished(page) == "failed", progress.inner_text()
    assert page.evaluate("window.__marker") == 1
    expect(progress.locator(".status-failed")).to_contain_text("Failed")
    expect(progress.locator("p.error")).to_have_text("2 bad row(s); nothing was imported")
    errors = progress.locator("ul.errors li")
    expect(errors).to_have_count(2)
    expect(errors.nth(0)).to_contain_text(re.compile(r"^line 2: malformed JSON"))
    expect(errors.nth(1)).to_have_text(
        "line 3, field 'rejected': chosen and rejected are identical"
    )
    expect(progress.get_by_role("link", name="Fix the file and upload it again")).to_have_attribute(
        "href", "/projects/alpha/import/"
    )

    job = ImportJob.objects.get(pk=job_id)
    assert job.status == ImportJob.Status.FAILED
    assert job.error == "2 bad row(s); nothing was imported"
    assert Comparison.objects.filter(project=project).count() == 0

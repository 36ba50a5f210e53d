"""The curation page in a real browser: select pairs in bulk, flip them, undo one."""

from __future__ import annotations

import numpy as np
import pytest
from django.utils import timezone
from playwright.sync_api import Page, expect

from annotation.models import Comparison, LabelResolution
from curation.detectors import DetectorResult
from curation.models import CurationAction, CurationRun
from curation.services.runs import _flags_write
from scoring.models import ModelVersion
from tests.factories import PASSWORD, comparison_make

pytestmark = pytest.mark.browser


def _flagged(project, n: int) -> list[Comparison]:
    comparisons = [
        comparison_make(
            project,
            a=f'Answer A {i} <img src=x onerror="window.__xss=1">',
            b=f"Answer B {i}",
            label="a",
            label_confidence=1.0,
            status="labelled",
        )
        for i in range(n)
    ]
    version = ModelVersion.objects.create(project=project, kind="heads", is_active=True)
    run = CurationRun.objects.create(project=project, model_version=version, status="running")
    result = DetectorResult(
        name="combined",
        score=np.linspace(0.95, 0.7, n),
        flagged=np.ones(n, dtype=bool),
        reasons=["5 of 5 models prefer B strongly"] * n,
    )
    summary = _flags_write(run, [c.pk for c in comparisons], ["a"] * n, [result])
    CurationRun.objects.filter(pk=run.pk).update(
        status="succeeded", summary=summary, finished_at=timezone.now()
    )
    return comparisons


def test_bulk_flip_then_undo(page: Page, live_server, transactional_db, reviewer, project):
    comparisons = _flagged(project, 3)
    page.goto(f"{live_server.url}/accounts/login/")
    page.fill("#id_username", reviewer.username)
    page.fill("#id_password", PASSWORD)
    page.click("form.card button[type=submit]")
    page.wait_for_url(f"{live_server.url}/")

    page.goto(f"{live_server.url}/projects/{project.slug}/curation/")
    expect(page.locator("article.flag-item")).to_have_count(3)
    first, second, third = (page.locator(f"#pair-{c.pk}") for c in comparisons)
    expect(first).to_contain_text("5 of 5 models prefer B strongly")

    # Select all, then leave the third out, and flip the two.
    page.check("#select-all")
    expect(page.locator("input[name=comparisons]:checked")).to_have_count(3)
    third.locator("input[name=comparisons]").uncheck()
    page.click("#bulk-form .bulk-bar button[value=flip]")

    expect(page.locator(".messages")).to_contain_text("Flip the label: 2 pairs")
    expect(first).to_have_attribute("data-label", "b")
    expect(second).to_have_attribute("data-label", "b")
    expect(third).to_have_attribute("data-label", "a")
    assert [Comparison.objects.get(pk=c.pk).label for c in comparisons] == ["b", "b", "a"]
    assert LabelResolution.objects.count() == 2

    # Undo the first pair's flip from its own history.
    first.get_by_role("button", name="Undo").click()

    expect(page.locator(".messages")).to_contain_text(
        f"Undone: flip the label on #{comparisons[0].pk}"
    )
    expect(first).to_have_attribute("data-label", "a")
    expect(first).to_contain_text("(undone)")
    assert [Comparison.objects.get(pk=c.pk).label for c in comparisons] == ["a", "b", "a"]
    flip = CurationAction.objects.get(comparison=comparisons[0], action="flip")
    assert flip.undone_by.action == "undo"
    assert flip.undone_by.actor == reviewer
    assert page.evaluate("window.__xss") is None  # candidate text is sanitised

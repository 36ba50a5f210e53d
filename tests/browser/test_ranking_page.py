"""Ranking mode in a real browser: three responses ordered from the keyboard only."""

from __future__ import annotations

import itertools

import pytest
from playwright.sync_api import Page, expect

from annotation.models import Judgement, RankingAssignment, RankingJudgement
from tests.browser.test_labelling_page import _import, _log_in

pytestmark = pytest.mark.browser


def test_an_annotator_ranks_three_responses_with_the_keyboard(
    page: Page, live_server, transactional_db, annotator, project, tmp_path
):
    project.label_schema = {"mode": "ranking", "allow_ties": True}
    project.save()
    _import(
        project,
        tmp_path,
        [
            {"prompt": f"Which is best {i}?", "responses": ["Red.", "Green.", "Blue."]}
            for i in range(2)
        ],
    )
    _log_in(page, live_server.url, annotator.username)
    page.goto(f"{live_server.url}/projects/{project.slug}/label/")
    expect(page.locator("#ranking .rank-item")).to_have_count(3)
    page.evaluate("window.__marker = 1")
    lease = RankingAssignment.objects.get(annotator=annotator)
    one, two, three = lease.presentation_order
    key = page.locator("#ranking").get_attribute("data-key")
    assert key == str(lease.key)
    keyboard = page.keyboard

    keyboard.press("?")
    expect(page.locator("#shortcuts")).to_be_visible()
    keyboard.press("?")
    expect(page.locator("#shortcuts")).to_be_hidden()

    # Response 3 to the top (two moves: ArrowUp, then k), response 2 tied with the one above
    # it (response 1): 3 > 1 = 2.
    keyboard.press("3")
    expect(page.locator(".rank-item.selected")).to_have_attribute("data-number", "3")
    keyboard.press("ArrowUp")
    keyboard.press("k")
    expect(page.locator(".rank-item").first).to_have_attribute("data-number", "3")
    keyboard.press("2")
    keyboard.press("t")
    expect(page.locator(".rank-item[data-number='2']")).to_have_class("rank-item selected tied")
    expect(page.locator(".rank-item[data-number='2'] [data-rank]")).to_have_text("#2 =")
    keyboard.press("Enter")

    page.wait_for_function(
        "k => document.getElementById('ranking').dataset.key && "
        "document.getElementById('ranking').dataset.key !== k",
        arg=key,
    )
    page.wait_for_function("document.documentElement.dataset.pending === '0'")
    assert page.evaluate("window.__marker") == 1  # swapped in, no page load
    expect(page.locator("#ranking .progress")).to_contain_text("Today 1")

    made = RankingJudgement.objects.get()
    assert made.order == [[three], [one, two]]
    assert made.time_spent_ms is not None
    pairs = Judgement.objects.filter(ranking_judgement=made).select_related("comparison")
    assert pairs.count() == 3
    for judgement in pairs:
        c = judgement.comparison
        ids = {c.candidate_a_id, c.candidate_b_id}
        if ids == {one, two}:
            assert judgement.choice == "tie"
        else:
            assert three in ids
            assert judgement.choice == ("a" if c.candidate_a_id == three else "b")
    assert {frozenset(p) for p in itertools.combinations([one, two, three], 2)} == {
        frozenset((j.comparison.candidate_a_id, j.comparison.candidate_b_id)) for j in pairs
    }

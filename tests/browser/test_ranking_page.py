"""Ranking mode in a real browser: responses ordered from the keyboard only, the next ranking
prefetched and shown while the answer is still on its way."""

from __future__ import annotations

import itertools

import pytest
from playwright.sync_api import Page, Route, expect

from annotation.models import Judgement, RankingAssignment, RankingJudgement
from tests.browser.pages import log_in
from tests.browser.test_labelling_page import _import

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
    log_in(page, live_server.url, annotator.username)
    page.goto(f"{live_server.url}/projects/{project.slug}/label/")
    expect(page.locator("#ranking .rank-item")).to_have_count(3)
    page.evaluate("window.__marker = 1")
    key = page.locator("#ranking").get_attribute("data-key")
    lease = RankingAssignment.objects.get(key=key)  # the next one may be prefetched already
    assert lease.annotator == annotator
    one, two, three = lease.presentation_order
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


def _key(page: Page) -> str:
    return page.locator("#ranking").get_attribute("data-key")


def _prefetched(page: Page) -> str:
    """Wait until the next ranking is waiting in the page; its key."""
    page.wait_for_function("document.getElementById('prefetch').dataset.key")
    return page.locator("#prefetch").get_attribute("data-key")


def _shown_next(page: Page, key: str) -> str:
    page.wait_for_function("k => document.getElementById('ranking').dataset.key !== k", arg=key)
    return _key(page)


def _order(page: Page) -> list[list[int]]:
    ids = page.eval_on_selector_all("#ranking .rank-item", "els => els.map((e) => +e.dataset.id)")
    return [[i] for i in ids]


def test_the_next_ranking_appears_before_the_answer_is_saved(
    page: Page, live_server, transactional_db, annotator, project, tmp_path
):
    project.label_schema = {"mode": "ranking"}
    project.save()
    _import(
        project,
        tmp_path,
        [
            {
                "prompt": f"Which is best {i}?",
                "responses": [f"Red {i}.", f"Green {i}.", f"Blue {i}."],
            }
            for i in range(4)
        ],
    )
    log_in(page, live_server.url, annotator.username)
    page.goto(f"{live_server.url}/projects/{project.slug}/label/")
    expect(page.locator("#ranking .rank-item")).to_have_count(3)
    page.evaluate("window.__marker = 1")
    keyboard = page.keyboard
    orders: dict[str, list[list[int]]] = {}

    # 1: the next ranking is in the page before the answer is given. The answer is held
    # on its way to the server, and the prefetched ranking is on screen all the same.
    first = _key(page)
    following = _prefetched(page)
    held: list[Route] = []
    page.route("**/rank/*/submit/", lambda route: held.append(route))
    keyboard.press("3")
    keyboard.press("ArrowUp")
    orders[first] = _order(page)
    keyboard.press("Enter")
    assert _shown_next(page, first) == following
    assert len(held) == 1
    assert page.evaluate("document.documentElement.dataset.pending") != "0"
    expect(page.locator("[data-save-state]")).to_have_text("Saving…")
    assert not RankingJudgement.objects.exists()
    held[0].continue_()
    page.unroute("**/rank/*/submit/")
    page.wait_for_function("document.documentElement.dataset.pending === '0'")
    expect(page.locator("#ranking .progress")).to_contain_text("Today 1")
    assert RankingJudgement.objects.get().order == orders[first]

    # 2: skipped, with a reason; the prefetched ranking comes next.
    skipped = following
    following = _prefetched(page)
    keyboard.press("s")
    keyboard.type("cannot tell")
    keyboard.press("Enter")
    assert _shown_next(page, skipped) == following

    # 3 and 4: the last one has nothing prefetched after it, and the server's answer says so.
    third = following
    fourth = _prefetched(page)
    orders[third] = _order(page)
    keyboard.press("Enter")
    assert _shown_next(page, third) == fourth
    page.wait_for_function("document.documentElement.dataset.pending === '0'")
    assert not page.locator("#prefetch").get_attribute("data-key")
    keyboard.press("2")
    keyboard.press("k")
    orders[fourth] = _order(page)
    keyboard.press("Enter")
    expect(page.locator("#ranking")).to_contain_text("Nothing is waiting for you")
    page.wait_for_function("document.documentElement.dataset.pending === '0'")
    expect(page.locator("#ranking .progress")).to_contain_text("Today 3")
    assert page.evaluate("window.__marker") == 1  # every ranking came in by a swap

    made = {str(j.assignment.key): j.order for j in RankingJudgement.objects.filter(user=annotator)}
    assert made == orders
    leases = RankingAssignment.objects.filter(annotator=annotator)
    assert leases.count() == 4 == leases.values("ranking").distinct().count()  # none twice
    assert {str(a.key): a.state for a in leases} == {
        first: "submitted",
        skipped: "skipped",
        third: "submitted",
        fourth: "submitted",
    }
    assert leases.get(key=skipped).skip_reason == "cannot tell"
    assert Judgement.objects.filter(user=annotator).count() == 3 * 3

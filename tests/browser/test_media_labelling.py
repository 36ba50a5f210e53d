"""Image and audio pairs in a real browser: an annotator labels 5 image pairs from the
keyboard (opening one full size, the synchronised zoom) and 5 audio pairs (playing both
clips, switching A/B at the same moment), with the choice refused until both clips were
played when the project requires it, on the page and on the server."""

from __future__ import annotations

import re
from pathlib import PurePosixPath

import pytest
from django.urls import reverse
from playwright.sync_api import Page, expect

from annotation.models import (
    Assignment,
    Candidate,
    Judgement,
    Membership,
    Ranking,
    RankingJudgement,
)
from annotation.services.queue import NOT_PLAYED
from tests.browser.pages import log_in
from tests.factories import MembershipFactory, media_comparison_make

pytestmark = pytest.mark.browser

PLAYED = re.compile(r"(^|\s)played(\s|$)")
WAVEFORM = re.compile(r"(^|\s)has-waveform(\s|$)")  # wavesurfer.js drew the waveform


def _shown(page: Page) -> str:
    return page.locator("#pair").get_attribute("data-key")


def _wait_for_another(page: Page, key: str) -> str:
    page.wait_for_function("k => document.getElementById('pair').dataset.key !== k", arg=key)
    return _shown(page)


def _prefetched(page: Page) -> str:
    page.wait_for_function("document.getElementById('prefetch').dataset.key")
    return page.locator("#prefetch").get_attribute("data-key")


def _settled(page: Page) -> None:
    page.wait_for_function("document.documentElement.dataset.pending === '0'")


def _stored(assignment: Assignment, screen: str) -> str:
    left, right = ("a", "b") if assignment.presentation_order == "ab" else ("b", "a")
    return {"left": left, "right": right}[screen]


def _same_scale(page: Page) -> float:
    """Wait until A and B are drawn at one scale; that scale."""
    page.wait_for_function("document.querySelector('#pair .candidates')?.dataset.scale")
    ratios = page.evaluate(
        """[...document.querySelectorAll('#pair .candidates img')].map(
             (i) => i.getBoundingClientRect().width / i.naturalWidth)"""
    )
    assert len(ratios) == 2
    assert abs(ratios[0] - ratios[1]) < 0.02, ratios
    return ratios[0]


def test_an_annotator_labels_image_and_audio_pairs_from_the_keyboard(
    page: Page, live_server, transactional_db, annotator, project, other_project
):
    images = [media_comparison_make(project, kind="image", seed=i) for i in range(5)]
    other_project.require_full_play = True
    other_project.save()
    MembershipFactory(project=other_project, user=annotator, role=Membership.Role.ANNOTATOR)
    clips = [media_comparison_make(other_project, kind="audio", seed=10 + i) for i in range(5)]
    log_in(page, live_server.url, annotator.username)
    keyboard = page.keyboard

    # ------------------------------------------------------------------ 5 image pairs
    page.goto(f"{live_server.url}/projects/{project.slug}/label/")
    expect(page.locator("#pair .label-form")).to_be_visible()
    page.evaluate("window.__marker = 1")
    assert _same_scale(page) > 1  # 64x48 pictures are enlarged to fill the columns

    # f: A full size; b flips to B; Esc closes. A click opens the clicked one.
    viewer = page.locator("#media-viewer")
    keyboard.press("f")
    expect(viewer).to_be_visible()
    expect(viewer).to_have_attribute("data-mode", "single")
    expect(viewer.locator("[data-viewer-title]")).to_have_text("A, full size")
    keyboard.press("b")
    expect(viewer.locator("[data-viewer-title]")).to_have_text("B, full size")
    keyboard.press("1")  # swallowed by the view: no answer is given behind it
    keyboard.press("Escape")
    expect(viewer).to_be_hidden()
    expect(page.locator("#pair input[name=choice]:checked")).to_have_count(0)
    page.locator("#pair [data-side=right] img").click()
    expect(viewer.locator("[data-viewer-title]")).to_have_text("B, full size")
    keyboard.press("Escape")
    expect(viewer).to_be_hidden()

    # z: both in one zoom; the wheel zooms both alike.
    keyboard.press("z")
    expect(viewer).to_have_attribute("data-mode", "sync")
    panes = viewer.locator(".viewer-pane")
    expect(panes).to_have_count(2)
    before = float(viewer.get_attribute("data-scale"))
    box = panes.nth(0).bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.mouse.wheel(0, -400)
    page.wait_for_function(
        f"Number(document.getElementById('media-viewer').dataset.scale) > {before}"
    )
    widths = page.evaluate(
        "[...document.querySelectorAll('#media-viewer .viewer-pane img')].map((i) => i.style.width)"
    )
    assert widths[0] == widths[1], widths
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] / 2 + 40, box["y"] + box["height"] / 2 + 10)
    page.mouse.up()
    moved = page.evaluate(
        "[...document.querySelectorAll('#media-viewer .viewer-pane img')].map((i) => i.style.transform)"
    )
    assert moved[0] == moved[1], moved  # same-size pictures: the same place in both panes
    keyboard.press("Escape")
    expect(viewer).to_be_hidden()

    image_answers: dict[str, str] = {}
    for n in range(5):
        key = _shown(page)
        following = _prefetched(page) if n < 4 else None
        if following:
            # The next pair's pictures are fetched before it is shown.
            src = page.locator("#prefetch").evaluate(
                "t => t.content.querySelector('img[data-media-image]').getAttribute('src')"
            )
            page.wait_for_function(
                "s => performance.getEntriesByType('resource').some((e) => e.name.endsWith(s))",
                arg=src,
            )
        screen = "left" if n % 2 == 0 else "right"
        keyboard.press("1" if screen == "left" else "2")
        keyboard.press("Enter")
        image_answers[key] = screen
        if following:
            assert _wait_for_another(page, key) == following
            _same_scale(page)
    expect(page.locator("#pair .done")).to_be_visible()
    _settled(page)
    assert page.evaluate("window.__marker") == 1  # every pair came in by a swap

    # ------------------------------------------------------------------ 5 audio pairs
    page.goto(f"{live_server.url}/projects/{other_project.slug}/label/")
    expect(page.locator("#pair .label-form")).to_be_visible()
    left = page.locator("#pair [data-side=left] [data-media-audio]")
    right = page.locator("#pair [data-side=right] [data-media-audio]")
    hint = page.locator("#pair [data-play-hint]")

    def both_played() -> None:
        expect(left).to_have_class(PLAYED)
        expect(right).to_have_class(PLAYED)
        expect(hint).to_be_hidden()
        expect(page.locator("#pair input[name=choice]").first).to_be_enabled()

    def blocked() -> None:
        expect(left).to_have_class(WAVEFORM)
        expect(left).not_to_have_class(PLAYED)
        expect(hint).to_be_visible()
        expect(page.locator("#pair input[name=choice]").first).to_be_disabled()
        keyboard.press("1")
        expect(page.locator("#toast")).to_contain_text("Play both clips to the end")
        expect(page.locator("#pair input[name=choice]:checked")).to_have_count(0)

    audio_answers: dict[str, str] = {}

    # 1: play A, switch to B at the same moment (x), B plays to its end, then A does.
    key = _shown(page)
    blocked()
    keyboard.press("Enter")
    assert _shown(page) == key  # refused on the page: nothing sent
    keyboard.press("a")
    page.wait_for_function(
        "() => { const a = document.querySelector('#pair [data-side=left] audio');"
        " return !a.paused && a.currentTime > 0.05; }"
    )
    keyboard.press("x")
    expect(page.locator("#pair")).to_have_attribute("data-switches", "1")
    switched = page.evaluate(
        """() => { const [a, b] = document.querySelectorAll('#pair audio');
                   return { aPaused: a.paused, aAt: a.currentTime, bAt: b.currentTime }; }"""
    )
    assert switched["aPaused"]
    assert switched["bAt"] >= switched["aAt"] - 0.05, switched  # B took over where A was
    expect(right).to_have_class(PLAYED)
    expect(hint).to_be_visible()  # A is not played to its end yet
    keyboard.press("a")  # A goes on from where it paused
    both_played()
    keyboard.press("2")
    keyboard.press("Enter")
    audio_answers[key] = "right"
    key = _wait_for_another(page, key)

    # 2: the page's block lifted by hand: the server refuses the answer all the same.
    blocked()
    page.evaluate(
        """() => { const p = document.getElementById('pair'); delete p.dataset.playBlocked;
                   p.querySelector('fieldset.choices').disabled = false; }"""
    )
    keyboard.press("1")
    keyboard.press("Enter")
    expect(page.locator("#toast, #pair .error").filter(has_text=NOT_PLAYED).first).to_be_visible()
    page.wait_for_function("k => document.getElementById('pair').dataset.key === k", arg=key)
    _settled(page)
    assert not Judgement.objects.filter(assignment__key=key).exists()

    # 2 again, then 3 to 5: both clips played from the keyboard, seeking by a click once.
    for n in range(4):
        if n == 0:
            box = page.locator("#pair [data-side=left] .waveform").bounding_box()
            page.mouse.click(box["x"] + box["width"] * 0.6, box["y"] + box["height"] / 2)
            page.wait_for_function(
                "document.querySelector('#pair [data-side=left] audio').currentTime > 0.15"
            )
        else:
            blocked()
        keyboard.press("a")
        expect(left).to_have_class(PLAYED)
        keyboard.press("b")
        both_played()
        screen = "left" if n % 2 == 0 else "right"
        keyboard.press("1" if screen == "left" else "2")
        keyboard.press("Enter")
        audio_answers[key] = screen
        key = _wait_for_another(page, key)
    _settled(page)

    # ------------------------------------------------------------------ the database
    judgements = Judgement.objects.filter(user=annotator).select_related("assignment")
    assert judgements.count() == 10
    by_key = {str(j.assignment.key): j for j in judgements}
    for answers, comparisons in ((image_answers, images), (audio_answers, clips)):
        assert len(answers) == 5
        assert {by_key[k].comparison_id for k in answers} == {c.pk for c in comparisons}
        for k, screen in answers.items():
            assert by_key[k].choice == _stored(by_key[k].assignment, screen)
    for k in audio_answers:
        assert by_key[k].assignment.played == ["a", "b"]


def test_the_media_url_in_the_page_is_the_content_hash(
    page: Page, live_server, transactional_db, annotator, project
):
    comparison = media_comparison_make(project, kind="image")
    log_in(page, live_server.url, annotator.username)
    page.goto(f"{live_server.url}/projects/{project.slug}/label/")
    srcs = page.locator("#pair img[data-media-image]").evaluate_all(
        "imgs => imgs.map((i) => i.getAttribute('src'))"
    )
    expected = {
        reverse("annotation:media", args=[project.slug, PurePosixPath(c.file.name).name])
        for c in (comparison.candidate_a, comparison.candidate_b)
    }
    assert set(srcs) == expected
    # Both pictures really loaded through the private view.
    page.wait_for_function(
        "[...document.querySelectorAll('#pair img[data-media-image]')].every((i) => i.naturalWidth)"
    )


def test_a_ranking_of_clips_is_played_from_the_keyboard_before_it_is_accepted(
    page: Page, live_server, transactional_db, annotator, project
):
    project.label_schema = {"mode": "ranking"}
    project.require_full_play = True
    project.save()
    first = media_comparison_make(project, kind="audio", seed=3)
    second = media_comparison_make(project, kind="audio", seed=4)
    clips = [first.candidate_a, first.candidate_b, second.candidate_a]
    Candidate.objects.filter(pk=clips[2].pk).update(prompt=first.prompt)
    project.comparisons.all().delete()
    ranking = Ranking.objects.create(project=project, prompt=first.prompt)
    ranking.candidates.set(clips)
    log_in(page, live_server.url, annotator.username)
    page.goto(f"{live_server.url}/projects/{project.slug}/label/")
    items = page.locator("#ranking .rank-item")
    expect(items).to_have_count(3)
    expect(page.locator("#ranking .has-waveform")).to_have_count(3)

    page.keyboard.press("Enter")
    expect(page.locator("#toast")).to_contain_text("Play every clip to the end")
    for number in ("1", "2", "3"):
        page.keyboard.press(number)
        page.keyboard.press("p")
        expect(items.nth(int(number) - 1).locator("[data-media-audio]")).to_have_class(PLAYED)
    expect(page.locator("#ranking [data-play-hint]")).to_be_hidden()
    page.keyboard.press("Enter")
    page.wait_for_function("document.documentElement.dataset.pending === '0'")
    judgement = RankingJudgement.objects.get(ranking=ranking)
    assert sorted(g[0] for g in judgement.order) == sorted(c.pk for c in clips)
    assert sorted(judgement.assignment.played) == sorted(c.pk for c in clips)

"""The labelling page in a real browser: a day's work from the keyboard, and hostile texts.

The page swaps pairs with htmx and label.js; a full page load would drop `window.__marker`,
so its presence at the end proves that every change was a swap.
"""

from __future__ import annotations

import json

import pytest
from playwright.sync_api import Page, expect

from annotation.models import Assignment, Judgement
from annotation.services.importing import pairs_import
from tests.browser.pages import log_in

pytestmark = pytest.mark.browser

# Runs in every document before its own scripts: the key of each pair swapped in.
RECORDER = """
window.__shown = [];
document.addEventListener("htmx:afterSwap", (e) => {
  if (e.target.id === "pair") window.__shown.push(e.target.dataset.key);
});
"""
XSS = [
    "<script>window.__xss=1</script>",
    '<img src=x onerror="window.__xss=1">',
    "[click](javascript:window.__xss=1)",
    '<a href="javascript:window.__xss=1">x</a>',
    '<svg onload="window.__xss=1">',
    '<p hx-on:htmx:load="window.__xss=1" hx-get="/steal" hx-trigger="load">htmx text</p>',
    '<iframe src="javascript:window.__xss=1"></iframe>',
]


def _import(project, tmp_path, rows: list[dict]) -> None:
    path = tmp_path / "pool.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    pairs_import(project=project, path=path, source_name="import:pool.jsonl")


def _open(page: Page, base_url: str, project) -> None:
    page.add_init_script(RECORDER)
    page.goto(f"{base_url}/projects/{project.slug}/label/")
    expect(page.locator("#pair .label-form")).to_be_visible()
    page.evaluate("window.__marker = 1")


def _shown(page: Page) -> str:
    return page.locator("#pair").get_attribute("data-key")


def _prefetched(page: Page) -> str:
    """Wait until the next pair is waiting in the page; its key."""
    page.wait_for_function("document.getElementById('prefetch').dataset.key")
    return page.locator("#prefetch").get_attribute("data-key")


def _wait_for_another(page: Page, key: str) -> str:
    page.wait_for_function("k => document.getElementById('pair').dataset.key !== k", arg=key)
    return _shown(page)


def _settled(page: Page) -> None:
    """Every answer saved and every prefetch back."""
    page.wait_for_function("document.documentElement.dataset.pending === '0'")


def _stored(assignment: Assignment, screen: str) -> str:
    left, right = ("a", "b") if assignment.presentation_order == "ab" else ("b", "a")
    return {"left": left, "right": right, "tie": "tie", "both_bad": "both_bad"}[screen]


def test_an_annotator_labels_ten_pairs_from_the_keyboard(
    page: Page, live_server, transactional_db, annotator, project, tmp_path
):
    project.label_schema = {
        "mode": "pairwise",
        "allow_tie": True,
        "allow_both_bad": True,
        "strength": ["slight", "clear", "strong"],
        "aspects": [],
        "rationale": "optional",
    }
    project.instructions = "Prefer the **honest** answer."
    project.save()
    _import(
        project,
        tmp_path,
        [{"prompt": f"Question {i}?", "responses": [f"Yes {i}.", f"No {i}."]} for i in range(14)],
    )
    log_in(page, live_server.url, annotator.username)
    _open(page, live_server.url, project)
    keyboard = page.keyboard
    answers: dict[str, tuple[str, int | None]] = {}  # key -> (screen choice, strength)

    def answer(choice_key: str, screen: str, strength_key: str | None = None, level=None):
        key = _shown(page)
        following = _prefetched(page)
        keyboard.press(choice_key)
        if strength_key:
            keyboard.press(strength_key)
        expect(page.locator(f"#pair input[name=choice][value={screen}]")).to_be_checked()
        keyboard.press("Enter")
        # The prefetched pair is the one that appears.
        assert _wait_for_another(page, key) == following
        answers[key] = (screen, level)
        return key

    # 1: A, clear. The shortcut sheet and the instructions open and close from the keyboard.
    keyboard.press("?")
    expect(page.locator("#shortcuts")).to_be_visible()
    keyboard.press("?")
    expect(page.locator("#shortcuts")).to_be_hidden()
    keyboard.press("i")
    expect(page.locator("#instructions strong")).to_have_text("honest")
    keyboard.press("Escape")
    expect(page.locator("#instructions")).to_be_hidden()
    first = answer("1", "left", "w", 1)

    # 2: B, slight, with a rationale whose keys would all be shortcuts outside the box.
    key = _shown(page)
    following = _prefetched(page)
    keyboard.press("2")
    keyboard.press("q")
    keyboard.press("c")
    expect(page.locator("#pair textarea[name=rationale]")).to_be_focused()
    keyboard.type("B is kind; A says 1 thing, u s e i?")
    keyboard.press("Escape")
    expect(page.locator("#pair textarea[name=rationale]")).not_to_be_focused()
    expect(page.locator("#pair input[name=choice][value=right]")).to_be_checked()
    expect(page.locator("#pair input[name=strength][value='0']")).to_be_checked()
    keyboard.press("Enter")
    assert _wait_for_another(page, key) == following
    answers[key] = ("right", 0)

    # 3: a tie.
    tie = answer("3", "tie")

    # 4: skipped, with a reason typed in the inline box (its keys are not shortcuts either).
    skipped = _shown(page)
    following = _prefetched(page)
    keyboard.press("s")
    reason = page.locator("#pair .skip-form input[name=reason]")
    expect(reason).to_be_focused()
    keyboard.type("not my language 2")
    keyboard.press("Enter")
    assert _wait_for_another(page, skipped) == following

    # 5: answered, taken back with u, then answered again differently.
    undone = answer("1", "left")
    after_undone = _shown(page)
    _settled(page)
    keyboard.press("u")
    assert _wait_for_another(page, after_undone) == undone
    expect(page.locator("#toast")).to_contain_text("taken back")
    expect(page.locator("#pair input[name=choice]:checked")).to_have_count(0)
    answer("2", "right", "e", 2)
    assert _shown(page) == after_undone  # the pair prefetched before the undo comes back

    # 6: both bad.
    answer("4", "both_bad")

    # 7, then 8 with nothing prefetched (the prefetch fails): the answer's own response
    # brings the next pair.
    _prefetched(page)
    page.route("**/label/?prefetch=*", lambda route: route.abort())
    answer("1", "left", "e", 2)
    _settled(page)
    assert not page.locator("#prefetch").get_attribute("data-key")
    page.unroute("**/label/?prefetch=*")
    fallback = _shown(page)
    keyboard.press("2")
    keyboard.press("Enter")
    _wait_for_another(page, fallback)
    answers[fallback] = ("right", None)

    # 9 and 10.
    answer("1", "left", "q", 0)
    answer("2", "right", "w", 1)
    _settled(page)

    # No page load: every pair came in by a swap, none twice except the one taken back.
    assert page.evaluate("window.__marker") == 1
    shown = page.evaluate("window.__shown")
    assert shown.count(undone) == 2, shown
    assert shown.count(after_undone) == 2, shown
    assert len(shown) == len(set(shown)) + 2, shown
    assert first not in shown
    assert {skipped, tie} <= set(shown)

    judgements = Judgement.objects.filter(user=annotator).select_related("assignment")
    assert judgements.count() == 9 == len(answers)
    assert judgements.values("comparison").distinct().count() == 9
    for judgement in judgements:
        screen, level = answers[str(judgement.assignment.key)]
        assert judgement.choice == _stored(judgement.assignment, screen), screen
        assert judgement.strength == level
        assert judgement.presentation_order == judgement.assignment.presentation_order
        assert judgement.time_spent_ms is not None
    rationale = Judgement.objects.exclude(rationale="").get()
    assert rationale.rationale == "B is kind; A says 1 thing, u s e i?"
    assert [j.choice for j in judgements].count("tie") == 1
    assert {fallback, tie} <= set(answers)
    skips = Assignment.objects.filter(annotator=annotator, state=Assignment.State.SKIPPED)
    assert [(str(a.key), a.skip_reason) for a in skips] == [(skipped, "not my language 2")]
    assert not Judgement.objects.filter(assignment__key=skipped).exists()
    expect(page.locator("#pair .progress")).to_contain_text("Today 9")


def test_hostile_texts_are_shown_inert(
    page: Page, live_server, transactional_db, annotator, project, tmp_path
):
    project.instructions = "Read carefully. " + " ".join(XSS)
    project.save()
    _import(
        project,
        tmp_path,
        [
            {
                "prompt": f"Prompt {i} " + " ".join(XSS),
                "responses": [
                    f"Left text {i}\n\n" + "\n\n".join(XSS),
                    f"Right text {i} " + " ".join(reversed(XSS)),
                ],
            }
            for i in range(3)
        ],
    )
    log_in(page, live_server.url, annotator.username)
    _open(page, live_server.url, project)

    def assert_inert() -> None:
        page.wait_for_timeout(300)  # time for an onerror or onload to fire, were one left
        assert page.evaluate("window.__xss") is None
        found = page.evaluate(
            """() => {
              const scripts = [...document.scripts].filter((s) => s.textContent.includes("__xss"));
              const handlers = [...document.querySelectorAll("*")].filter((el) =>
                [...el.attributes].some((a) => a.name.startsWith("on") || a.name.startsWith("hx-on")
                  || a.value.includes("javascript:")));
              const prefetched = document.getElementById("prefetch").content;
              return {
                scripts: scripts.length,
                handlers: handlers.map((el) => el.outerHTML),
                embedded: document.querySelectorAll("#pair svg, #pair iframe, #instructions svg, #instructions iframe").length,
                prefetchedScripts: prefetched.querySelectorAll("script, svg, iframe, [onerror]").length,
              };
            }"""
        )
        assert found == {"scripts": 0, "handlers": [], "embedded": 0, "prefetchedScripts": 0}
        # The words are there as words: the texts were shown, not dropped whole.
        for side in ("left", "right"):
            expect(page.locator(f"#pair .candidate[data-side={side}]")).to_contain_text("text")
        # Payloads in blocks of their own leave their words behind; an unclosed <svg> inside
        # a paragraph takes the rest of it along, which is fine: removed is inert too.
        paragraphs = page.locator("#pair .candidate", has_text="Left text")
        expect(paragraphs).to_contain_text("click")
        expect(paragraphs).to_contain_text("htmx text")

    assert_inert()
    for link in page.locator("#pair .candidate a, #pair .prompt a").all():
        link.click()
    keyboard = page.keyboard
    keyboard.press("i")
    expect(page.locator("#instructions")).to_be_visible()
    keyboard.press("Escape")
    assert_inert()

    # The next pair comes in through an htmx swap: still inert.
    key = _shown(page)
    _prefetched(page)
    keyboard.press("1")
    keyboard.press("Enter")
    _wait_for_another(page, key)
    _settled(page)
    assert_inert()
    assert page.evaluate("window.__marker") == 1
    assert Judgement.objects.filter(user=annotator).count() == 1


def test_a_refused_answer_brings_its_pair_back_with_the_reason(
    page: Page, live_server, transactional_db, annotator, project, tmp_path
):
    _import(
        project,
        tmp_path,
        [{"prompt": f"Question {i}?", "responses": [f"Yes {i}.", f"No {i}."]} for i in range(3)],
    )
    log_in(page, live_server.url, annotator.username)
    _open(page, live_server.url, project)
    refused = _shown(page)
    following = _prefetched(page)
    # The admin starts asking for a rationale while the page is open: the server refuses
    # an answer that the page, as loaded, let through.
    project.label_schema = {**project.label_schema, "rationale": "required"}
    project.save()

    page.keyboard.press("1")
    page.keyboard.press("Enter")

    # The next pair appeared at once; the refused one comes back with the reason and the
    # answer as given.
    page.wait_for_function("k => window.__shown.includes(k)", arg=following)
    page.wait_for_function("k => document.getElementById('pair').dataset.key === k", arg=refused)
    expect(page.locator("#pair .error")).to_have_text("This project asks for a rationale.")
    expect(page.locator("#toast")).to_contain_text("not saved")
    expect(page.locator("#pair input[name=choice][value=left]")).to_be_checked()
    assert not Judgement.objects.exists()

    page.keyboard.press("c")
    page.keyboard.type("A answers the question.")
    page.keyboard.press("Escape")
    page.keyboard.press("Enter")

    assert _wait_for_another(page, refused) == following
    _settled(page)
    judgement = Judgement.objects.get()
    assert (str(judgement.assignment.key), judgement.rationale) == (
        refused,
        "A answers the question.",
    )
    assert page.evaluate("window.__marker") == 1

"""The labelling page without a browser: pairs, answers, skips, undo, permissions, blindness."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta

import pytest
from django.core.cache import cache
from django.urls import reverse
from django.utils import timezone
from django.utils.html import escape

from annotation.models import Assignment, Comparison, Judgement, Membership
from annotation.selectors import annotator_progress
from annotation.services.importing import pairs_import
from annotation.services.queue import Answer, assignment_next_for, judgement_submit
from tests.factories import MembershipFactory, ProjectFactory, UserFactory

pytestmark = pytest.mark.django_db

HX = {"HX-Request": "true"}


def _pool(project, tmp_path, n: int, name: str = "pool.jsonl") -> None:
    """n unlabelled comparisons, each a prompt with two responses."""
    path = tmp_path / name
    path.write_text(
        "".join(
            json.dumps({"prompt": f"Prompt {i}", "responses": [f"Alpha {i}", f"Omega {i}"]}) + "\n"
            for i in range(n)
        )
    )
    pairs_import(project=project, path=path, source_name=f"import:{name}")


def _schema(project, **changes) -> None:
    project.label_schema = {**project.label_schema, **changes}
    project.save()


def _label(project) -> str:
    return reverse("annotation:label", args=[project.slug])


def _submit(project, assignment) -> str:
    return reverse("annotation:label_submit", args=[project.slug, assignment.key])


def _skip(project, assignment) -> str:
    return reverse("annotation:label_skip", args=[project.slug, assignment.key])


def _undo(project) -> str:
    return reverse("annotation:label_undo", args=[project.slug])


def _leased(annotator) -> Assignment:
    """The annotator's oldest open lease: the pair the page shows."""
    return (
        Assignment.objects.filter(annotator=annotator, state=Assignment.State.LEASED)
        .select_related("comparison__candidate_a", "comparison__candidate_b")
        .order_by("created_at")
        .first()
    )


def _shown_key(html: str) -> str:
    marker = 'id="pair" class="pair" data-key="'
    start = html.index(marker) + len(marker)
    return html[start : html.index('"', start)]


@pytest.mark.parametrize(("order", "stored"), [("ab", "a"), ("ba", "b")])
def test_left_is_stored_as_the_candidate_shown_on_the_left(
    client, project, annotator, tmp_path, order, stored
):
    _pool(project, tmp_path, 2)
    client.force_login(annotator)
    assert client.get(_label(project)).status_code == 200
    assignment = _leased(annotator)
    Assignment.objects.filter(pk=assignment.pk).update(presentation_order=order)

    html = client.get(_label(project)).content.decode()
    comparison = assignment.comparison
    a, b = comparison.candidate_a.text, comparison.candidate_b.text
    left, right = (a, b) if order == "ab" else (b, a)
    assert html.index(f"<p>{left}</p>") < html.index(f"<p>{right}</p>")

    response = client.post(_submit(project, assignment), {"choice": "left", "strength": "1"})

    assert response.status_code == 302
    assert response.url == _label(project)
    judgement = Judgement.objects.get(assignment=assignment)
    assert judgement.choice == stored
    assert (judgement.presentation_order, judgement.strength) == (order, 1)
    assert judgement.user == annotator


@pytest.mark.parametrize("order", ["ab", "ba"])
def test_aspect_ratings_are_stored_per_real_candidate(client, project, annotator, tmp_path, order):
    _schema(project, aspects=[{"name": "helpfulness", "min": 1, "max": 5}])
    _pool(project, tmp_path, 1)
    client.force_login(annotator)
    client.get(_label(project))
    assignment = _leased(annotator)
    Assignment.objects.filter(pk=assignment.pk).update(presentation_order=order)

    response = client.post(
        _submit(project, assignment),
        {
            "choice": "right",
            "aspect-left-helpfulness": "4",
            "aspect-right-helpfulness": "2",
            "time_spent_ms": "5300",
        },
        headers=HX,
    )

    assert response.status_code == 200
    judgement = Judgement.objects.get(assignment=assignment)
    left, right = ("a", "b") if order == "ab" else ("b", "a")
    assert judgement.choice == right
    assert judgement.aspects == {left: {"helpfulness": 4}, right: {"helpfulness": 2}}
    assert judgement.time_spent_ms == 5300


def test_double_submit_makes_one_judgement(client, project, annotator, tmp_path):
    _pool(project, tmp_path, 3)
    client.force_login(annotator)
    client.get(_label(project))
    assignment = _leased(annotator)

    first = client.post(_submit(project, assignment), {"choice": "right"}, headers=HX)
    second = client.post(_submit(project, assignment), {"choice": "right"}, headers=HX)

    assert (first.status_code, second.status_code) == (200, 200)
    # Both answers show the same next pair: the replay leased nothing more.
    assert _shown_key(first.content.decode()) == _shown_key(second.content.decode())
    assert Judgement.objects.filter(assignment=assignment).count() == 1
    assert Judgement.objects.filter(user=annotator).count() == 1
    assert Assignment.objects.filter(annotator=annotator).count() == 2


def test_a_skipped_comparison_never_comes_back(client, project, annotator, tmp_path):
    _pool(project, tmp_path, 3)
    client.force_login(annotator)
    client.get(_label(project))
    skipped = _leased(annotator)

    response = client.post(_skip(project, skipped), {"reason": "not my language"})

    assert response.status_code == 302
    skipped.refresh_from_db()
    assert (skipped.state, skipped.skip_reason) == ("skipped", "not my language")
    served = []
    while (html := client.get(_label(project), headers=HX).content.decode()) and (
        key := _shown_key(html)
    ):
        assignment = Assignment.objects.get(key=key)
        served.append(assignment.comparison_id)
        client.post(_submit(project, assignment), {"choice": "left"}, headers=HX)
    assert "Nothing is waiting for you" in html
    assert skipped.comparison_id not in served
    assert len(served) == len(set(served)) == 2
    assert not Judgement.objects.filter(comparison=skipped.comparison).exists()


def test_skip_with_htmx_answers_with_the_next_pair(client, project, annotator, tmp_path):
    _pool(project, tmp_path, 2)
    client.force_login(annotator)
    client.get(_label(project))
    skipped = _leased(annotator)

    response = client.post(_skip(project, skipped), {"reason": ""}, headers=HX)

    assert response.status_code == 200
    assert _shown_key(response.content.decode()) == str(_leased(annotator).key)
    assert _leased(annotator).comparison_id != skipped.comparison_id


def test_undo_reopens_the_last_answer_and_keeps_the_prefetched_pair(
    client, project, annotator, tmp_path
):
    _pool(project, tmp_path, 4)
    client.force_login(annotator)
    client.get(_label(project))
    first = _leased(annotator)
    prefetched = client.get(_label(project) + f"?prefetch={first.key}").content.decode()
    client.post(_submit(project, first), {"choice": "left"}, headers=HX)

    response = client.post(_undo(project), headers=HX)

    assert response.status_code == 200
    assert _shown_key(response.content.decode()) == str(first.key)
    first.refresh_from_db()
    assert first.state == Assignment.State.LEASED
    assert not Judgement.objects.filter(user=annotator).exists()
    first.comparison.refresh_from_db()
    assert first.comparison.human_judgement_count == 0
    # The pair that was prefetched stays leased and comes after the reopened one.
    second = Assignment.objects.get(key=_shown_key(prefetched))
    assert second.state == Assignment.State.LEASED
    again = client.get(_label(project) + f"?prefetch={first.key}").content.decode()
    assert _shown_key(again) == str(second.key)
    # The reopened item can be answered again, differently.
    client.post(_submit(project, first), {"choice": "right"}, headers=HX)
    assert Judgement.objects.get(user=annotator).choice == (
        "b" if first.presentation_order == "ab" else "a"
    )


def test_undo_without_javascript_redirects_to_the_reopened_pair(
    client, project, annotator, tmp_path
):
    _pool(project, tmp_path, 3)
    client.force_login(annotator)
    client.get(_label(project))
    first = _leased(annotator)
    client.post(_submit(project, first), {"choice": "left"})
    assert _leased(annotator) != first

    response = client.post(_undo(project))

    assert response.status_code == 302
    assert _shown_key(client.get(response.url).content.decode()) == str(first.key)
    assert not Judgement.objects.exists()


def test_undo_with_nothing_to_undo_says_so(client, project, annotator, tmp_path):
    _pool(project, tmp_path, 1)
    client.force_login(annotator)
    client.get(_label(project))

    response = client.post(_undo(project), headers=HX)

    assert response.status_code == 400
    assert "There is nothing to undo." in response.content.decode()
    assert _shown_key(response.content.decode()) == str(_leased(annotator).key)


def test_outsider_gets_404_on_every_labelling_url(client, project, annotator, outsider, tmp_path):
    _pool(project, tmp_path, 2)
    assignment = assignment_next_for(annotator=annotator, project=project)
    client.force_login(outsider)

    assert client.get(_label(project)).status_code == 404
    assert client.get(_label(project) + f"?prefetch={assignment.key}").status_code == 404
    assert client.post(_submit(project, assignment), {"choice": "left"}).status_code == 404
    assert client.post(_skip(project, assignment), {"reason": "x"}).status_code == 404
    assert client.post(_undo(project)).status_code == 404

    assert not Judgement.objects.exists()
    assert Assignment.objects.get().state == Assignment.State.LEASED


def test_anonymous_users_are_sent_to_log_in(client, project, annotator, tmp_path):
    _pool(project, tmp_path, 1)
    assignment = assignment_next_for(annotator=annotator, project=project)
    for response in (
        client.get(_label(project)),
        client.post(_submit(project, assignment), {"choice": "left"}),
        client.post(_skip(project, assignment)),
        client.post(_undo(project)),
    ):
        assert response.status_code == 302
        assert response.url.startswith("/accounts/login/")
    assert not Judgement.objects.exists()


def test_another_annotators_assignment_key_is_404(client, project, annotator, tmp_path):
    _pool(project, tmp_path, 3)
    colleague = MembershipFactory(project=project, user=UserFactory(username="cole")).user
    theirs = assignment_next_for(annotator=colleague, project=project)
    elsewhere = ProjectFactory(slug="gamma")
    MembershipFactory(project=elsewhere, user=annotator)
    _pool(elsewhere, tmp_path, 1, name="gamma.jsonl")
    mine_elsewhere = assignment_next_for(annotator=annotator, project=elsewhere)
    client.force_login(annotator)

    for key in (theirs.key, mine_elsewhere.key):
        submit = reverse("annotation:label_submit", args=[project.slug, key])
        skip = reverse("annotation:label_skip", args=[project.slug, key])
        assert client.post(submit, {"choice": "left"}, headers=HX).status_code == 404
        assert client.post(skip, {"reason": ""}, headers=HX).status_code == 404
        assert client.get(_label(project) + f"?prefetch={key}").status_code == 404
    assert client.get(_label(project) + "?prefetch=not-a-uuid").status_code == 404
    assert client.get(_label(project) + f"?prefetch={uuid.uuid4()}").status_code == 404

    assert not Judgement.objects.exists()
    assert not Assignment.objects.exclude(state=Assignment.State.LEASED).exists()


@pytest.mark.parametrize("role", [Membership.Role.ADMIN, Membership.Role.REVIEWER])
def test_every_member_role_may_label(client, project, tmp_path, role):
    _pool(project, tmp_path, 1)
    member = MembershipFactory(project=project, user=UserFactory(), role=role).user
    client.force_login(member)

    assert client.get(_label(project)).status_code == 200
    response = client.post(_submit(project, _leased(member)), {"choice": "left"})

    assert response.status_code == 302
    assert Judgement.objects.get().user == member


def test_the_page_never_shows_other_labels(client, project, annotator, tmp_path):
    """Blind labelling: imported labels, AI labels, other people's answers, the comparison's
    label and model names stay off the page."""
    project.overlap = 2
    project.save()
    path = tmp_path / "secret-labels.jsonl"
    path.write_text(
        "".join(
            json.dumps({"prompt": f"Q{i}", "chosen": f"Good {i}", "rejected": f"Bad {i}"}) + "\n"
            for i in range(2)
        )
    )
    pairs_import(project=project, path=path, source_name="import:secret-labels.jsonl")
    # The project asks people to label the imported pairs again.
    Comparison.objects.update(status=Comparison.Status.PENDING, label_confidence=0.93)
    for comparison in Comparison.objects.all():
        Judgement.objects.create(
            comparison=comparison,
            source_kind=Judgement.SourceKind.AI,
            source_name="ai:judge-9000",
            choice="b",
            confidence=0.77,
            rationale="the AI judge's secret reasoning",
            idempotency_key=f"ai-{comparison.pk}",
        )
        comparison.candidate_a.source_model = "model-zeta"
        comparison.candidate_a.save()
    colleague = MembershipFactory(project=project, user=UserFactory(username="cole")).user
    theirs = assignment_next_for(annotator=colleague, project=project)
    judgement_submit(
        assignment=theirs,
        annotator=colleague,
        answer=Answer("left", rationale="a colleague's secret rationale"),
    )
    client.force_login(annotator)

    page = client.get(_label(project)).content.decode()
    current = _leased(annotator)
    fragment = client.get(_label(project), headers=HX).content.decode()
    prefetched = client.get(_label(project) + f"?prefetch={current.key}").content.decode()

    assert Judgement.objects.filter(source_name="import:secret-labels.jsonl").count() == 2
    for html in (page, fragment, prefetched):
        assert _shown_key(html)
        for secret in (
            "import:",
            "secret-labels",
            "judge-9000",
            "secret reasoning",
            "secret rationale",
            "cole",
            "model-zeta",
            "0.93",
            "0.77",
        ):
            assert secret not in html, secret


def test_htmx_gets_only_the_pair_fragment(client, project, annotator, tmp_path):
    _pool(project, tmp_path, 2)
    client.force_login(annotator)

    page = client.get(_label(project))
    fragment = client.get(_label(project), headers=HX)

    assert "<html" in page.content.decode()
    assert 'id="shortcuts"' in page.content.decode()
    html = fragment.content.decode()
    assert fragment.status_code == 200
    assert "<html" not in html
    assert "<body" not in html
    assert html.strip().startswith('<section id="pair"')
    assert html.strip().endswith("</section>")
    assert _shown_key(html) == _shown_key(page.content.decode())
    assert "HX-Request" in fragment["Vary"]
    assert "no-store" in page["Cache-Control"]


def test_prefetch_leases_the_following_pair_once(client, project, annotator, tmp_path):
    _pool(project, tmp_path, 4)
    client.force_login(annotator)
    current = _shown_key(client.get(_label(project)).content.decode())

    first = client.get(_label(project) + f"?prefetch={current}")
    again = client.get(_label(project) + f"?prefetch={current}")

    assert first.status_code == 200
    assert "<html" not in first.content.decode()
    following = _shown_key(first.content.decode())
    assert following not in ("", current)
    assert _shown_key(again.content.decode()) == following
    lease = int(first.content.decode().split('data-lease-seconds="')[1].split('"')[0])
    assert 500 < lease <= 600
    assert Assignment.objects.filter(annotator=annotator).count() == 2
    # Answering the current pair shows the prefetched one: nothing more is leased.
    response = client.post(
        reverse("annotation:label_submit", args=[project.slug, current]),
        {"choice": "left"},
        headers=HX,
    )
    assert _shown_key(response.content.decode()) == following
    assert Assignment.objects.filter(annotator=annotator).count() == 2


@pytest.mark.parametrize(
    ("choice", "message"),
    [
        ("tie", "This project does not allow ties."),
        ("both_bad", "This project does not allow 'both bad'."),
        ("sideways", "Choose A, B, tie or both bad."),
        ("", "Choose A, B, tie or both bad."),
    ],
)
def test_a_choice_the_schema_does_not_allow_is_refused(
    client, project, annotator, tmp_path, choice, message
):
    _schema(project, allow_tie=False, allow_both_bad=False)
    _pool(project, tmp_path, 2)
    client.force_login(annotator)
    client.get(_label(project))
    assignment = _leased(annotator)

    fragment = client.post(_submit(project, assignment), {"choice": choice}, headers=HX)
    page = client.post(_submit(project, assignment), {"choice": choice})

    for response in (fragment, page):
        assert response.status_code == 400
        assert escape(message) in response.content.decode()
        assert _shown_key(response.content.decode()) == str(assignment.key)
    assert "<html" not in fragment.content.decode()
    assert not Judgement.objects.exists()
    assignment.refresh_from_db()
    assert assignment.state == Assignment.State.LEASED


def test_a_required_rationale_is_enforced(client, project, annotator, tmp_path):
    _schema(project, rationale="required")
    _pool(project, tmp_path, 2)
    client.force_login(annotator)
    html = client.get(_label(project)).content.decode()
    assert '<textarea name="rationale"' in html
    assert "required" in html[html.index('<textarea name="rationale"') :].split(">")[0]
    assignment = _leased(annotator)

    for rationale in ("", "   "):
        response = client.post(
            _submit(project, assignment), {"choice": "left", "rationale": rationale}, headers=HX
        )
        assert response.status_code == 400
        assert "This project asks for a rationale." in response.content.decode()
    assert not Judgement.objects.exists()

    response = client.post(
        _submit(project, assignment),
        {"choice": "left", "rationale": "B ignores the question."},
        headers=HX,
    )
    assert response.status_code == 200
    assert Judgement.objects.get().rationale == "B ignores the question."


def test_a_failed_answer_keeps_what_was_entered(client, project, annotator, tmp_path):
    _schema(
        project,
        rationale="required",
        aspects=[{"name": "honesty", "min": 0, "max": 3}],
    )
    _pool(project, tmp_path, 1)
    client.force_login(annotator)
    client.get(_label(project))

    response = client.post(
        _submit(project, _leased(annotator)),
        {"choice": "right", "strength": "2", "aspect-left-honesty": "3", "rationale": ""},
        headers=HX,
    )

    html = response.content.decode()
    assert response.status_code == 400
    assert 'value="right" data-key="2" required checked' in html
    assert 'value="2" data-key="e" checked' in html
    assert '<option value="3" selected>3</option>' in html


def test_controls_follow_the_label_schema(client, project, annotator, tmp_path):
    _schema(
        project,
        allow_tie=False,
        allow_both_bad=True,
        strength=["a bit", "much"],
        aspects=[{"name": "helpfulness", "min": 1, "max": 5}],
        rationale="off",
    )
    _pool(project, tmp_path, 1)
    client.force_login(annotator)

    html = client.get(_label(project), headers=HX).content.decode()

    assert 'name="choice" value="left" data-key="1"' in html
    assert 'name="choice" value="right" data-key="2"' in html
    assert 'value="tie"' not in html
    assert 'name="choice" value="both_bad" data-key="4"' in html
    assert 'name="strength" value="0" data-key="q"' in html
    assert 'name="strength" value="1" data-key="w"' in html
    assert 'name="strength" value="2"' not in html
    for side in ("left", "right"):
        assert f'<select name="aspect-{side}-helpfulness"' in html
    assert '<option value="1">1</option>' in html
    assert '<option value="5">5</option>' in html
    assert '<option value="6">' not in html
    assert 'name="rationale"' not in html

    # With the rationale off, one posted anyway is not stored; nor is a strength on
    # "both bad" (it says how much better one side is).
    client.post(
        _submit(project, _leased(annotator)),
        {"choice": "both_bad", "strength": "1", "rationale": "ignored"},
        headers=HX,
    )
    judgement = Judgement.objects.get()
    assert (judgement.choice, judgement.strength, judgement.rationale) == ("both_bad", None, "")


def test_texts_are_markdown_and_conversations_are_turns(client, project, annotator, tmp_path):
    path = tmp_path / "chat.jsonl"
    row = {
        "prompt": [
            {"role": "user", "content": "Hi **there**"},
            {"role": "assistant", "content": "Hello!"},
            {"role": "user", "content": "What does `ls` do?"},
        ],
        "responses": [
            "It *lists* files.\n\n```sh\nls -la\n```",
            "<script>window.__xss=1</script><b onmouseover=alert(1)>Bold</b> words",
        ],
    }
    path.write_text(json.dumps(row) + "\n")
    pairs_import(project=project, path=path, source_name="import:chat.jsonl")
    client.force_login(annotator)

    html = client.get(_label(project), headers=HX).content.decode()

    assert html.count('<div class="role">user</div>') == 2
    assert html.count('<div class="role">assistant</div>') == 1
    assert "<strong>there</strong>" in html
    assert "<code>ls</code>" in html
    assert "<em>lists</em>" in html
    assert '<code class="language-sh">ls -la' in html
    assert "<b>Bold</b> words" in html
    assert "<script" not in html
    assert "onmouseover" not in html


def test_progress_counts_today_total_and_remaining(client, project, annotator, tmp_path):
    _pool(project, tmp_path, 7)
    # Neither a gold item nor one routed to AI counts as remaining for people.
    c_gold, c_ai = Comparison.objects.order_by("id")[:2]
    Comparison.objects.filter(pk=c_gold.pk).update(is_gold=True, gold_label="a")
    Comparison.objects.filter(pk=c_ai.pk).update(route=Comparison.Route.AI)
    client.force_login(annotator)
    for _ in range(2):
        html = client.get(_label(project), headers=HX).content.decode()
        client.post(
            reverse("annotation:label_submit", args=[project.slug, _shown_key(html)]),
            {"choice": "left"},
            headers=HX,
        )
    # One of the two was made yesterday.
    Judgement.objects.filter(pk=Judgement.objects.order_by("id").first().pk).update(
        created_at=timezone.now() - timedelta(days=1)
    )
    leased = Assignment.objects.filter(annotator=annotator).count()

    cache.clear()  # the queue's size is cached for a few seconds
    progress = annotator_progress(annotator=annotator, project=project)

    assert leased == 3  # two answered, and the next pair shown after them
    # Remaining: the project's open human items, the two answered ones no longer.
    assert progress == {"done_today": 1, "done_total": 2, "remaining": 5 - 2}
    html = client.get(_label(project), headers=HX).content.decode()
    assert "Today <strong>1</strong> · in all 2" in html


def test_when_nothing_is_left_the_page_says_so(client, project, annotator, tmp_path):
    _pool(project, tmp_path, 1)
    client.force_login(annotator)
    client.get(_label(project))

    response = client.post(_submit(project, _leased(annotator)), {"choice": "left"}, headers=HX)

    html = response.content.decode()
    assert response.status_code == 200
    assert _shown_key(html) == ""
    assert "Nothing is waiting for you" in html
    assert 'class="label-form"' not in html


def test_the_project_page_links_to_labelling(client, project, annotator):
    client.force_login(annotator)
    html = client.get(reverse("annotation:project", args=[project.slug])).content.decode()
    assert f'href="{_label(project)}"' in html


def test_a_skip_reason_too_long_is_refused(client, project, annotator, tmp_path):
    _pool(project, tmp_path, 2)
    client.force_login(annotator)
    client.get(_label(project))
    assignment = _leased(annotator)

    response = client.post(_skip(project, assignment), {"reason": "x" * 501}, headers=HX)

    assert response.status_code == 400
    assert "under 500 characters" in response.content.decode()
    assignment.refresh_from_db()
    assert assignment.state == Assignment.State.LEASED


def test_an_answer_behind_a_prefetched_pair_returns_only_the_counters(
    client, project, annotator, tmp_path
):
    _pool(project, tmp_path, 3)
    client.force_login(annotator)
    html = client.get(_label(project), headers=HX).content.decode()

    response = client.post(
        reverse("annotation:label_submit", args=[project.slug, _shown_key(html)]),
        {"choice": "left", "next": "progress"},
        headers=HX,
    )

    body = response.content.decode()
    assert response.status_code == 200
    assert body.lstrip().startswith('<span class="progress" data-progress>')
    assert "in all 1" in body
    assert "/submit/" not in body  # no pair was rendered, and none was leased for it
    assert Assignment.objects.filter(annotator=annotator).count() == 1
    assert Judgement.objects.filter(user=annotator).count() == 1

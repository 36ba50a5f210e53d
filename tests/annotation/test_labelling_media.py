"""Image and audio items on the labelling, ranking and review pages: private media URLs, no
give-away of the source, plays reported per side, and full plays required when the project
says so (the server refuses the answer, not only the page)."""

from __future__ import annotations

import json
import re
from pathlib import PurePosixPath

import pytest
from django.urls import reverse

from annotation.models import (
    Assignment,
    Candidate,
    Judgement,
    Prompt,
    Ranking,
    RankingAssignment,
    RankingJudgement,
)
from annotation.services.queue import NOT_PLAYED
from annotation.services.ranking import NOT_PLAYED as RANK_NOT_PLAYED
from annotation.services.ranking import ranking_assignment_next_for
from tests.factories import judgement_make, media_comparison_make

pytestmark = pytest.mark.django_db

HX = {"HX-Request": "true"}


def _media_url(project, candidate: Candidate) -> str:
    return reverse("annotation:media", args=[project.slug, PurePosixPath(candidate.file.name).name])


def _label(client, project, **kwargs):
    return client.get(reverse("annotation:label", args=[project.slug]), **kwargs)


def _played(client, project, assignment: Assignment, side: str):
    url = reverse("annotation:label_played", args=[project.slug, assignment.key])
    return client.post(url, {"side": side}, headers=HX)


def _submit(client, project, assignment: Assignment, choice: str = "left"):
    url = reverse("annotation:label_submit", args=[project.slug, assignment.key])
    return client.post(url, {"choice": choice}, headers=HX)


def _shown(project, annotator) -> Assignment:
    return Assignment.objects.get(comparison__project=project, annotator=annotator)


@pytest.mark.parametrize("kind", ["image", "audio"])
def test_the_page_shows_a_media_pair_by_content_hash_only(client, project, annotator, kind):
    comparison = media_comparison_make(project, kind=kind)
    a, b = comparison.candidate_a, comparison.candidate_b
    Candidate.objects.filter(pk=a.pk).update(
        source_model="secret-model-7b", metadata={"alt": "A red circle", "score": 0.93}
    )
    client.force_login(annotator)

    response = _label(client, project)

    html = response.content.decode()
    assert response.status_code == 200
    for candidate in (a, b):
        assert _media_url(project, candidate) in html
        assert candidate.content_hash in html
    # Nothing that gives the source away: no model, no score, no storage path.
    assert "secret-model-7b" not in html
    assert "0.93" not in html
    assert "blobs/" not in html
    tag = "<img" if kind == "image" else "<audio"
    assert html.count(tag) == 2
    if kind == "image":
        assert 'alt="A red circle"' in html
        assert "data-same-scale" in html
    else:
        assert 'data-played-value="left"' in html
        assert 'data-played-value="right"' in html
        assert "vendor/wavesurfer.min.js" in html
        assert "data-require-play" not in html  # the project does not require full plays
    # The shortcut sheet lists the keys for the project's media.
    assert ("Play or pause A" in html) is (kind == "audio")
    assert ("synchronised" in html or "zoom" in html) is (kind == "image")
    assert _shown(project, annotator).comparison_id == comparison.pk


def test_the_media_url_serves_the_file_to_members_only(client, project, annotator, outsider):
    comparison = media_comparison_make(project, kind="image")
    url = _media_url(project, comparison.candidate_a)
    client.force_login(annotator)
    response = client.get(url)
    assert response.status_code == 200
    assert response["Content-Type"] == "image/png"
    assert b"".join(response.streaming_content).startswith(b"\x89PNG")
    client.force_login(outsider)
    assert client.get(url).status_code == 404
    assert Assignment.objects.count() == 0


def test_a_prompt_image_is_shown_above_the_pair(client, project, annotator):
    comparison = media_comparison_make(project, kind="image")
    candidate = comparison.candidate_b
    Prompt.objects.filter(pk=comparison.prompt_id).update(
        media=candidate.file.name,
        media_content_type="image/png",
        metadata={"media_alt": "The photo to edit"},
    )
    client.force_login(annotator)
    html = _label(client, project).content.decode()
    prompt_part = html[html.index('class="prompt card"') : html.index('class="candidates"')]
    assert _media_url(project, candidate) in prompt_part
    assert 'alt="The photo to edit"' in prompt_part


@pytest.mark.parametrize("order", ["ab", "ba"])
def test_played_maps_the_screen_side_to_the_canonical_one(client, project, annotator, order):
    media_comparison_make(project, kind="audio")
    client.force_login(annotator)
    _label(client, project)
    assignment = _shown(project, annotator)
    Assignment.objects.filter(pk=assignment.pk).update(presentation_order=order)

    response = _played(client, project, assignment, "left")

    assert response.status_code == 204
    assignment.refresh_from_db()
    assert assignment.played == (["a"] if order == "ab" else ["b"])
    # Idempotent: the same report again changes nothing; the other side joins.
    assert _played(client, project, assignment, "left").status_code == 204
    assert _played(client, project, assignment, "right").status_code == 204
    assignment.refresh_from_db()
    assert assignment.played == ["a", "b"]


def test_played_refuses_a_bad_side_and_other_peoples_items(client, project, annotator, outsider):
    media_comparison_make(project, kind="audio")
    client.force_login(annotator)
    _label(client, project)
    assignment = _shown(project, annotator)
    assert _played(client, project, assignment, "middle").status_code == 400
    client.force_login(outsider)
    assert _played(client, project, assignment, "left").status_code == 404
    assignment.refresh_from_db()
    assert assignment.played == []


def test_submit_is_refused_until_both_clips_were_played(client, project, annotator):
    project.require_full_play = True
    project.save()
    comparison = media_comparison_make(project, kind="audio")
    client.force_login(annotator)
    page = _label(client, project).content.decode()
    assert "data-require-play" in page
    assert "Play both clips to the end" in page
    assignment = _shown(project, annotator)

    refused = _submit(client, project, assignment)
    assert refused.status_code == 400
    assert NOT_PLAYED in refused.content.decode()
    assert not Judgement.objects.exists()

    _played(client, project, assignment, "left")
    again = _submit(client, project, assignment)
    assert again.status_code == 400
    assert not Judgement.objects.exists()

    _played(client, project, assignment, "right")
    accepted = _submit(client, project, assignment, "right")
    assert accepted.status_code == 200
    judgement = Judgement.objects.get()
    assert judgement.comparison_id == comparison.pk
    right = "b" if assignment.presentation_order == "ab" else "a"
    assert judgement.choice == right


def test_skip_is_allowed_without_plays(client, project, annotator):
    project.require_full_play = True
    project.save()
    media_comparison_make(project, kind="audio")
    client.force_login(annotator)
    _label(client, project)
    assignment = _shown(project, annotator)
    url = reverse("annotation:label_skip", args=[project.slug, assignment.key])
    assert client.post(url, {"reason": "cannot hear"}, headers=HX).status_code == 200
    assignment.refresh_from_db()
    assert assignment.state == Assignment.State.SKIPPED


def test_without_the_requirement_an_unplayed_pair_is_accepted(client, project, annotator):
    media_comparison_make(project, kind="audio")
    client.force_login(annotator)
    _label(client, project)
    assignment = _shown(project, annotator)
    assert _submit(client, project, assignment).status_code == 200
    assert Judgement.objects.get().assignment_id == assignment.pk


def test_the_requirement_does_not_touch_image_pairs(client, project, annotator):
    project.require_full_play = True
    project.save()
    media_comparison_make(project, kind="image")
    client.force_login(annotator)
    page = _label(client, project).content.decode()
    assert "data-require-play" not in page
    assignment = _shown(project, annotator)
    assert _submit(client, project, assignment).status_code == 200
    assert Judgement.objects.count() == 1


def test_the_page_keeps_plays_already_reported(client, project, annotator):
    project.require_full_play = True
    project.save()
    media_comparison_make(project, kind="audio")
    client.force_login(annotator)
    _label(client, project)
    assignment = _shown(project, annotator)
    Assignment.objects.filter(pk=assignment.pk).update(presentation_order="ba")
    _played(client, project, assignment, "right")  # canonical a
    html = _label(client, project, headers=HX).content.decode()
    played = re.findall(r'class="media-audio( played)?" data-media-audio data-label="(\w)"', html)
    assert played == [("", "A"), (" played", "B")]


# ---------------------------------------------------------------- ranking


def _audio_ranking(project, n: int = 3) -> tuple[Ranking, list[Candidate]]:
    """A Ranking of n audio clips (files stored as an import stores them)."""
    candidates = []
    for seed in range(0, n, 2):
        comparison = media_comparison_make(project, kind="audio", seed=seed)
        candidates += [comparison.candidate_a, comparison.candidate_b]
    prompt = candidates[0].prompt
    Candidate.objects.filter(pk__in=[c.pk for c in candidates]).update(prompt=prompt)
    ranking = Ranking.objects.create(project=project, prompt=prompt)
    ranking.candidates.set(candidates[:n])
    project.comparisons.all().delete()
    return ranking, candidates[:n]


def test_a_ranking_of_clips_needs_every_clip_played(client, project, annotator):
    project.label_schema = {"mode": "ranking"}
    project.require_full_play = True
    project.save()
    ranking, clips = _audio_ranking(project, 3)
    client.force_login(annotator)

    html = _label(client, project).content.decode()
    for clip in clips:
        assert _media_url(project, clip) in html
        assert f'data-played-value="{clip.pk}"' in html
    assert "data-require-play" in html
    assignment = RankingAssignment.objects.get(ranking=ranking, annotator=annotator)
    submit = reverse("annotation:rank_submit", args=[project.slug, assignment.key])
    played = reverse("annotation:rank_played", args=[project.slug, assignment.key])
    order = json.dumps([[c.pk] for c in clips])

    refused = client.post(submit, {"order": order}, headers=HX)
    assert refused.status_code == 400
    assert RANK_NOT_PLAYED in refused.content.decode()
    for clip in clips[:2]:
        assert client.post(played, {"candidate": clip.pk}, headers=HX).status_code == 204
    assert client.post(submit, {"order": order}, headers=HX).status_code == 400
    assert client.post(played, {"candidate": 10**9}, headers=HX).status_code == 400
    assert client.post(played, {"candidate": clips[2].pk}, headers=HX).status_code == 204
    assignment.refresh_from_db()
    assert sorted(assignment.played) == sorted(c.pk for c in clips)

    assert client.post(submit, {"order": order}, headers=HX).status_code == 200
    assert RankingJudgement.objects.get().order == [[c.pk] for c in clips]
    assert Judgement.objects.count() == 3  # the pairs the order implies


def test_a_ranking_of_clips_without_the_requirement_is_accepted(client, project, annotator):
    project.label_schema = {"mode": "ranking"}
    project.save()
    ranking, clips = _audio_ranking(project, 2)
    client.force_login(annotator)
    _label(client, project)
    assignment = ranking_assignment_next_for(annotator=annotator, project=project)
    submit = reverse("annotation:rank_submit", args=[project.slug, assignment.key])
    order = json.dumps([[clips[1].pk], [clips[0].pk]])
    assert client.post(submit, {"order": order}, headers=HX).status_code == 200
    assert RankingJudgement.objects.filter(ranking=ranking).count() == 1


# ---------------------------------------------------------------- review and settings


def test_the_review_page_shows_media_pairs(client, project, reviewer, annotator):
    image = media_comparison_make(project, kind="image", seed=1)
    audio = media_comparison_make(project, kind="audio", seed=2)
    for comparison in (image, audio):
        judgement_make(comparison, annotator, "a")
        judgement_make(comparison, reviewer, "b")
    client.force_login(reviewer)
    html = client.get(reverse("annotation:review", args=[project.slug])).content.decode()
    for comparison in (image, audio):
        for candidate in (comparison.candidate_a, comparison.candidate_b):
            assert _media_url(project, candidate) in html
    assert html.count("<img") == 2
    assert html.count("<audio") == 2
    assert "js/media.js" in html


def test_the_settings_form_saves_require_full_play(client, project, admin):
    client.force_login(admin)
    url = reverse("annotation:settings", args=[project.slug])
    data = {
        "name": project.name,
        "instructions": "",
        "label_schema": json.dumps(project.label_schema),
        "overlap": 1,
        "gold_ratio": 0,
        "require_full_play": "on",
    }
    assert 'name="require_full_play"' in client.get(url).content.decode()
    assert client.post(url, data).status_code == 302
    project.refresh_from_db()
    assert project.require_full_play is True
    del data["require_full_play"]
    assert client.post(url, data).status_code == 302
    project.refresh_from_db()
    assert project.require_full_play is False


def test_a_ranking_of_images_shows_every_picture_at_one_scale(client, project, annotator):
    project.label_schema = {"mode": "ranking"}
    project.save()
    comparison = media_comparison_make(project, kind="image")
    ranking = Ranking.objects.create(project=project, prompt=comparison.prompt)
    ranking.candidates.set([comparison.candidate_a, comparison.candidate_b])
    project.comparisons.all().delete()
    client.force_login(annotator)
    html = _label(client, project).content.decode()
    assert '<ol class="rank-list" data-same-scale' in html
    assert html.count("<img") == 2
    for candidate in (comparison.candidate_a, comparison.candidate_b):
        assert _media_url(project, candidate) in html
    assert "Full size" in html or "full size" in html

"""The people pages: home, members, project settings (schema versions, gold), password change."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse
from django.utils import timezone

from annotation.models import Candidate, Comparison, Judgement, Membership, Project, Prompt
from annotation.schema import label_schema_default
from annotation.services.members import membership_add
from annotation.services.projects import project_update
from core.exceptions import ApplicationError
from curation.routing.models import RoutingSettings
from scoring.models import ScoringSettings
from tests.factories import PASSWORD, MembershipFactory, UserFactory

pytestmark = pytest.mark.django_db


def _login(client, user) -> None:
    assert client.login(username=user.username, password=PASSWORD)


def _comparison(project: Project, n: int, external_id: str = "") -> Comparison:
    prompt = Prompt.objects.create(project=project, content_hash=f"p{n}", text=f"Q{n}")
    a = Candidate.objects.create(prompt=prompt, content_hash=f"a{n}", text=f"A{n}")
    b = Candidate.objects.create(prompt=prompt, content_hash=f"b{n}", text=f"B{n}")
    return Comparison.objects.create(
        project=project, prompt=prompt, candidate_a=a, candidate_b=b, external_id=external_id
    )


def _judge(comparison: Comparison, *, choice: str, kind: str = "human", user=None, version=1):
    name = user.username if user else f"{kind}:source"
    return Judgement.objects.create(
        comparison=comparison,
        source_kind=kind,
        user=user if kind == "human" else None,
        source_name=name,
        choice=choice,
        label_schema_version=version,
        idempotency_key=f"{name}-{comparison.id}",
    )


def _url(name: str, project: Project, *args) -> str:
    return reverse(f"annotation:{name}", args=[project.slug, *args])


def _messages(response) -> list[str]:
    return [str(m) for m in response.context["messages"]]


# ---------------------------------------------------------------- permissions


def _get_urls(project):
    return [_url("members", project), _url("settings", project)]


def _post_urls(project, membership):
    return [
        (_url("member_add", project), {"identifier": "oscar-outsider", "role": "admin"}),
        (_url("member_role", project, membership.id), {"role": "annotator"}),
        (_url("member_remove", project, membership.id), {}),
        (_url("settings", project), {"name": "Hijacked", "overlap": 1, "gold_ratio": 0}),
        (_url("settings_preview", project), {"instructions": "*hi*"}),
        (_url("gold", project), {"ids": "1", "by": "id", "label": "a"}),
    ]


def _state(project):
    project.refresh_from_db()
    return (
        sorted(Membership.objects.values_list("project__slug", "user__username", "role")),
        project.name,
        Comparison.objects.filter(is_gold=True).count(),
    )


def test_anonymous_users_are_sent_to_login_from_every_new_url(client, project, admin):
    membership = Membership.objects.get(user=admin)
    before = _state(project)
    for url in [reverse("annotation:home"), reverse("password_change"), *_get_urls(project)]:
        response = client.get(url)
        assert response.status_code == 302, url
        assert response.url.startswith("/accounts/login/"), url
    for url, data in _post_urls(project, membership):
        response = client.post(url, data)
        assert response.status_code == 302, url
        assert response.url.startswith("/accounts/login/"), url
    assert _state(project) == before


def test_outsider_gets_404_on_every_new_project_url(client, project, admin, outsider):
    membership = Membership.objects.get(user=admin)
    before = _state(project)
    _login(client, outsider)
    for url in _get_urls(project):
        assert client.get(url).status_code == 404, url
    for url, data in _post_urls(project, membership):
        assert client.post(url, data).status_code == 404, url
    assert _state(project) == before


@pytest.mark.parametrize("persona", ["annotator", "reviewer"])
def test_annotators_and_reviewers_get_404_on_admin_pages(client, project, admin, persona, request):
    user = request.getfixturevalue(persona)
    membership = Membership.objects.get(user=admin)
    before = _state(project)
    _login(client, user)
    for url in _get_urls(project):
        assert client.get(url).status_code == 404, url
    for url, data in _post_urls(project, membership):
        assert client.post(url, data).status_code == 404, url
    assert _state(project) == before
    assert Membership.objects.get(user=user).role == persona


def test_admin_sees_members_and_settings(client, project, admin, annotator):
    _login(client, admin)
    members = client.get(_url("members", project))
    assert members.status_code == 200
    assert b"anna-annotator" in members.content
    assert b"alice-admin" in members.content
    settings = client.get(_url("settings", project))
    assert settings.status_code == 200
    assert b'hx-trigger="keyup changed delay:300ms"' in settings.content
    assert _url("settings_preview", project).encode() in settings.content
    # Pages only read.
    assert Membership.objects.filter(project=project).count() == 2


def test_state_changes_refuse_get(client, project, admin):
    _login(client, admin)
    membership = Membership.objects.get(user=admin)
    for url, _ in _post_urls(project, membership):
        if url != _url("settings", project):
            assert client.get(url).status_code == 405, url
    assert Membership.objects.get(user=admin).role == "admin"


# ---------------------------------------------------------------- members


def test_admin_adds_a_member_by_username(client, project, admin):
    UserFactory(username="bob")
    _login(client, admin)
    response = client.post(
        _url("member_add", project), {"identifier": " bob ", "role": "reviewer"}, follow=True
    )
    assert response.redirect_chain[-1][0] == _url("members", project)
    assert "Added bob as Reviewer." in _messages(response)
    assert Membership.objects.get(project=project, user__username="bob").role == "reviewer"


def test_admin_adds_a_member_by_email_in_any_case(client, project, admin):
    UserFactory(username="carol", email="Carol@Example.com")
    _login(client, admin)
    response = client.post(
        _url("member_add", project), {"identifier": "carol@example.COM", "role": "annotator"}
    )
    assert response.status_code == 302
    assert Membership.objects.get(project=project, user__username="carol").role == "annotator"


def test_adding_an_unknown_user_is_a_form_error(client, project, admin):
    _login(client, admin)
    response = client.post(
        _url("member_add", project), {"identifier": "nobody@example.com", "role": "annotator"}
    )
    assert response.status_code == 400
    assert "No account has the username or email" in response.content.decode()
    assert response.context["form"].errors["identifier"]
    assert Membership.objects.filter(project=project).count() == 1


def test_adding_an_existing_member_is_a_form_error(client, project, admin, annotator):
    _login(client, admin)
    response = client.post(
        _url("member_add", project), {"identifier": "anna-annotator", "role": "admin"}
    )
    assert response.status_code == 400
    assert "already a member of this project" in response.content.decode()
    assert Membership.objects.get(project=project, user=annotator).role == "annotator"


def test_an_email_shared_by_two_accounts_asks_for_the_username(client, project, admin):
    UserFactory(username="d1", email="same@example.com")
    UserFactory(username="d2", email="same@example.com")
    _login(client, admin)
    response = client.post(
        _url("member_add", project), {"identifier": "same@example.com", "role": "annotator"}
    )
    assert response.status_code == 400
    assert "add the member by username" in response.content.decode()
    assert Membership.objects.filter(project=project).count() == 1


def test_a_member_of_another_project_can_be_added(client, project, admin, outsider):
    _login(client, admin)
    response = client.post(
        _url("member_add", project), {"identifier": "oscar-outsider", "role": "annotator"}
    )
    assert response.status_code == 302
    assert set(outsider.memberships.values_list("project__slug", "role")) == {
        ("alpha", "annotator"),
        ("beta", "admin"),
    }


def test_admin_changes_a_role(client, project, admin, annotator):
    membership = Membership.objects.get(user=annotator)
    _login(client, admin)
    response = client.post(
        _url("member_role", project, membership.id), {"role": "reviewer"}, follow=True
    )
    assert response.redirect_chain[-1][0] == _url("members", project)
    assert "anna-annotator is now Reviewer." in _messages(response)
    membership.refresh_from_db()
    assert membership.role == "reviewer"


def test_an_invalid_role_changes_nothing(client, project, admin, annotator):
    membership = Membership.objects.get(user=annotator)
    _login(client, admin)
    response = client.post(_url("member_role", project, membership.id), {"role": "owner"})
    assert response.status_code == 302
    membership.refresh_from_db()
    assert membership.role == "annotator"


def test_admin_removes_a_member_whose_judgements_stay(client, project, admin, annotator):
    comparison = _comparison(project, 1)
    _judge(comparison, choice="a", user=annotator)
    membership = Membership.objects.get(user=annotator)
    _login(client, admin)
    response = client.post(_url("member_remove", project, membership.id), follow=True)
    assert "Removed anna-annotator from Alpha." in _messages(response)
    assert not Membership.objects.filter(pk=membership.pk).exists()
    assert Judgement.objects.filter(user=annotator).count() == 1


def test_the_last_admin_cannot_be_removed(client, project, admin, annotator):
    membership = Membership.objects.get(user=admin)
    _login(client, admin)
    response = client.post(_url("member_remove", project, membership.id), follow=True)
    assert response.redirect_chain[-1][0] == _url("members", project)
    (message,) = _messages(response)
    assert "alice-admin is the only admin of this project" in message
    assert "make another member an admin first" in message
    assert Membership.objects.get(pk=membership.pk).role == "admin"


def test_the_last_admin_cannot_be_demoted(client, project, admin):
    membership = Membership.objects.get(user=admin)
    _login(client, admin)
    response = client.post(
        _url("member_role", project, membership.id), {"role": "annotator"}, follow=True
    )
    assert "alice-admin is the only admin of this project" in _messages(response)[0]
    assert Membership.objects.get(pk=membership.pk).role == "admin"


def test_with_a_second_admin_an_admin_can_leave(client, project, admin, annotator):
    Membership.objects.filter(user=annotator).update(role="admin")
    _login(client, admin)
    response = client.post(_url("member_remove", project, Membership.objects.get(user=admin).id))
    # They can no longer see the members page, so they go home.
    assert response.url == reverse("annotation:home")
    assert list(Membership.objects.filter(project=project).values_list("role", flat=True)) == [
        "admin"
    ]
    assert not Membership.objects.filter(user=admin).exists()


def test_a_membership_of_another_project_is_404(client, project, admin, outsider):
    theirs = Membership.objects.get(user=outsider)
    _login(client, admin)
    assert client.post(_url("member_remove", project, theirs.id)).status_code == 404
    assert (
        client.post(_url("member_role", project, theirs.id), {"role": "annotator"}).status_code
        == 404
    )
    assert Membership.objects.get(pk=theirs.pk).role == "admin"


# ---------------------------------------------------------------- settings


def _settings(project: Project, **changes) -> dict:
    data = {
        "name": project.name,
        "instructions": project.instructions,
        "label_schema": json.dumps(project.label_schema),
        "overlap": project.overlap,
        "gold_ratio": project.gold_ratio,
    }
    data.update(changes)
    return data


def test_admin_saves_settings(client, project, admin):
    _login(client, admin)
    schema = {**label_schema_default(), "allow_both_bad": True, "rationale": "required"}
    response = client.post(
        _url("settings", project),
        _settings(
            project,
            name="Alpha v2",
            instructions="Pick the **safer** answer.",
            label_schema=json.dumps(schema),
            overlap=3,
            gold_ratio=0.1,
        ),
        follow=True,
    )
    assert response.redirect_chain[-1][0] == _url("settings", project)
    assert _messages(response) == ["Settings saved."]
    assert "<strong>safer</strong>" in response.content.decode()
    project.refresh_from_db()
    assert (project.name, project.instructions) == ("Alpha v2", "Pick the **safer** answer.")
    assert (project.overlap, project.gold_ratio) == (3, 0.1)
    assert project.label_schema == schema
    # Nobody had judged yet: nothing to keep apart, the version stays.
    assert project.label_schema_version == 1


MOVED_FIELDS = (
    "human_budget",
    "human_budget_fraction",
    "routing_policy",
    "auto_train_every",
    "ensemble_members",
)


def test_the_settings_page_no_longer_has_the_moved_fields(client, project, admin):
    _login(client, admin)
    response = client.get(_url("settings", project))
    assert response.status_code == 200
    body = response.content.decode()
    for name in MOVED_FIELDS:
        assert f'name="{name}"' not in body, name
        assert f'id="id_{name}"' not in body, name
    assert set(response.context["form"].fields) == {
        "name", "instructions", "label_schema", "overlap", "gold_ratio", "require_full_play"
    }  # fmt: skip
    # It says where they went.
    assert "Routing page" in body
    assert "Models page" in body
    assert not RoutingSettings.objects.exists()
    assert not ScoringSettings.objects.exists()


def test_posting_the_moved_fields_to_the_settings_page_changes_none_of_them(client, project, admin):
    _login(client, admin)
    response = client.post(
        _url("settings", project),
        _settings(
            project,
            name="Renamed",
            human_budget=5,
            human_budget_fraction=0.5,
            routing_policy="random",
            auto_train_every=10,
            ensemble_members=3,
        ),
    )
    assert response.status_code == 302
    project.refresh_from_db()
    assert project.name == "Renamed"
    assert not RoutingSettings.objects.exists()
    assert not ScoringSettings.objects.exists()


@pytest.mark.parametrize(
    ("changes", "error"),
    [
        ({"label_schema": "{not json"}, "Enter a valid JSON."),
        ({"label_schema": '{"mode": "tree"}'}, "label schema &#x27;mode&#x27; must be"),
        ({"label_schema": '{"colour": "red"}'}, "Unknown label schema field(s): colour."),
        # Caps: every pair page draws the schema.
        (
            {"label_schema": '{"aspects": [{"name": "help", "min": 0, "max": 100000000}]}'},
            "spans 100,000,000 steps (0 to 100000000); at most 100.",
        ),
        (
            {"label_schema": json.dumps({"strength": [f"level {i}" for i in range(9)]})},
            "has 9 levels; at most 8.",
        ),
        (
            {
                "label_schema": json.dumps(
                    {"aspects": [{"name": f"a{i}", "max": 4} for i in range(21)]}
                )
            },
            "has 21 aspects; at most 20.",
        ),
        (
            {"label_schema": json.dumps({"strength": ["x" * 101]})},
            "is 101 characters; at most 100.",
        ),
        (
            {"label_schema": '{"aspects": [{"name": "help", "min": false, "max": true}]}'},
            "needs integer &#x27;min&#x27; &lt; &#x27;max&#x27;.",
        ),
        (
            {"label_schema": '{"mode": "ranking", "top_k": 1000}'},
            "is an integer from 1 to 100, for ranking mode only.",
        ),
        ({"overlap": 0}, "Ensure this value is greater than or equal to 1."),
        ({"gold_ratio": 1.5}, "Ensure this value is less than or equal to 1."),
        ({"name": ""}, "This field is required."),
    ],
)
def test_invalid_settings_are_form_errors_and_change_nothing(
    client, project, admin, changes, error
):
    _login(client, admin)
    response = client.post(
        _url("settings", project), _settings(project, **{"name": "New", **changes})
    )
    assert response.status_code == 400
    assert error in response.content.decode()
    project.refresh_from_db()
    assert project.name == "Alpha"
    assert project.label_schema == label_schema_default()


def test_invalid_json_is_shown_back_as_typed(client, project, admin):
    _login(client, admin)
    response = client.post(_url("settings", project), _settings(project, label_schema="{oops"))
    assert response.status_code == 400
    assert "{oops</textarea>" in response.content.decode()
    project.refresh_from_db()
    assert project.label_schema == label_schema_default()


def test_schema_change_after_human_judgements_starts_a_new_version(
    client, project, admin, annotator
):
    judgement = _judge(_comparison(project, 1), choice="tie", user=annotator)
    _login(client, admin)
    schema = {**label_schema_default(), "strength": ["slight", "strong"]}
    response = client.post(
        _url("settings", project), _settings(project, label_schema=json.dumps(schema)), follow=True
    )
    assert response.status_code == 200
    notice = _messages(response)[0]
    assert "The label schema is now version 2" in notice
    assert "keep version 1" in notice
    project.refresh_from_db()
    assert (project.label_schema, project.label_schema_version) == (schema, 2)
    judgement.refresh_from_db()
    assert judgement.label_schema_version == 1
    # Version 1's schema is kept, so old judgements can still be read under it.
    kept = project.schema_versions.get(version=1)
    assert kept.schema == label_schema_default()


def test_schema_change_after_ai_judgements_starts_a_new_version(client, project, admin):
    _judge(_comparison(project, 1), choice="a", kind="ai")
    _login(client, admin)
    schema = {**label_schema_default(), "allow_tie": False}
    response = client.post(
        _url("settings", project), _settings(project, label_schema=json.dumps(schema))
    )
    assert response.status_code == 302
    project.refresh_from_db()
    assert (project.label_schema, project.label_schema_version) == (schema, 2)


def test_imported_labels_do_not_version_the_schema(client, project, admin):
    _judge(_comparison(project, 1), choice="tie", kind="import")
    _login(client, admin)
    schema = {**label_schema_default(), "allow_tie": False}
    response = client.post(
        _url("settings", project), _settings(project, label_schema=json.dumps(schema))
    )
    assert response.status_code == 302
    project.refresh_from_db()
    assert (project.label_schema, project.label_schema_version) == (schema, 1)


def test_saving_the_same_schema_keeps_the_version(client, project, admin, annotator):
    _judge(_comparison(project, 1), choice="a", user=annotator)
    _login(client, admin)
    response = client.post(_url("settings", project), _settings(project, name="Renamed"))
    assert response.status_code == 302
    project.refresh_from_db()
    assert (project.name, project.label_schema_version) == ("Renamed", 1)


def test_dropping_a_choice_that_judgements_use_is_refused(client, project, admin, annotator):
    _judge(_comparison(project, 1), choice="tie", user=annotator)
    _judge(_comparison(project, 2), choice="tie", kind="ai")
    _login(client, admin)
    schema = {**label_schema_default(), "allow_tie": False}
    response = client.post(
        _url("settings", project), _settings(project, name="New", label_schema=json.dumps(schema))
    )
    assert response.status_code == 400
    body = response.content.decode()
    assert "Existing judgements use &#x27;tie&#x27; (2 judgement(s))" in body
    assert "no longer allows" in body
    project.refresh_from_db()
    assert project.name == "Alpha"
    assert project.label_schema == label_schema_default()
    assert project.label_schema_version == 1


def test_preview_returns_sanitised_html_fragment(client, project, admin):
    _login(client, admin)
    response = client.post(
        _url("settings_preview", project),
        {"instructions": "**Be kind** <script>alert(1)</script><img src=x onerror=alert(1)>"},
        headers={"HX-Request": "true"},
    )
    assert response.status_code == 200
    body = response.content.decode()
    assert body.startswith('<div id="preview"')  # the fragment, not the page
    assert "<html" not in body
    assert "<strong>Be kind</strong>" in body
    assert "<script" not in body
    assert "onerror" not in body
    assert "alert" not in body
    project.refresh_from_db()
    assert project.instructions == ""  # a preview saves nothing


# ---------------------------------------------------------------- gold


def test_admin_marks_comparisons_gold_by_id(client, project, admin):
    c1, c2, c3 = (_comparison(project, n) for n in range(3))
    _login(client, admin)
    response = client.post(
        _url("gold", project), {"ids": f"{c1.id}, {c2.id}\n", "by": "id", "label": "b"}, follow=True
    )
    assert "2 comparison(s) marked gold (b)." in _messages(response)
    assert "2 comparisons of this project are gold" in response.content.decode()
    assert sorted(Comparison.objects.filter(is_gold=True).values_list("id", "gold_label")) == [
        (c1.id, "b"),
        (c2.id, "b"),
    ]
    c3.refresh_from_db()
    assert (c3.is_gold, c3.gold_label) == (False, None)


def test_admin_marks_gold_by_external_id_and_unmarks(client, project, admin):
    c1 = _comparison(project, 1, external_id="q-1")
    _comparison(project, 2, external_id="q-2")
    _login(client, admin)
    response = client.post(
        _url("gold", project), {"ids": "q-1", "by": "external_id", "label": "tie"}
    )
    assert response.status_code == 302
    c1.refresh_from_db()
    assert (c1.is_gold, c1.gold_label) == (True, "tie")

    response = client.post(
        _url("gold", project), {"ids": "q-1", "by": "external_id", "label": "clear"}
    )
    assert response.status_code == 302
    c1.refresh_from_db()
    assert (c1.is_gold, c1.gold_label) == (False, None)


def test_unknown_and_foreign_ids_are_refused_and_nothing_changes(
    client, project, other_project, admin
):
    ours = _comparison(project, 1)
    theirs = _comparison(other_project, 2)
    _login(client, admin)
    response = client.post(
        _url("gold", project),
        {"ids": f"{ours.id} {theirs.id} 999999 abc", "by": "id", "label": "a"},
    )
    assert response.status_code == 400
    body = response.content.decode()
    assert (
        f"Not comparisons of this project: abc, {theirs.id}, 999999. Nothing was changed." in body
    )
    assert not Comparison.objects.filter(is_gold=True).exists()


def test_unknown_external_id_is_refused(client, project, admin):
    _comparison(project, 1, external_id="q-1")
    _login(client, admin)
    response = client.post(
        _url("gold", project), {"ids": "q-1 q-404", "by": "external_id", "label": "a"}
    )
    assert response.status_code == 400
    assert "Not comparisons of this project: q-404." in response.content.decode()
    assert not Comparison.objects.filter(is_gold=True).exists()


def test_an_external_id_of_several_pairs_is_refused(client, project, admin):
    _comparison(project, 1, external_id="ranked-7")
    _comparison(project, 2, external_id="ranked-7")
    _login(client, admin)
    response = client.post(
        _url("gold", project), {"ids": "ranked-7", "by": "external_id", "label": "a"}
    )
    assert response.status_code == 400
    assert "name several comparisons" in response.content.decode()
    assert not Comparison.objects.filter(is_gold=True).exists()


def test_a_gold_label_the_schema_does_not_allow_is_refused(client, project, admin):
    comparison = _comparison(project, 1)
    _login(client, admin)
    # The default schema has no "both bad".
    response = client.post(
        _url("gold", project), {"ids": str(comparison.id), "by": "id", "label": "both_bad"}
    )
    assert response.status_code == 400
    assert "does not allow &#x27;both_bad&#x27;" in response.content.decode()
    comparison.refresh_from_db()
    assert not comparison.is_gold


# ---------------------------------------------------------------- home


def test_home_lists_projects_with_role_and_own_progress(client, project, other_project, annotator):
    MembershipFactory(project=other_project, user=annotator, role="admin")
    c1, c2, c3 = (_comparison(project, n) for n in range(3))
    _judge(c1, choice="a", user=annotator)
    _judge(c2, choice="b", user=annotator)
    old = _judge(c3, choice="a", user=annotator)
    Judgement.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=2))
    # Someone else's work is not theirs.
    _judge(c3, choice="b", user=UserFactory(username="zed"))
    _login(client, annotator)

    response = client.get(reverse("annotation:home"))
    assert response.status_code == 200
    rows = {r.project.slug: r for r in response.context["rows"]}
    assert set(rows) == {"alpha", "beta"}
    alpha, beta = rows["alpha"], rows["beta"]
    assert (alpha.role, alpha.judgements_total, alpha.judgements_today) == ("annotator", 3, 2)
    assert (beta.role, beta.judgements_total, beta.judgements_today) == ("admin", 0, 0)
    body = response.content.decode()
    assert 'href="/projects/alpha/label/">Start</a>' in body
    # Admin links for the project they administer only.
    assert _url("settings", other_project) in body
    assert _url("members", other_project) in body
    assert _url("import", other_project) in body
    assert _url("settings", project) not in body
    assert _url("members", project) not in body
    assert Judgement.objects.filter(user=annotator).count() == 3


def test_home_shows_nothing_of_projects_one_is_not_in(client, project, admin, outsider):
    _login(client, outsider)
    response = client.get(reverse("annotation:home"))
    assert response.status_code == 200
    assert [r.project.slug for r in response.context["rows"]] == ["beta"]
    assert "Alpha" not in response.content.decode()
    assert not Membership.objects.filter(user=outsider, project=project).exists()


# ---------------------------------------------------------------- password


def test_password_change_works(client, admin):
    _login(client, admin)
    page = client.get(reverse("annotation:home"))
    assert reverse("password_change").encode() in page.content  # linked from the top bar
    response = client.post(
        reverse("password_change"),
        {
            "old_password": PASSWORD,
            "new_password1": "a-much-longer-passphrase-42",
            "new_password2": "a-much-longer-passphrase-42",
        },
        follow=True,
    )
    assert response.redirect_chain[-1][0] == reverse("password_change_done")
    assert b"Password changed" in response.content
    admin.refresh_from_db()
    assert admin.check_password("a-much-longer-passphrase-42")
    assert not admin.check_password(PASSWORD)
    # Still logged in here.
    assert client.get(reverse("annotation:home")).status_code == 200


def test_password_change_with_a_wrong_old_password_is_refused(client, admin):
    _login(client, admin)
    response = client.post(
        reverse("password_change"),
        {
            "old_password": "wrong",
            "new_password1": "a-much-longer-passphrase-42",
            "new_password2": "a-much-longer-passphrase-42",
        },
    )
    assert response.status_code == 200
    assert "Your old password was entered incorrectly" in response.content.decode()
    assert get_user_model().objects.get(pk=admin.pk).check_password(PASSWORD)


# ---------------------------------------------------------------- services directly


def test_membership_add_refuses_an_unknown_role(project, annotator):
    UserFactory(username="erin")
    with pytest.raises(ApplicationError, match="'owner' is not a role"):
        membership_add(project=project, identifier="erin", role="owner")
    assert not Membership.objects.filter(user__username="erin").exists()


def test_project_update_refuses_fields_it_does_not_own(project):
    with pytest.raises(TypeError, match="slug"):
        project_update(project=project, slug="gamma")
    project.refresh_from_db()
    assert project.slug == "alpha"


def test_each_schema_change_after_judgements_is_a_new_version(project, annotator):
    _judge(_comparison(project, 1), choice="a", user=annotator)
    first = {**label_schema_default(), "rationale": "required"}
    second = {**first, "aspects": [{"name": "safety", "min": 0, "max": 4}]}
    assert project_update(project=project, label_schema=first).label_schema_version == 2
    updated = project_update(project=project, label_schema=second)
    assert (updated.label_schema, updated.label_schema_version) == (second, 3)
    project.refresh_from_db()
    assert project.label_schema_version == 3


def test_ranking_schemas_keep_ties_through_allow_ties(project, annotator):
    _judge(_comparison(project, 1), choice="tie", user=annotator)
    ranking = {"mode": "ranking", "top_k": 3, "allow_ties": True}
    assert project_update(project=project, label_schema=ranking).label_schema_version == 2
    with pytest.raises(ApplicationError, match="allow_ties in ranking mode"):
        project_update(project=project, label_schema={**ranking, "allow_ties": False})
    project.refresh_from_db()
    assert (project.label_schema, project.label_schema_version) == (ranking, 2)


def test_superuser_home_lists_every_project(client, project, other_project):
    root = UserFactory(username="root", is_superuser=True, is_staff=True)
    _login(client, root)
    response = client.get(reverse("annotation:home"))
    assert response.status_code == 200
    rows = response.context["rows"]
    assert [(r.project.slug, r.role, r.is_admin) for r in rows] == [
        ("alpha", "", True),
        ("beta", "", True),
    ]
    assert "site admin" in response.content.decode()
    assert not Membership.objects.filter(user=root).exists()


def test_dropping_a_choice_that_a_gold_label_uses_is_refused(client, project, admin):
    comparison = _comparison(project, 1)
    Comparison.objects.filter(pk=comparison.pk).update(is_gold=True, gold_label="tie")
    _login(client, admin)
    schema = {**label_schema_default(), "allow_tie": False}
    response = client.post(
        _url("settings", project), _settings(project, label_schema=json.dumps(schema))
    )
    assert response.status_code == 400
    assert "Gold comparisons have the gold label &#x27;tie&#x27; (1 comparison(s))" in (
        response.content.decode()
    )
    project.refresh_from_db()
    assert (project.label_schema, project.label_schema_version) == (label_schema_default(), 1)


def test_ids_that_are_not_plain_numbers_are_refused(client, project, admin):
    comparison = _comparison(project, 1)
    _login(client, admin)
    response = client.post(
        _url("gold", project),
        {"ids": f"{comparison.id} ² -3 99999999999999999999", "by": "id", "label": "a"},
    )
    assert response.status_code == 400
    assert "Not comparisons of this project: ², -3, 99999999999999999999." in (
        response.content.decode()
    )
    comparison.refresh_from_db()
    assert not comparison.is_gold

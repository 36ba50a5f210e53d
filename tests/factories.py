from __future__ import annotations

import uuid

import factory
from django.contrib.auth import get_user_model

from annotation.models import Candidate, Comparison, Judgement, Membership, Project, Prompt

PASSWORD = "correct-horse-battery"


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda u: f"{u.username}@example.com")
    password = factory.django.Password(PASSWORD)


class ProjectFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Project

    slug = factory.Sequence(lambda n: f"project-{n}")
    name = factory.LazyAttribute(lambda p: p.slug.replace("-", " ").title())


class MembershipFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Membership

    project = factory.SubFactory(ProjectFactory)
    user = factory.SubFactory(UserFactory)
    role = Membership.Role.ANNOTATOR


def comparison_make(
    project: Project, *, a: str = "first answer", b: str = "second answer", **fields
) -> Comparison:
    """A comparison with its own prompt and two text candidates."""
    prompt = Prompt.objects.create(
        project=project, content_hash=uuid.uuid4().hex, text=f"prompt {uuid.uuid4().hex[:6]}"
    )
    ca = Candidate.objects.create(prompt=prompt, content_hash="a", text=a)
    cb = Candidate.objects.create(prompt=prompt, content_hash="b", text=b)
    return Comparison.objects.create(
        project=project, prompt=prompt, candidate_a=ca, candidate_b=cb, **fields
    )


def media_comparison_make(project: Project, *, kind: str = "image", seed: int = 0, **fields):
    """A comparison with a text prompt and two image (or audio) candidates whose files are
    stored as an import stores them (checked, named by content hash)."""
    from annotation.media import media_inspect
    from annotation.services.media import media_limits, media_save
    from tests.media_samples import audio_bytes, image_bytes

    make = image_bytes if kind == "image" else audio_bytes
    prompt = Prompt.objects.create(
        project=project, content_hash=uuid.uuid4().hex, text=f"{kind} prompt {seed}"
    )
    candidates = []
    for i in (0, 1):
        data = make(seed * 2 + i)
        info = media_inspect(data, media_limits(), expect=kind)
        media_save(data=data, info=info)
        candidates.append(
            Candidate.objects.create(
                prompt=prompt, kind=kind, content_hash=info.hash, file=info.name,
                content_type=info.content_type, size=info.size,
            )
        )  # fmt: skip
    return Comparison.objects.create(
        project=project, prompt=prompt, candidate_a=candidates[0], candidate_b=candidates[1],
        **fields,
    )  # fmt: skip


def judgement_make(comparison: Comparison, user, choice: str, **fields) -> Judgement:
    """A human judgement by `user`."""
    return Judgement.objects.create(
        comparison=comparison,
        source_kind=Judgement.SourceKind.HUMAN,
        user=user,
        source_name=user.username,
        choice=choice,
        idempotency_key=uuid.uuid4().hex,
        **fields,
    )

"""The core data model: projects, prompts, candidates, comparisons, judgements.

Rules that are data rules live in the database as constraints; the services that write
these rows live in annotation/services/.
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.core.files.storage import FileSystemStorage
from django.db import models
from django.db.models import Q

from annotation.schema import label_schema_default, label_schema_validate
from core.locks import Lock
from core.models import Run
from core.roles import Role


class Project(models.Model):
    slug = models.SlugField(max_length=64, unique=True)
    name = models.CharField(max_length=200)
    instructions = models.TextField(blank=True, help_text="Markdown; rendered sanitised.")
    label_schema = models.JSONField(
        default=label_schema_default, validators=[label_schema_validate]
    )
    # Bumped whenever the schema changes on a project with judgements, so old labels keep
    # the meaning they were given under.
    label_schema_version = models.PositiveIntegerField(default=1)
    overlap = models.PositiveSmallIntegerField(default=1, help_text="Humans per comparison.")
    gold_ratio = models.FloatField(default=0.0)
    # Audio projects: a choice counts only once every clip was played to its end (the
    # labelling page reports each finished play; the submit checks them on the server).
    require_full_play = models.BooleanField(
        default=False,
        help_text="Audio: accept a choice only after both clips were played to the end.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(overlap__gte=1), name="project_overlap_min_1"),
            models.CheckConstraint(
                condition=Q(gold_ratio__gte=0) & Q(gold_ratio__lte=1),
                name="project_gold_ratio_0_1",
            ),
        ]

    def __str__(self) -> str:
        return self.name


class LabelSchemaVersion(models.Model):
    """A label schema a project used before it changed: judgements made under version N
    are read with the schema of version N."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="schema_versions")
    version = models.PositiveIntegerField()
    schema = models.JSONField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["project", "version"], name="schemaversion_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.project} schema v{self.version}"


class Membership(models.Model):
    Role = Role

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships"
    )
    role = models.CharField(max_length=12, choices=Role.choices, default=Role.ANNOTATOR)
    # The annotator's weight in label aggregation (curation's reliability estimate, e.g.
    # Dawid-Skene); NULL: not estimated yet, counts as 1.
    reliability = models.FloatField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["project", "user"], name="membership_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.user} ({self.role}) in {self.project}"


class Prompt(models.Model):
    # Indexes: every one slows bulk imports, so a foreign key that leads a unique constraint
    # gets no index of its own (db_index=False); the constraint's index serves it.
    project = models.ForeignKey(
        Project, on_delete=models.CASCADE, related_name="prompts", db_index=False
    )
    content_hash = models.CharField(max_length=64)
    # Plain text of the prompt; for a conversation, the turns flattened for display/search.
    text = models.TextField()
    # A conversation as [{"role": ..., "content": ...}]; null for a plain-text prompt.
    messages = models.JSONField(null=True, blank=True)
    # An image or audio the prompt shows (named by annotation.media.blob_name; its alt text
    # in metadata["media_alt"]). The content hash then covers the text and the file's hash.
    media = models.FileField(upload_to="prompts/%Y/%m/", blank=True)
    media_content_type = models.CharField(max_length=100, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["project", "content_hash"], name="prompt_unique_content"
            ),
        ]
        indexes = [
            # The media view's "does this project use this file" look-up.
            models.Index(
                fields=["media", "project"], name="prompt_media_idx", condition=~Q(media="")
            ),
        ]

    def __str__(self) -> str:
        return self.text[:80]


class Candidate(models.Model):
    class Kind(models.TextChoices):
        TEXT = "text", "Text"
        IMAGE = "image", "Image"
        AUDIO = "audio", "Audio"

    prompt = models.ForeignKey(
        Prompt, on_delete=models.CASCADE, related_name="candidates", db_index=False
    )
    kind = models.CharField(max_length=8, choices=Kind.choices, default=Kind.TEXT)
    # For an image or audio candidate: the sha256 of the file's bytes (annotation.media).
    content_hash = models.CharField(max_length=64)
    text = models.TextField(blank=True)
    # A multi-turn response (rare: some transcripts continue after the answer).
    messages = models.JSONField(null=True, blank=True)
    # Named by annotation.media.blob_name (stored once per content); alt text, when the
    # manifest gave one, in metadata["alt"].
    file = models.FileField(upload_to="candidates/%Y/%m/", blank=True)
    content_type = models.CharField(max_length=100, blank=True)
    size = models.PositiveBigIntegerField(null=True, blank=True)
    source_model = models.CharField(max_length=200, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["prompt", "content_hash"], name="candidate_unique_content"
            ),
            models.CheckConstraint(
                condition=(Q(kind="text") & Q(file=""))
                | (Q(kind__in=["image", "audio"]) & ~Q(file="")),
                name="candidate_kind_matches_content",
            ),
        ]
        indexes = [
            # The media view's "does a project of this user use this file" look-up.
            models.Index(fields=["file"], name="candidate_file_idx", condition=~Q(file="")),
        ]

    def __str__(self) -> str:
        return self.text[:80] if self.kind == self.Kind.TEXT else self.file.name


class Ranking(models.Model):
    """A prompt with N candidates to be ordered; a submitted order expands into pairs."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="rankings")
    prompt = models.ForeignKey(Prompt, on_delete=models.CASCADE, related_name="rankings")
    candidates = models.ManyToManyField(Candidate, related_name="rankings")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["project", "prompt"], name="ranking_unique_prompt"),
        ]

    def __str__(self) -> str:
        return f"ranking #{self.pk} of prompt #{self.prompt_id}"


class Choice(models.TextChoices):
    A = "a", "A"
    B = "b", "B"
    TIE = "tie", "Tie"
    BOTH_BAD = "both_bad", "Both bad"


class Comparison(models.Model):
    """A prompt and two of its candidates. candidate_a/candidate_b are stored in a canonical
    order (by content hash) so that the same pair is one row whatever order it arrives in;
    what the annotator saw left/right is recorded per assignment and judgement."""

    class Status(models.TextChoices):
        PENDING = "pending", "Needs labels"
        LABELLED = "labelled", "Labelled"
        # All labels are in but they do not agree: a reviewer settles it.
        DISPUTED = "disputed", "Disputed"

    class Route(models.TextChoices):
        HUMAN = "human", "Human"
        AI = "ai", "AI"
        BOTH = "both", "Both"

    project = models.ForeignKey(
        Project, on_delete=models.CASCADE, related_name="comparisons", db_index=False
    )
    prompt = models.ForeignKey(Prompt, on_delete=models.CASCADE, related_name="comparisons")
    candidate_a = models.ForeignKey(
        Candidate, on_delete=models.CASCADE, related_name="+", db_index=False
    )
    candidate_b = models.ForeignKey(Candidate, on_delete=models.CASCADE, related_name="+")
    ranking = models.ForeignKey(
        Ranking, on_delete=models.SET_NULL, null=True, blank=True, related_name="comparisons"
    )
    external_id = models.CharField(max_length=200, blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    route = models.CharField(max_length=5, choices=Route.choices, default=Route.HUMAN)
    priority = models.IntegerField(default=0)
    # A stable pseudo-random key (from the pair's hash): the queue orders by priority then
    # this, so that it never needs ORDER BY random().
    queue_key = models.BigIntegerField(default=0)
    human_judgement_count = models.PositiveSmallIntegerField(default=0)
    # NULL means "no label yet", which the check constraints and queue queries rely on.
    label = models.CharField(max_length=8, choices=Choice.choices, null=True, blank=True)  # noqa: DJ001
    label_confidence = models.FloatField(null=True, blank=True)
    label_margin = models.FloatField(null=True, blank=True)
    # Dropped from exports and training by curation (curation app; audited there).
    excluded = models.BooleanField(default=False)
    is_gold = models.BooleanField(default=False)
    gold_label = models.CharField(max_length=8, choices=Choice.choices, null=True, blank=True)  # noqa: DJ001
    metadata = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=~Q(candidate_a=models.F("candidate_b")),
                name="comparison_distinct_candidates",
            ),
            models.UniqueConstraint(
                fields=["candidate_a", "candidate_b"], name="comparison_unique_pair"
            ),
            models.CheckConstraint(
                condition=Q(is_gold=False) | Q(gold_label__isnull=False),
                name="comparison_gold_has_label",
            ),
            models.CheckConstraint(
                condition=Q(label_confidence__isnull=True)
                | (Q(label_confidence__gte=0) & Q(label_confidence__lte=1)),
                name="comparison_confidence_0_1",
            ),
        ]
        indexes = [
            # The annotation queue: open comparisons of a project by priority, then key.
            # Route is not a key column: the queue asks for route IN (human, both), and
            # an IN before the sort columns would make PostgreSQL sort instead of walking
            # the index in order.
            models.Index(
                fields=["project", "status", "-priority", "queue_key"],
                include=["route"],
                name="comparison_queue_idx",
            ),
            models.Index(
                fields=["project", "queue_key"],
                condition=Q(is_gold=True),
                name="comparison_gold_idx",
            ),
            # Exports stream labelled comparisons of a project in id order.
            models.Index(fields=["project", "label", "id"], name="comparison_export_idx"),
        ]

    def __str__(self) -> str:
        return f"comparison #{self.pk} ({self.candidate_a_id} vs {self.candidate_b_id})"


class Assignment(models.Model):
    class State(models.TextChoices):
        LEASED = "leased", "Leased"
        SUBMITTED = "submitted", "Submitted"
        SKIPPED = "skipped", "Skipped"
        EXPIRED = "expired", "Expired"

    class Order(models.TextChoices):
        AB = "ab", "A left"
        BA = "ba", "B left"

    comparison = models.ForeignKey(Comparison, on_delete=models.CASCADE, related_name="assignments")
    annotator = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="assignments"
    )
    key = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    state = models.CharField(max_length=10, choices=State.choices, default=State.LEASED)
    leased_until = models.DateTimeField()
    presentation_order = models.CharField(max_length=2, choices=Order.choices)
    # Audio: the canonical sides ("a", "b") the annotator played to the end, as the page
    # reported them; Project.require_full_play checks it at submit.
    played = models.JSONField(default=list, blank=True)
    skip_reason = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            # Never the same comparison twice to one annotator.
            models.UniqueConstraint(
                fields=["comparison", "annotator"], name="assignment_unique_annotator"
            ),
        ]
        indexes = [
            models.Index(fields=["annotator", "state"], name="assignment_annotator_idx"),
            models.Index(fields=["state", "leased_until"], name="assignment_lease_idx"),
        ]

    def __str__(self) -> str:
        return f"assignment #{self.pk} ({self.state})"


class Judgement(models.Model):
    class SourceKind(models.TextChoices):
        HUMAN = "human", "Human"
        AI = "ai", "AI"
        IMPORT = "import", "Imported"

    comparison = models.ForeignKey(Comparison, on_delete=models.CASCADE, related_name="judgements")
    source_kind = models.CharField(max_length=8, choices=SourceKind.choices)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="judgements",
    )
    # "import:<file name>", "ai:<annotator name>", or the username for humans.
    source_name = models.CharField(max_length=255)
    model_version = models.CharField(max_length=100, blank=True)
    assignment = models.OneToOneField(
        Assignment, on_delete=models.SET_NULL, null=True, blank=True, related_name="judgement"
    )
    choice = models.CharField(max_length=8, choices=Choice.choices)
    strength = models.PositiveSmallIntegerField(null=True, blank=True)
    margin = models.FloatField(null=True, blank=True)
    confidence = models.FloatField(null=True, blank=True)
    # {"a": {"helpfulness": 3, ...}, "b": {...}}: per candidate, canonical (not screen) side.
    aspects = models.JSONField(default=dict, blank=True)
    rationale = models.TextField(blank=True)
    time_spent_ms = models.PositiveIntegerField(null=True, blank=True)
    presentation_order = models.CharField(max_length=2, blank=True)
    label_schema_version = models.PositiveIntegerField(default=1)
    # Set on the pairs a submitted ranking implies (annotation/services/ranking.py): the
    # ranking is the annotator's answer, these rows are what training and export read.
    ranking_judgement = models.ForeignKey(
        "RankingJudgement",
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="pair_judgements",
    )
    # Retries, double clicks and re-imports carry the same key and make no second row.
    # A UniqueConstraint rather than unique=True: no second (LIKE) index on PostgreSQL.
    idempotency_key = models.CharField(max_length=64)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(source_kind="human", user__isnull=False)
                | (~Q(source_kind="human") & Q(user__isnull=True)),
                name="judgement_human_has_user",
            ),
            models.UniqueConstraint(fields=["idempotency_key"], name="judgement_idempotency"),
            models.UniqueConstraint(
                fields=["comparison", "user"],
                condition=Q(user__isnull=False),
                name="judgement_one_per_user",
            ),
            models.UniqueConstraint(
                fields=["comparison", "source_name"],
                condition=Q(user__isnull=True),
                name="judgement_one_per_source",
            ),
        ]
        indexes = [
            models.Index(fields=["source_kind", "source_name"], name="judgement_source_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.source_name}: {self.choice} on #{self.comparison_id}"


class RankingAssignment(models.Model):
    """A lease of a whole Ranking to one annotator (ranking mode).

    A model of its own rather than a nullable ranking FK on Assignment: Assignment's
    comparison FK, left/right presentation order, unique (comparison, annotator) and the
    pairwise queue's SQL all assume one comparison per row, and every one of them would
    need an "unless it is a ranking" branch. Same states and lease rules as Assignment."""

    ranking = models.ForeignKey(Ranking, on_delete=models.CASCADE, related_name="assignments")
    annotator = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="ranking_assignments"
    )
    key = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    state = models.CharField(
        max_length=10, choices=Assignment.State.choices, default=Assignment.State.LEASED
    )
    leased_until = models.DateTimeField()
    # Candidate ids in the (shuffled) order the annotator first sees them.
    presentation_order = models.JSONField(default=list)
    # Audio: candidate ids played to the end (Project.require_full_play).
    played = models.JSONField(default=list, blank=True)
    skip_reason = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["ranking", "annotator"], name="rankingassignment_unique_annotator"
            ),
        ]
        indexes = [
            models.Index(fields=["annotator", "state"], name="rankassign_annotator_idx"),
        ]

    def __str__(self) -> str:
        return f"ranking assignment #{self.pk} ({self.state})"


class RankingJudgement(models.Model):
    """A submitted ranking, as given: tie groups of candidate ids, best first, e.g.
    [[12], [15, 9], [20]]. With top_k, candidates left out are unranked (below the rest,
    with no order among themselves). Its pairs are Judgement rows (pair_judgements)."""

    ranking = models.ForeignKey(Ranking, on_delete=models.CASCADE, related_name="judgements")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="ranking_judgements"
    )
    assignment = models.OneToOneField(
        RankingAssignment,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="judgement",
    )
    order = models.JSONField()
    top_k = models.PositiveSmallIntegerField(null=True, blank=True)
    time_spent_ms = models.PositiveIntegerField(null=True, blank=True)
    label_schema_version = models.PositiveIntegerField(default=1)
    idempotency_key = models.CharField(max_length=64)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["idempotency_key"], name="rankingjudgement_idempotency"
            ),
            models.UniqueConstraint(
                fields=["ranking", "user"], name="rankingjudgement_one_per_user"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.user}: {self.order} on ranking #{self.ranking_id}"


class LabelResolution(models.Model):
    """A reviewer setting a comparison's final label, with why. One row per change, never
    edited: the rows of a comparison are its history."""

    comparison = models.ForeignKey(Comparison, on_delete=models.CASCADE, related_name="resolutions")
    # PROTECT: the history must not lose who decided.
    reviewer = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="label_resolutions"
    )
    previous_label = models.CharField(  # noqa: DJ001 (NULL: there was no label)
        max_length=8, choices=Choice.choices, null=True, blank=True
    )
    label = models.CharField(max_length=8, choices=Choice.choices)
    note = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(label__in=Choice.values), name="labelresolution_label_valid"
            ),
            models.CheckConstraint(condition=~Q(note=""), name="labelresolution_has_note"),
        ]

    def __str__(self) -> str:
        return f"#{self.comparison_id}: {self.previous_label} -> {self.label}"


def import_storage() -> FileSystemStorage:
    """Uploaded import files: under IMPORT_ROOT, outside MEDIA_ROOT, never served; the
    job deletes its file once it has finished."""
    return FileSystemStorage(location=settings.IMPORT_ROOT)


class ImportJob(Run):
    """One import of a file (web upload or `import_pairs`), with the progress its page polls."""

    TASK = "annotation.tasks.import_job_execute_task"
    LOCK = Lock.IMPORT_JOB
    UNIT = "rows"
    # Checking the rows, storing their files (media only), writing the rows.
    PHASES = ("validating", "storing", "writing")

    class Format(models.TextChoices):
        AUTO = "auto", "Detect"
        TRL = "trl", "TRL (prompt, chosen, rejected)"
        HH_RLHF = "hh-rlhf", "hh-rlhf transcripts (chosen, rejected)"
        RANKED = "ranked", "Prompt + N responses (ranked or unlabelled)"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="import_jobs")
    # An uploaded file (the import page), or the path of a file on the machine (the
    # import_pairs command), never both.
    file = models.FileField(upload_to="%Y/%m/", storage=import_storage, blank=True)
    source_path = models.CharField(max_length=1000, blank=True)
    original_name = models.CharField(max_length=255)
    format = models.CharField(max_length=8, choices=Format.choices, default=Format.AUTO)
    # pairs, max_pairs (ranked shape) and source (the label source name).
    options = models.JSONField(default=dict, blank=True)
    summary = models.JSONField(default=dict, blank=True)
    # Every error found (file line and field), at most the first 100 and a count.
    errors = models.JSONField(default=list, blank=True)

    class Meta:
        indexes = [models.Index(fields=["project", "-created_at"], name="importjob_recent_idx")]
        constraints = [
            *Run.run_constraints("importjob"),
            models.CheckConstraint(
                condition=(~Q(file="") & Q(source_path="")) | (Q(file="") & ~Q(source_path="")),
                name="importjob_one_source",
            ),
        ]

    def __str__(self) -> str:
        return f"import #{self.pk} of {self.original_name}"

"""AI annotators: create them and change their settings (name and kind are fixed)."""

from __future__ import annotations

from urllib.parse import urlparse

from annotation.models import Project
from core.exceptions import ApplicationError
from curation.judges.models import AIAnnotator
from curation.judges.services.kinds import judge_kind
from curation.judges.verdicts import template_check


def _settings_clean(kind: str, raw: dict) -> dict:
    spec = judge_kind(kind)
    if not spec.defaults:
        return {}
    out: dict = {}
    template = (raw.get("prompt_template") or "").strip()
    if template:
        try:
            out["prompt_template"] = template_check(template)
        except ValueError as exc:
            raise ApplicationError(f"Bad prompt template: {exc}.") from exc
    for key, default in spec.defaults.items():
        value = raw.get(key)
        if value in (None, ""):
            continue
        try:
            value = type(default)(value)
        except (TypeError, ValueError):
            raise ApplicationError(f"Bad value for {key}: {value!r}.") from None
        if value <= 0 or (key == "max_attempts" and value > 10):
            raise ApplicationError(f"{key} must be positive (max_attempts at most 10).")
        out[key] = value
    if spec.remote:
        base_url = (raw.get("base_url") or "").strip()
        parsed = urlparse(base_url)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise ApplicationError("A remote LLM judge needs a base URL (http:// or https://).")
        if parsed.username or parsed.password:
            raise ApplicationError("Put the API key in the key field, not in the URL.")
        model = (raw.get("model") or "").strip()
        if not model:
            raise ApplicationError("A remote LLM judge needs a model name.")
        out.update(base_url=base_url, model=model[:100])
    return out


def annotator_create(
    *,
    project: Project,
    name: str,
    kind: str,
    settings: dict | None = None,
    api_key: str = "",
    is_active: bool = True,
) -> AIAnnotator:
    name = (name or "").strip()
    if not name:
        raise ApplicationError("Give the AI annotator a name.")
    if AIAnnotator.objects.filter(project=project, name=name).exists():
        raise ApplicationError(f"The project already has an AI annotator named '{name}'.")
    return AIAnnotator.objects.create(
        project=project,
        name=name,
        kind=kind,
        settings=_settings_clean(kind, settings or {}),
        api_key=(api_key or "").strip(),
        is_active=is_active,
    )


def annotator_update(
    *,
    annotator: AIAnnotator,
    settings: dict | None = None,
    api_key: str | None = None,
    clear_api_key: bool = False,
    is_active: bool | None = None,
) -> AIAnnotator:
    """Change settings, activity or the key. `api_key` None or "" keeps the stored key
    (forms never show it back); `clear_api_key` removes it. Name and kind are fixed."""
    if settings is not None:
        annotator.settings = _settings_clean(annotator.kind, settings)
    if clear_api_key:
        annotator.api_key = ""
    elif api_key:
        annotator.api_key = api_key.strip()
    if is_active is not None:
        annotator.is_active = is_active
    annotator.save(update_fields=["settings", "api_key", "is_active"])
    return annotator

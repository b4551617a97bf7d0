"""Turns a status change into SMS and email text from Jinja2 templates, per status and language."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from shared.catalog import Catalog
from shared.domain.tracking_code import format_for_display
from shared.events import Language, StatusChanged

TEMPLATES_DIR = Path(__file__).resolve().parent / "templates"


@dataclass(frozen=True)
class EmailContent:
    """An email's subject line and plain-text body."""

    subject: str
    body: str


def clip(text: str, limit: int) -> str:
    """Text cut to at most `limit` characters, at a word if one is near, marked as cut (SMS budget)."""
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    # "…" is not in the GSM-7 alphabet: it would turn a Latin SMS into UCS-2 and halve its length budget.
    marker = "..." if text.isascii() else "…"
    cut = text[: limit - len(marker)]
    space = cut.rfind(" ")
    if space >= len(cut) // 2:
        cut = cut[:space]
    return cut.rstrip(" ,.،؛:") + marker


def end_sentence(text: str) -> str:
    """Text ending in a full stop, unless it already ends in one, a question or exclamation mark, or "…"."""
    return text if text.endswith((".", "…", "!", "?", "؟")) else text + "."


class Renderer:
    """Renders notifications; one Jinja2 environment, templates looked up per language, channel and status."""

    def __init__(self, catalog: Catalog, templates_dir: Path = TEMPLATES_DIR) -> None:
        self.catalog = catalog
        self.env = Environment(
            loader=FileSystemLoader(templates_dir),
            undefined=StrictUndefined,
            autoescape=select_autoescape(enabled_extensions=("html",), default_for_string=False, default=False),
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=False,
        )
        self.env.filters["clip"] = clip
        self.env.filters["end_sentence"] = end_sentence

    def context(self, *, language: Language, event: StatusChanged) -> dict[str, Any]:
        """What every template may use: code, service name, status, reason in the reader's language."""
        service = self.catalog.get(event.service_id)
        if service is None:
            service_name = event.service_id
        else:
            service_name = service.title.fa if language is Language.FA else service.title.en
        reason = event.reason_fa if language is Language.FA else event.reason_en
        return {
            "tracking_code": format_for_display(event.tracking_code),
            "service_name": service_name,
            "status": event.status.value,
            "previous_status": event.previous_status.value if event.previous_status else None,
            "reason": (reason or "").strip() or None,
        }

    def _render(self, language: Language, channel: str, status: str, suffix: str, context: dict[str, Any]) -> str:
        folder = f"{language.value}/{channel}"
        template = self.env.select_template([f"{folder}/{status}{suffix}", f"{folder}/default{suffix}"])
        return template.render(context).strip()

    def sms(self, *, language: str, event: StatusChanged) -> str:
        """The SMS text for a status change."""
        lang = _language(language)
        return self._render(lang, "sms", event.status.value, ".j2", self.context(language=lang, event=event))

    def email(self, *, language: str, event: StatusChanged) -> EmailContent:
        """The email subject and plain-text body for a status change."""
        lang = _language(language)
        context = self.context(language=lang, event=event)
        subject = self._render(lang, "email", event.status.value, ".subject.j2", context)
        body = self._render(lang, "email", event.status.value, ".body.j2", context)
        # A subject is one header line: a template's line breaks would otherwise fold into it.
        return EmailContent(subject=" ".join(subject.split()), body=body + "\n")


def _language(value: str) -> Language:
    try:
        return Language(value)
    except ValueError:
        return Language.FA

"""What notify's subscribers and routes depend on, built once by the composition root."""

from __future__ import annotations

from dataclasses import dataclass, field

from .adapters import EmailSender, SmsGateway
from .adapters_templates import Renderer
from .domain import QuietHours
from .service import SendPolicy, Sessions


@dataclass
class Notify:
    """notify's dependencies."""

    sessions: Sessions
    sms: SmsGateway
    email: EmailSender
    renderer: Renderer
    group_id: str = "notify"
    policy: SendPolicy = field(default_factory=SendPolicy)
    contact_wait_s: float = 10.0
    quiet: QuietHours | None = None

"""Events as the services derive them from one another, for the tests and the benchmarks."""

from __future__ import annotations

from typing import Any

from shared.domain.state_machine import RequestState
from shared.events import EventBase, RequestSubmitted, StatusChanged, derived_event_id


def answering(cause: EventBase, kind: str, discriminator: str = "") -> dict[str, Any]:
    """The fields of a `kind` event that answers `cause`: its id derived from the cause's, the cause's tracking
    code, and the cause as what caused it."""
    return {
        "event_id": derived_event_id(cause.event_id, kind, discriminator),
        "tracking_code": cause.tracking_code,
        "caused_by": cause.event_id,
    }


def submitted_change(request: RequestSubmitted) -> StatusChanged:
    """The StatusChanged (to SUBMITTED) tracking derives from a submission, under the same derived id."""
    return StatusChanged(
        **answering(request, "StatusChanged"),
        caused_by_type="RequestSubmitted",
        service_id=request.service_id,
        agency=request.agency,
        previous_status=None,
        status=RequestState.SUBMITTED,
    )

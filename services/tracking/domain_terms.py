"""What tracking needs of a service's catalog version: its SLA and the inquiries it waits for, with the names the
timeline uses (pure: the catalog is loaded by the caller)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from shared.catalog import Catalog

from .domain import NO_NAMES, Names


@dataclass(frozen=True)
class PendingInquiry:
    """An inquiry a service makes, with its agency's names for the citizen."""

    inquiry: str
    agency: str
    agency_fa: str
    agency_en: str


@dataclass(frozen=True)
class ServiceTerms:
    """What tracking needs of a service's catalog version: its SLA and the inquiries it waits for."""

    duration_working_days: int
    inquiries: tuple[PendingInquiry, ...] = ()
    # The whole catalog's names, for the timeline's words.
    names: Names = NO_NAMES


TermsOf = Callable[[str, int], ServiceTerms | None]


def catalog_names(catalog: Catalog) -> Names:
    """The catalog's Persian and English names of its agencies, services and inquiries."""
    return Names(
        agencies={agency.id: (agency.name.fa, agency.name.en) for agency in catalog.agencies()},
        services={service.id: (service.title.fa, service.title.en) for service in catalog.all()},
        inquiries={
            inquiry.id: (inquiry.title.fa, inquiry.title.en)
            for service in catalog.all()
            for inquiry in service.inquiries
            if inquiry.title is not None
        },
    )


def catalog_terms(catalog: Catalog) -> TermsOf:
    """Service terms from the catalog (None for a version this deployment does not know)."""
    cache: dict[tuple[str, int], ServiceTerms | None] = {}
    names = catalog_names(catalog)

    def terms(service_id: str, version: int) -> ServiceTerms | None:
        key = (service_id, version)
        if key not in cache:
            service = catalog.get_version(service_id, version)
            if service is None:
                cache[key] = None
            else:
                pending = []
                for inquiry in service.inquiries:
                    agency = catalog.agency(inquiry.agency)
                    pending.append(
                        PendingInquiry(
                            inquiry.id,
                            inquiry.agency,
                            agency.name.fa if agency else inquiry.agency,
                            agency.name.en if agency else inquiry.agency,
                        )
                    )
                cache[key] = ServiceTerms(service.duration_working_days, tuple(pending), names)
        return cache[key]

    return terms

"""The agency adapters inquiry calls, as one bundle, and that bundle over HTTP (one pooled client per agency)."""

from __future__ import annotations

from dataclasses import dataclass

import httpx

from .adapters import (
    CallGuard,
    CivilRegistry,
    HttpCivilRegistry,
    HttpJudiciary,
    HttpMobileRegistry,
    HttpPostalRegistry,
    HttpPropertyRegistry,
    HttpTaxAdministration,
    Judiciary,
    MobileRegistry,
    PostalRegistry,
    PropertyRegistry,
    TaxAdministration,
    make_agency_client,
)


@dataclass(frozen=True)
class Agencies:
    """The agency adapters inquiry can call; an agency left as None is not configured here."""

    civil_registry: CivilRegistry
    mobile_registry: MobileRegistry | None = None
    postal: PostalRegistry | None = None
    tax: TaxAdministration | None = None
    judiciary: Judiciary | None = None
    property_registry: PropertyRegistry | None = None


def http_agencies(
    base_url: str, *, timeout_s: float, max_attempts: int, guard: CallGuard | None = None
) -> tuple[Agencies, list[httpx.AsyncClient]]:
    """Every agency over HTTP under one base URL, one pooled client each; the caller closes the clients."""
    clients: list[httpx.AsyncClient] = []

    def client() -> httpx.AsyncClient:
        made = make_agency_client(base_url, timeout_s=timeout_s)
        clients.append(made)
        return made

    agencies = Agencies(
        civil_registry=HttpCivilRegistry(client(), max_attempts=max_attempts, guard=guard),
        mobile_registry=HttpMobileRegistry(client(), max_attempts=max_attempts, guard=guard),
        postal=HttpPostalRegistry(client(), max_attempts=max_attempts, guard=guard),
        tax=HttpTaxAdministration(client(), max_attempts=max_attempts, guard=guard),
        judiciary=HttpJudiciary(client(), max_attempts=max_attempts, guard=guard),
        property_registry=HttpPropertyRegistry(client(), max_attempts=max_attempts, guard=guard),
    )
    return agencies, clients

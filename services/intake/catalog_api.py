"""intake's catalog routes: the published services, every version of each, search, and the agencies."""

from __future__ import annotations

from typing import Annotated, Final

from fastapi import APIRouter, Depends, Path, Query

from shared.catalog import Agency, Catalog, ServiceDefinition
from shared.domain.digits import to_persian_digits
from shared.http import ProblemError, problem_responses
from shared.problems import problems_beside
from shared.service_kit import state_dependency

from .domain import UnknownService
from .schemas import ServiceSummary, summarise
from .service import Intake

catalog_router = APIRouter(prefix="/api/v1", tags=["catalog"])


# 400 and 422 are documented for the whole app (see app.py); these routes add their own 404.
NOT_FOUND_RESPONSES = problem_responses(404)


def get_catalog(intake: Annotated[Intake, Depends(state_dependency("intake", Intake))]) -> Catalog:
    """The catalog intake was started with."""
    return intake.catalog


CatalogDep = Annotated[Catalog, Depends(get_catalog)]
ServiceId = Annotated[str, Path(max_length=100, examples=["birth-certificate-duplicate"])]


_PROBLEMS: Final = problems_beside(__file__)


def _unknown_version(service_id: str, version: int, versions: list[int]) -> ProblemError:
    return _PROBLEMS["unknown-service-version"].error(
        service_id=service_id,
        version=version,
        listed=", ".join(str(number) for number in versions),
        listed_fa=to_persian_digits("، ".join(str(number) for number in versions)),
    )


@catalog_router.get(
    "/services",
    response_model=list[ServiceSummary],
    summary="List the services of the catalog, optionally searched and filtered by agency",
)
async def list_services(
    catalog: CatalogDep,
    q: Annotated[
        str | None,
        Query(
            max_length=200,
            description="Words that must all appear (Persian or English; Arabic letters and any digits accepted)",
            examples=["گواهی مالیاتی"],
        ),
    ] = None,
    agency: Annotated[str | None, Query(max_length=100, description="Only this agency's services")] = None,
) -> list[ServiceSummary]:
    services = catalog.search(q) if q else catalog.all()
    return [summarise(service) for service in services if agency is None or service.agency == agency]


@catalog_router.get(
    "/services/{service_id}",
    response_model=ServiceDefinition,
    responses=NOT_FOUND_RESPONSES,
    summary="Everything a citizen needs to know about one service (its latest version)",
)
async def get_service(service_id: ServiceId, catalog: CatalogDep) -> ServiceDefinition:
    service = catalog.get(service_id)
    if service is None:
        raise UnknownService(service_id)
    return service


@catalog_router.get(
    "/services/{service_id}/versions",
    response_model=list[int],
    responses=NOT_FOUND_RESPONSES,
    summary="The version numbers of one service, oldest first",
)
async def list_service_versions(service_id: ServiceId, catalog: CatalogDep) -> list[int]:
    versions = catalog.versions(service_id)
    if not versions:
        raise UnknownService(service_id)
    return versions


@catalog_router.get(
    "/services/{service_id}/versions/{version}",
    response_model=ServiceDefinition,
    responses=NOT_FOUND_RESPONSES,
    summary="One version of a service, as published then (a request records the version it was submitted under)",
)
async def get_service_version(
    service_id: ServiceId, version: Annotated[int, Path(ge=1)], catalog: CatalogDep
) -> ServiceDefinition:
    versions = catalog.versions(service_id)
    if not versions:
        raise UnknownService(service_id)
    service = catalog.get_version(service_id, version)
    if service is None:
        raise _unknown_version(service_id, version, versions)
    return service


@catalog_router.get(
    "/agencies", response_model=list[Agency], summary="The agencies that offer services or answer inquiries"
)
async def list_agencies(catalog: CatalogDep) -> list[Agency]:
    return catalog.agencies()

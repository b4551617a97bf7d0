"""The service catalog: the seeded files, the directive's fields, versions, agencies, load errors, search, API."""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from fastapi import FastAPI
from opentelemetry.sdk.trace import TracerProvider

from sandbox.faults import AGENCIES as SANDBOX_AGENCIES
from services.intake.app import create_app
from shared.catalog import (
    DEFAULT_CATALOG_DIR,
    Agency,
    Catalog,
    CatalogError,
    DecisionMode,
    DocumentFormat,
    FieldKind,
    Law,
    ServiceDefinition,
    Text,
    load_catalog,
)
from tests.problems import assert_problem

CATALOG = load_catalog()
SERVICES = CATALOG.all()
EVERY_VERSION = [
    version for s in SERVICES for n in CATALOG.versions(s.id) if (version := CATALOG.get_version(s.id, n)) is not None
]
SERVICE_FILES = sorted(DEFAULT_CATALOG_DIR.glob("*/v*.yaml"))

PROBLEM_JSON = "application/problem+json"

# What each service must ask the agencies: (inquiry agency, check) pairs, and how it is decided.
IDENTITY = ("civil-registry", "identity")
AUTOMATIC, REVIEW = DecisionMode.AUTOMATIC, DecisionMode.AGENCY_REVIEW
EXPECTED = {
    "birth-certificate-duplicate": ("civil-registry", {IDENTITY}, AUTOMATIC),
    "no-criminal-record-certificate": ("judiciary", {IDENTITY, ("judiciary", "criminal-record")}, AUTOMATIC),
    "tax-clearance-certificate": ("tax", {IDENTITY, ("tax", "clearance")}, AUTOMATIC),
    "property-ownership-certificate": ("property-registry", {IDENTITY, ("property-registry", "ownership")}, REVIEW),
    "postal-address-certificate": ("postal", {IDENTITY, ("postal", "address")}, AUTOMATIC),
    "business-licence-renewal": ("chamber-of-guilds", {IDENTITY, ("tax", "clearance")}, REVIEW),
    "pension-statement": ("pension-fund", {IDENTITY}, AUTOMATIC),
    "passport-renewal-appointment": ("passport-police", {IDENTITY, ("mobile-registry", "ownership")}, REVIEW),
}
# The checks the sandbox agencies answer (sandbox/agencies.py), by agency.
SANDBOX_CHECKS = {
    ("civil-registry", "identity"),
    ("mobile-registry", "ownership"),
    ("postal", "address"),
    ("tax", "clearance"),
    ("judiciary", "criminal-record"),
    ("property-registry", "ownership"),
}


def texts(text: Text) -> list[str]:
    return [text.fa, text.en]


# --- the seeded catalog ---------------------------------------------------------------------------


@pytest.mark.parametrize("path", SERVICE_FILES, ids=lambda path: f"{path.parent.name}/{path.name}")
def test_every_seeded_file_validates_and_its_name_is_its_id_and_version(path: Path) -> None:
    service = ServiceDefinition.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")))
    assert service.id == path.parent.name
    assert f"v{service.version}.yaml" == path.name
    assert CATALOG.get_version(service.id, service.version) == service


def test_no_service_file_is_left_outside_its_versioned_folder() -> None:
    assert list(DEFAULT_CATALOG_DIR.glob("*.yaml")) == []
    assert len(EVERY_VERSION) == len(SERVICE_FILES)


def test_at_least_eight_services_from_at_least_four_agencies() -> None:
    assert len(SERVICES) >= 8
    assert len({service.agency for service in SERVICES}) >= 4
    assert set(EXPECTED) <= {service.id for service in SERVICES}


@pytest.mark.parametrize("service", EVERY_VERSION, ids=lambda s: f"{s.id}-v{s.version}")
def test_every_version_carries_every_field_the_directive_demands(service: ServiceDefinition) -> None:
    assert CATALOG.agency(service.agency) is not None
    for text in (service.title, service.description, service.complaint_procedure, service.follow_up_procedure):
        assert text.fa.strip() and text.en.strip()
    assert service.steps and service.workflow
    assert all(step.fa.strip() and step.en.strip() for step in [*service.steps, *service.workflow])
    assert service.laws
    for law in service.laws:
        assert law.title.fa and law.title.en and law.number
        assert re.fullmatch(r"1[2-4][0-9]{2}-[01][0-9]-[0-3][0-9]", law.date), law.date  # Jalali
    assert len(service.faq) >= 2
    assert all(faq.question.fa and faq.question.en and faq.answer.fa and faq.answer.en for faq in service.faq)
    assert 1 <= service.duration_working_days <= 30
    assert service.fee.amount_rials >= 0
    assert all(exempt.fa and exempt.en for exempt in service.fee.exempt)
    assert service.inquiries
    for document in service.required_documents:
        assert document.formats and document.max_size_kb > 0 and document.title.fa
    for form_field in service.fields:
        assert form_field.label.fa and form_field.label.en and form_field.rule.fa and form_field.rule.en


def test_persian_texts_use_persian_letters_not_arabic_ones() -> None:
    arabic = re.compile("[\u064a\u0643\u0649\u0629]")  # ي ك ى ة
    for path in [*SERVICE_FILES, DEFAULT_CATALOG_DIR.parent / "agencies.yaml"]:
        assert not arabic.search(path.read_text(encoding="utf-8")), path


@pytest.mark.parametrize("service_id", sorted(EXPECTED))
def test_each_service_asks_the_agencies_it_needs_and_is_decided_as_agreed(service_id: str) -> None:
    agency, checks, decision = EXPECTED[service_id]
    service = CATALOG.get(service_id)
    assert service is not None
    assert service.agency == agency
    assert {(inquiry.agency, inquiry.check) for inquiry in service.inquiries} == checks
    assert service.decision is decision


def test_every_inquiry_goes_to_an_agency_and_check_the_sandbox_serves() -> None:
    for service in EVERY_VERSION:
        for inquiry in service.inquiries:
            assert inquiry.agency in SANDBOX_AGENCIES
            assert (inquiry.agency, inquiry.check) in SANDBOX_CHECKS
    assert set(SANDBOX_AGENCIES) <= {agency.id for agency in CATALOG.agencies()}


def test_the_forms_carry_the_fields_their_inquiries_need() -> None:
    def field_kinds(service_id: str) -> dict[str, FieldKind]:
        service = CATALOG.get(service_id)
        assert service is not None
        return {field.name: field.kind for field in service.fields}

    assert "property_id" in field_kinds("property-ownership-certificate")
    assert field_kinds("postal-address-certificate")["postal_code"] is FieldKind.POSTAL_CODE


def test_services_with_documents_and_fees_as_agreed() -> None:
    licence = CATALOG.get("business-licence-renewal")
    passport = CATALOG.get("passport-renewal-appointment")
    assert licence is not None and passport is not None
    previous = next(d for d in licence.required_documents if d.kind == "previous_licence")
    assert previous.mandatory and set(previous.formats) == {DocumentFormat.PDF, DocumentFormat.JPEG}
    assert licence.fee.amount_rials > 0
    photo = next(d for d in passport.required_documents if d.kind == "photo")
    assert set(photo.formats) == {DocumentFormat.JPEG, DocumentFormat.PNG}
    assert passport.fee.amount_rials > 0 and passport.fee.exempt


def test_birth_certificate_stays_what_the_submission_tests_submit() -> None:
    for number in (1, 2):
        service = CATALOG.get_version("birth-certificate-duplicate", number)
        assert service is not None
        assert [(f.name, f.kind, f.required) for f in service.fields] == [("reason", FieldKind.TEXT, True)]
        assert [inquiry.id for inquiry in service.inquiries] == ["identity"]
        assert service.required_documents == []
        assert service.decision is DecisionMode.AUTOMATIC


# --- versions -------------------------------------------------------------------------------------


def test_all_versions_are_kept_and_get_answers_the_latest() -> None:
    assert CATALOG.versions("birth-certificate-duplicate") == [1, 2]
    first = CATALOG.get_version("birth-certificate-duplicate", 1)
    latest = CATALOG.get("birth-certificate-duplicate")
    assert first is not None and latest is not None
    assert (first.version, latest.version) == (1, 2)
    assert latest == CATALOG.get_version("birth-certificate-duplicate", 2)
    assert len(latest.faq) > len(first.faq)
    assert latest.changes is not None and first.changes is None
    assert [service.id for service in CATALOG.all()].count("birth-certificate-duplicate") == 1


def test_unknown_ids_and_versions_are_none_or_empty() -> None:
    assert CATALOG.get("no-such-service") is None
    assert CATALOG.get_version("birth-certificate-duplicate", 99) is None
    assert CATALOG.get_version("no-such-service", 1) is None
    assert CATALOG.versions("no-such-service") == []


def test_a_later_version_must_say_what_changed() -> None:
    data = yaml.safe_load((DEFAULT_CATALOG_DIR / "birth-certificate-duplicate" / "v2.yaml").read_text("utf-8"))
    del data["changes"]
    with pytest.raises(ValueError, match="changes"):
        ServiceDefinition.model_validate(data)


@pytest.mark.parametrize("date", ["1355-04-16", "1403-06-31", "1402-12-30"])
def test_jalali_law_dates_are_accepted(date: str) -> None:
    assert Law(title=Text(fa="قانون", en="Act"), number="1", date=date).date == date


@pytest.mark.parametrize("date", ["1976-07-07", "1355/04/16", "1400-07-31", "1400-13-01", "1400-00-10"])
def test_law_dates_that_are_not_jalali_are_refused(date: str) -> None:
    with pytest.raises(ValueError):
        Law(title=Text(fa="قانون", en="Act"), number="1", date=date)


def test_a_catalog_built_by_hand_without_agencies_is_not_checked_for_them() -> None:
    service = CATALOG.get("pension-statement")
    assert service is not None
    odd = service.model_copy(update={"agency": "land-registry"})
    assert Catalog([odd]).get("pension-statement") == odd
    with pytest.raises(CatalogError, match="land-registry"):
        Catalog([odd], [Agency(id="pension-fund", name=Text(fa="صندوق", en="Fund"))])
    with pytest.raises(CatalogError, match="defined twice"):
        Catalog([service, service])


# --- broken catalogs fail the load, naming the file -----------------------------------------------


@pytest.fixture
def catalog_copy(tmp_path: Path) -> Path:
    """A writable copy of the seeded catalog (services/ and agencies.yaml); returns its services folder."""
    shutil.copy(DEFAULT_CATALOG_DIR.parent / "agencies.yaml", tmp_path / "agencies.yaml")
    shutil.copytree(DEFAULT_CATALOG_DIR, tmp_path / "services")
    return tmp_path / "services"


def edit(path: Path, change: Callable[[dict[str, Any]], None]) -> None:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    change(data)
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")


def test_the_copy_loads_like_the_original(catalog_copy: Path) -> None:
    assert load_catalog(catalog_copy).all() == SERVICES


def test_a_missing_field_names_the_file_and_the_field(catalog_copy: Path) -> None:
    edit(catalog_copy / "tax-clearance-certificate" / "v1.yaml", lambda data: data.pop("complaint_procedure"))
    with pytest.raises(CatalogError, match=r"tax-clearance-certificate/v1\.yaml: complaint_procedure: Field required"):
        load_catalog(catalog_copy)


def test_an_empty_required_list_is_refused(catalog_copy: Path) -> None:
    edit(catalog_copy / "pension-statement" / "v1.yaml", lambda data: data.update(laws=[]))
    with pytest.raises(CatalogError, match=r"pension-statement/v1\.yaml: laws"):
        load_catalog(catalog_copy)


def test_a_misspelt_key_is_refused_rather_than_dropped(catalog_copy: Path) -> None:
    edit(catalog_copy / "pension-statement" / "v1.yaml", lambda data: data.update(duration_workng_days=3))
    with pytest.raises(CatalogError, match=r"pension-statement/v1\.yaml: duration_workng_days: Extra inputs"):
        load_catalog(catalog_copy)


def test_an_unknown_service_agency_names_the_file(catalog_copy: Path) -> None:
    edit(catalog_copy / "pension-statement" / "v1.yaml", lambda data: data.update(agency="ministry-of-magic"))
    with pytest.raises(CatalogError, match=r"pension-statement/v1\.yaml: unknown agency \['ministry-of-magic'\]"):
        load_catalog(catalog_copy)


def test_an_unknown_inquiry_agency_names_the_file(catalog_copy: Path) -> None:
    def change(data: dict[str, Any]) -> None:
        data["inquiries"][1]["agency"] = "land-registry"

    edit(catalog_copy / "property-ownership-certificate" / "v1.yaml", change)
    with pytest.raises(CatalogError, match=r"property-ownership-certificate/v1\.yaml: unknown agency"):
        load_catalog(catalog_copy)


def test_a_duplicate_service_id_names_the_file(catalog_copy: Path) -> None:
    copy = catalog_copy / "birth-certificate-copy"
    copy.mkdir()
    shutil.copy(catalog_copy / "birth-certificate-duplicate" / "v1.yaml", copy / "v1.yaml")
    with pytest.raises(CatalogError, match=r"birth-certificate-copy/v1\.yaml: declares id 'birth-certificate-dup"):
        load_catalog(catalog_copy)


def test_a_version_that_disagrees_with_its_file_name_names_the_file(catalog_copy: Path) -> None:
    folder = catalog_copy / "pension-statement"
    shutil.copy(folder / "v1.yaml", folder / "v2.yaml")  # copied for a new version, version left at 1
    with pytest.raises(CatalogError, match=r"pension-statement/v2\.yaml: declares version 1 but its file name says 2"):
        load_catalog(catalog_copy)


def test_a_missing_version_is_refused(catalog_copy: Path) -> None:
    (catalog_copy / "birth-certificate-duplicate" / "v1.yaml").unlink()
    with pytest.raises(CatalogError, match=r"birth-certificate-duplicate/: versions must run 1\.\.N"):
        load_catalog(catalog_copy)


def test_a_flat_file_is_refused(catalog_copy: Path) -> None:
    shutil.copy(catalog_copy / "pension-statement" / "v1.yaml", catalog_copy / "pension-statement.yaml")
    with pytest.raises(CatalogError, match=r"pension-statement\.yaml: service files live at"):
        load_catalog(catalog_copy)


def test_broken_yaml_names_the_file(catalog_copy: Path) -> None:
    (catalog_copy / "pension-statement" / "v1.yaml").write_text("id: [unclosed\n", encoding="utf-8")
    with pytest.raises(CatalogError, match=r"pension-statement/v1\.yaml: not valid YAML"):
        load_catalog(catalog_copy)


def test_a_missing_or_broken_agency_registry_is_refused(catalog_copy: Path) -> None:
    agencies = catalog_copy.parent / "agencies.yaml"
    data = yaml.safe_load(agencies.read_text(encoding="utf-8"))
    data["agencies"].append(data["agencies"][0])
    agencies.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    with pytest.raises(CatalogError, match=r"agencies\.yaml: agency ids listed twice: \['civil-registry'\]"):
        load_catalog(catalog_copy)
    agencies.unlink()
    with pytest.raises(CatalogError, match=r"agencies\.yaml: cannot be read"):
        load_catalog(catalog_copy)


# --- search ---------------------------------------------------------------------------------------


def ids(services: list[ServiceDefinition]) -> list[str]:
    return [service.id for service in services]


def test_empty_query_lists_everything() -> None:
    assert ids(CATALOG.search("")) == ids(SERVICES)
    assert ids(CATALOG.search("  ،  ")) == ids(SERVICES)


def test_arabic_letters_find_the_persian_title() -> None:
    found = ids(CATALOG.search("گواهي عدم سوء پيشينه"))  # Arabic yeh, as an Arabic keyboard types it
    assert found == ["no-criminal-record-certificate"]
    assert "tax-clearance-certificate" in ids(CATALOG.search("گواهي"))
    assert ids(CATALOG.search("تمديد پروانه كسب")) == ["business-licence-renewal"]  # Arabic yeh and kaf


def test_compounds_match_joined_spaced_or_with_zwnj() -> None:
    for spelling in ("سوءپیشینه", "سوء پیشینه", "سوء‌پیشینه"):
        assert ids(CATALOG.search(spelling)) == ["no-criminal-record-certificate"], spelling


def test_english_query_is_case_insensitive() -> None:
    assert ids(CATALOG.search("PASSPORT")) == ["passport-renewal-appointment"]
    assert ids(CATALOG.search("tax clearance certificate"))[0] == "tax-clearance-certificate"


def test_every_token_must_match() -> None:
    assert ids(CATALOG.search("گواهی مالیاتی")) == ["tax-clearance-certificate"]
    assert ids(CATALOG.search("certificate passport")) == []
    assert ids(CATALOG.search("زرافه")) == []


def test_digits_match_in_any_script() -> None:
    expected = ids(CATALOG.search("کد پستی 10 رقمی"))
    assert expected == ["postal-address-certificate"]
    assert ids(CATALOG.search("کد پستی ۱۰ رقمی")) == expected
    assert ids(CATALOG.search("کد پستی ١٠ رقمی")) == expected


def test_title_matches_rank_first() -> None:
    # "certificate" is in five titles and only in the pension statement's description.
    found = ids(CATALOG.search("certificate"))
    assert found[-1] == "pension-statement"
    assert len(found) == 6


def test_agency_names_and_faq_questions_are_searched() -> None:
    assert set(ids(CATALOG.search("صندوق بازنشستگی کشوری"))) == {"pension-statement"}
    assert ids(CATALOG.search("Iran Chamber of Guilds")) == ["business-licence-renewal"]
    assert "business-licence-renewal" in ids(CATALOG.search("چند روز پیش از پایان اعتبار"))


def test_search_shows_only_the_latest_version() -> None:
    assert ids(CATALOG.search("شناسنامه")) == ["birth-certificate-duplicate"]


# --- the HTTP API ---------------------------------------------------------------------------------


@pytest.fixture
def app() -> FastAPI:
    return create_app(tracer_provider=TracerProvider())


async def test_list_shows_the_latest_version_of_every_service(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/v1/services")
    assert response.status_code == 200
    summaries = response.json()
    assert [summary["id"] for summary in summaries] == ids(SERVICES)
    birth = next(summary for summary in summaries if summary["id"] == "birth-certificate-duplicate")
    assert birth["version"] == 2
    assert birth["title_fa"] == "صدور المثنی شناسنامه"


async def test_list_searches_and_filters_by_agency(client: httpx.AsyncClient) -> None:
    found = (await client.get("/api/v1/services", params={"q": "گواهي"})).json()
    assert "no-criminal-record-certificate" in [summary["id"] for summary in found]
    assert "birth-certificate-duplicate" not in [summary["id"] for summary in found]
    by_agency = (await client.get("/api/v1/services", params={"agency": "judiciary"})).json()
    assert [summary["id"] for summary in by_agency] == ["no-criminal-record-certificate"]
    both = (await client.get("/api/v1/services", params={"q": "گواهی", "agency": "tax"})).json()
    assert [summary["id"] for summary in both] == ["tax-clearance-certificate"]
    assert (await client.get("/api/v1/services", params={"q": "zzz"})).json() == []


async def test_service_is_published_in_full_with_field_rules(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/v1/services/postal-address-certificate")
    assert response.status_code == 200
    definition = response.json()
    assert definition == CATALOG.get("postal-address-certificate").model_dump(mode="json")  # type: ignore[union-attr]
    [postal_code] = definition["fields"]
    assert postal_code["kind"] == "postal_code"
    assert postal_code["rule"]["fa"] and "10-digit" in postal_code["rule"]["en"]
    for key in ("steps", "workflow", "laws", "faq", "fee", "complaint_procedure", "follow_up_procedure"):
        assert definition[key], key


async def test_versions_are_listed_and_each_is_served(client: httpx.AsyncClient) -> None:
    base = "/api/v1/services/birth-certificate-duplicate"
    assert (await client.get(f"{base}/versions")).json() == [1, 2]
    first = (await client.get(f"{base}/versions/1")).json()
    assert first["version"] == 1
    assert (await client.get(f"{base}/versions/2")).json() == (await client.get(base)).json()


async def test_unknown_service_is_a_404_problem_everywhere(client: httpx.AsyncClient) -> None:
    for path in ("/services/no-such", "/services/no-such/versions", "/services/no-such/versions/1"):
        problem = assert_problem(await client.get(f"/api/v1{path}"), 404, slug="unknown-service")
        assert problem["errors"][0]["code"] == "unknown_service"


async def test_unknown_version_is_a_404_problem(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/v1/services/birth-certificate-duplicate/versions/7")
    problem = assert_problem(response, 404, slug="unknown-service-version")
    assert problem["errors"][0]["field"] == "version"
    assert "۱، ۲" in problem["detail_fa"]


async def test_malformed_version_is_a_422_problem(client: httpx.AsyncClient) -> None:
    for version in ("two", "0"):
        response = await client.get(f"/api/v1/services/birth-certificate-duplicate/versions/{version}")
        assert_problem(response, 422, slug="validation")


async def test_agencies_are_listed(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/v1/agencies")
    assert response.status_code == 200
    agencies = {agency["id"]: agency for agency in response.json()}
    assert set(SANDBOX_AGENCIES) <= set(agencies)
    assert agencies["civil-registry"]["name"]["fa"] == "سازمان ثبت احوال کشور"


def test_openapi_documents_the_catalog_routes_and_their_problems(app: FastAPI) -> None:
    paths = app.openapi()["paths"]
    for path in (
        "/api/v1/services/{service_id}",
        "/api/v1/services/{service_id}/versions",
        "/api/v1/services/{service_id}/versions/{version}",
    ):
        assert PROBLEM_JSON in paths[path]["get"]["responses"]["404"]["content"], path
    assert {"q", "agency"} <= {parameter["name"] for parameter in paths["/api/v1/services"]["get"]["parameters"]}
    assert "/api/v1/agencies" in paths

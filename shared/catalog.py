"""The service catalog: each service's published definition, loaded from versioned YAML files and validated.

intake publishes it to citizens and validates submissions against it; inquiry reads which inquiries a
service needs and how its decision is made. Every change to a service is a new version, kept as
`catalog/services/<id>/v<N>.yaml` beside the older ones (a request records the version it was submitted
under, so an old version must stay readable); the agencies live in `catalog/agencies.yaml`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

# The schema lives in catalog_model; re-exported (see __all__) so callers import the whole catalog from here.
from shared.catalog_model import (
    Agency,
    ApplicantItem,
    DecisionMode,
    DocumentFormat,
    Faq,
    Fee,
    FieldKind,
    FormField,
    Inquiry,
    Law,
    RequiredDocument,
    ReviewShare,
    ServiceDefinition,
    Text,
)
from shared.domain.persian import fold

__all__ = [
    "AGENCIES_FILE_NAME",
    "DEFAULT_CATALOG_DIR",
    "Agency",
    "ApplicantItem",
    "Catalog",
    "CatalogError",
    "DecisionMode",
    "DocumentFormat",
    "Faq",
    "Fee",
    "FieldKind",
    "FormField",
    "Inquiry",
    "Law",
    "RequiredDocument",
    "ReviewShare",
    "ServiceDefinition",
    "Text",
    "load_agencies",
    "load_catalog",
]

DEFAULT_CATALOG_DIR = Path(__file__).resolve().parent.parent / "catalog" / "services"
AGENCIES_FILE_NAME = "agencies.yaml"

_VERSION_FILE = re.compile(r"v([1-9][0-9]*)\.yaml")
_SEARCH_TOKEN = re.compile(r"\w+")


class CatalogError(ValueError):
    """A catalog file is missing, malformed or inconsistent; the message names the file."""


class _Haystack:
    """Folded text, also kept without spaces: Persian compounds are written joined, spaced or with ZWNJ."""

    def __init__(self, texts: Iterable[str]) -> None:
        self.spaced = fold(" ".join(texts))
        self.joined = self.spaced.replace(" ", "")

    def __contains__(self, token: str) -> bool:
        return token in self.spaced or token in self.joined


class _SearchEntry:
    """A service's folded texts, prepared once so a search only compares strings."""

    def __init__(self, service: ServiceDefinition, agency: Agency | None) -> None:
        self.service = service
        self.title = _Haystack([service.title.fa, service.title.en])
        others = [service.description.fa, service.description.en]
        if agency is not None:
            others += [agency.name.fa, agency.name.en]
        others += [text for faq in service.faq for text in (faq.question.fa, faq.question.en)]
        self.rest = _Haystack(others)

    def rank(self, tokens: list[str]) -> int | None:
        """How many tokens the title holds, or None when some token appears nowhere."""
        if not all(token in self.title or token in self.rest for token in tokens):
            return None
        return sum(token in self.title for token in tokens)


class Catalog:
    """Every version of every service, by id, and the agencies they name."""

    def __init__(self, services: Iterable[ServiceDefinition], agencies: Iterable[Agency] | None = None) -> None:
        self._versions: dict[str, dict[int, ServiceDefinition]] = {}
        for service in services:
            versions = self._versions.setdefault(service.id, {})
            if service.version in versions:
                raise CatalogError(f"service {service.id} v{service.version} is defined twice")
            versions[service.version] = service
        self._agencies = {agency.id: agency for agency in agencies or ()}
        # Without a registry (tests that build a catalog by hand) agency ids cannot be checked.
        if agencies is not None:
            for service in self._every_version():
                unknown = sorted(service.agency_ids() - set(self._agencies))
                if unknown:
                    raise CatalogError(f"service {service.id} v{service.version}: unknown agency {unknown}")
        self._latest = {service_id: versions[max(versions)] for service_id, versions in self._versions.items()}
        self._search = [_SearchEntry(service, self._agencies.get(service.agency)) for service in self.all()]

    def _every_version(self) -> list[ServiceDefinition]:
        return [service for versions in self._versions.values() for service in versions.values()]

    def get(self, service_id: str) -> ServiceDefinition | None:
        """The latest version of the service with this id, or None."""
        return self._latest.get(service_id)

    def get_version(self, service_id: str, version: int) -> ServiceDefinition | None:
        """That version of the service, or None."""
        return self._versions.get(service_id, {}).get(version)

    def versions(self, service_id: str) -> list[int]:
        """The version numbers of the service, oldest first; empty for an unknown service."""
        return sorted(self._versions.get(service_id, {}))

    def all(self) -> list[ServiceDefinition]:
        """The latest version of every service, ordered by id."""
        return [self._latest[key] for key in sorted(self._latest)]

    def agencies(self) -> list[Agency]:
        """Every registered agency, ordered by id."""
        return [self._agencies[key] for key in sorted(self._agencies)]

    def agency(self, agency_id: str) -> Agency | None:
        """The agency with this id, or None."""
        return self._agencies.get(agency_id)

    def search(self, query: str) -> list[ServiceDefinition]:
        """Latest services whose texts hold every word of the query (title matches first); all for no words."""
        tokens = _SEARCH_TOKEN.findall(fold(query))
        if not tokens:
            return self.all()
        ranked = [(rank, entry.service) for entry in self._search if (rank := entry.rank(tokens)) is not None]
        ranked.sort(key=lambda pair: (-pair[0], pair[1].id))
        return [service for _, service in ranked]


def _read_yaml(path: Path, shown_as: str) -> Any:
    try:
        with path.open(encoding="utf-8") as handle:
            return yaml.safe_load(handle)
    except OSError as error:
        raise CatalogError(f"{shown_as}: cannot be read ({error.strerror or error})") from error
    except yaml.YAMLError as error:
        raise CatalogError(f"{shown_as}: not valid YAML ({error})") from error


def _describe(error: ValidationError) -> str:
    # pydantic's own text spans lines and links to its docs; one line per fault reads better in a start log.
    return "; ".join(
        f"{'.'.join(str(part) for part in item['loc']) or 'file'}: {item['msg']}" for item in error.errors()
    )


def load_agencies(path: Path) -> list[Agency]:
    """Load and validate the agency registry (`agencies:` list of id and name)."""
    data = _read_yaml(path, path.name)
    if not isinstance(data, dict) or not isinstance(data.get("agencies"), list):
        raise CatalogError(f"{path.name}: expected a mapping with an `agencies:` list")
    agencies: list[Agency] = []
    for index, item in enumerate(data["agencies"]):
        try:
            agencies.append(Agency.model_validate(item))
        except ValidationError as error:
            raise CatalogError(f"{path.name}: agency #{index + 1}: {_describe(error)}") from error
    ids = [agency.id for agency in agencies]
    duplicates = sorted({agency_id for agency_id in ids if ids.count(agency_id) > 1})
    if duplicates:
        raise CatalogError(f"{path.name}: agency ids listed twice: {duplicates}")
    return agencies


def _load_service(path: Path, shown_as: str, agency_ids: set[str]) -> ServiceDefinition:
    data = _read_yaml(path, shown_as)
    if not isinstance(data, dict):
        raise CatalogError(f"{shown_as}: expected a mapping of service fields")
    try:
        service = ServiceDefinition.model_validate(data)
    except ValidationError as error:
        raise CatalogError(f"{shown_as}: {_describe(error)}") from error
    folder, file_version = path.parent.name, int(path.stem[1:])
    # The path is the identity: a file copied to a new version or service and not edited would otherwise
    # silently shadow or duplicate another definition.
    if service.id != folder:
        raise CatalogError(f"{shown_as}: declares id {service.id!r} but lives in the folder of {folder!r}")
    if service.version != file_version:
        raise CatalogError(f"{shown_as}: declares version {service.version} but its file name says {file_version}")
    unknown = sorted(service.agency_ids() - agency_ids)
    if unknown:
        raise CatalogError(f"{shown_as}: unknown agency {unknown}; agencies are listed in {AGENCIES_FILE_NAME}")
    return service


def _visible(directory: Path) -> list[Path]:
    # Editors and file managers leave dotfiles (.DS_Store, .v1.yaml.swp); they are not catalog entries.
    try:
        return sorted(path for path in directory.iterdir() if not path.name.startswith("."))
    except OSError as error:
        raise CatalogError(f"{directory}: cannot be listed ({error.strerror or error})") from error


def load_catalog(directory: Path = DEFAULT_CATALOG_DIR, agencies_file: Path | None = None) -> Catalog:
    """Load and validate every `<id>/v<N>.yaml` in `directory` and the agencies; a bad file fails the start.

    The agencies come from `agencies_file`, by default `agencies.yaml` in the directory's parent.
    """
    agencies = load_agencies(agencies_file or directory.parent / AGENCIES_FILE_NAME)
    agency_ids = {agency.id for agency in agencies}
    stray = sorted(path.name for path in directory.glob("*.yaml"))
    if stray:
        raise CatalogError(f"{stray[0]}: service files live at <service id>/v<N>.yaml, not directly in {directory}")
    services: list[ServiceDefinition] = []
    for folder in _visible(directory):
        if not folder.is_dir():
            continue
        numbered: dict[int, Path] = {}
        for path in _visible(folder):
            match = _VERSION_FILE.fullmatch(path.name)
            if match is None:
                raise CatalogError(f"{folder.name}/{path.name}: expected only files named v<N>.yaml here")
            numbered[int(match.group(1))] = path
        # Requests name the version they were submitted under, so no version may go missing.
        if not numbered or sorted(numbered) != list(range(1, len(numbered) + 1)):
            raise CatalogError(f"{folder.name}/: versions must run 1..N without gaps, found {sorted(numbered)}")
        for number in sorted(numbered):
            path = numbered[number]
            services.append(_load_service(path, f"{folder.name}/{path.name}", agency_ids))
    return Catalog(services, agencies)

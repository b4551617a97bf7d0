"""The problems files (shared/data/problems.yaml, services/<name>/problems.yaml): every answer they declare is
wholly Persian in Persian, fills its `{name}` fields, is refused when malformed, and is the one the code names."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from shared.http import FieldProblem
from shared.problems import ProblemsFileError, read_problems
from tests.unit.test_persian_texts import latin_in

REPO = Path(__file__).resolve().parents[2]
SHARED_FILE = REPO / "shared" / "data" / "problems.yaml"
SERVICE_FILES = sorted((REPO / "services").glob("*/problems.yaml"))
# How the code names a problem of a file: `_PROBLEMS["name"]` beside a service's file, `SHARED["name"]` in shared/.
NAMED = re.compile(r"""\b(?:_PROBLEMS|SHARED)\["([a-z0-9-]+)"\]""")


def test_the_problems_files_are_found() -> None:
    assert SHARED_FILE.is_file()
    assert {path.parent.name for path in SERVICE_FILES} >= {"intake", "notify"}


@pytest.mark.parametrize("path", [SHARED_FILE, *SERVICE_FILES], ids=lambda path: str(path.relative_to(REPO)))
def test_every_persian_text_of_a_problems_file_is_wholly_persian(path: Path) -> None:
    texts = []
    for spec in read_problems(path).values():
        texts += [spec.title_fa, spec.detail_fa or ""]
        if spec.field_problem is not None:
            texts.append(spec.field_problem.message_fa)
    assert texts
    assert [text for text in texts if latin_in(text)] == []


def _named_in(paths: list[Path]) -> set[str]:
    return {name for path in paths for name in NAMED.findall(path.read_text(encoding="utf-8"))}


@pytest.mark.parametrize("path", SERVICE_FILES, ids=lambda path: path.parent.name)
def test_a_service_names_exactly_the_problems_its_file_declares(path: Path) -> None:
    named = _named_in(sorted(path.parent.glob("*.py")))
    assert named == set(read_problems(path))


def test_shared_names_exactly_the_problems_the_shared_file_declares() -> None:
    named = _named_in(sorted((REPO / "shared").glob("*.py")))
    assert named == set(read_problems(SHARED_FILE))


def test_a_problem_fills_its_texts_numbers_in_persian_digits_in_the_persian_ones(tmp_path: Path) -> None:
    path = tmp_path / "problems.yaml"
    path.write_text(
        """
waiting:
  status: 429
  title: {en: "Wait for {what}", fa: "منتظر {what_fa} بمانید"}
  detail: {en: "Try again in {seconds} seconds.", fa: "{seconds} ثانیهٔ دیگر دوباره تلاش کنید."}
  field: {field: f, code: "{code}", message_en: "{seconds} s", message_fa: "{seconds} ثانیه"}
  headers: {X-Declared: "1"}
""",
        encoding="utf-8",
    )
    spec = read_problems(path)["waiting"]
    error = spec.error(headers={"Retry-After": "45"}, what="it", what_fa="آن", seconds=45, code="too_soon")
    assert (error.title_en, error.title_fa) == ("Wait for it", "منتظر آن بمانید")
    assert (error.detail_en, error.detail_fa) == ("Try again in 45 seconds.", "۴۵ ثانیهٔ دیگر دوباره تلاش کنید.")
    assert [(e.code, e.message_en, e.message_fa) for e in error.errors] == [("too_soon", "45 s", "۴۵ ثانیه")]
    assert error.headers == {"X-Declared": "1", "Retry-After": "45"}
    given = [FieldProblem(field="g", code="c", message_en="e", message_fa="ف")]
    assert spec.error(given, what="", what_fa="", seconds=1, code="").errors == given


def test_a_file_declares_the_status_type_retry_and_field_of_each_problem(tmp_path: Path) -> None:
    path = tmp_path / "problems.yaml"
    path.write_text(
        """
first:
  status: 503
  title: {en: Down, fa: از کار افتاده}
  detail: {en: Later, fa: بعداً}
  retry_after_s: 7
second:
  status: 422
  slug: validation
  title: {en: Bad, fa: نادرست}
  field: {field: x, code: bad_x, message_en: Fix x, message_fa: درست کنید}
""",
        encoding="utf-8",
    )
    problems = read_problems(path)
    assert (problems["first"].slug, problems["first"].headers) == ("first", {"Retry-After": "7"})
    assert (problems["second"].slug, problems["second"].detail_en) == ("validation", None)
    assert problems["second"].error().errors == [
        FieldProblem(field="x", code="bad_x", message_en="Fix x", message_fa="درست کنید")
    ]


@pytest.mark.parametrize(
    "entry",
    [
        "status: 404\n  title: {en: Gone}",  # no Persian title
        "status: 200\n  title: {en: Fine, fa: خوب}",  # not a problem's status
        "status: 404\n  title: {en: Gone, fa: نیست}\n  colour: red",  # a key the format does not have
    ],
)
def test_a_malformed_problem_is_refused_naming_the_file_and_the_problem(tmp_path: Path, entry: str) -> None:
    path = tmp_path / "problems.yaml"
    path.write_text(f"the-problem:\n  {entry}\n", encoding="utf-8")
    with pytest.raises(ProblemsFileError) as refused:
        read_problems(path)
    assert str(path) in str(refused.value) and "the-problem" in str(refused.value)


def test_a_missing_problems_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ProblemsFileError):
        read_problems(tmp_path / "problems.yaml")

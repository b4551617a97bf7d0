"""Persian text folding: the same words typed on Persian, Arabic or Latin keyboards fold to one search key."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.domain.persian import fold


@pytest.mark.parametrize(
    ("typed", "folded"),
    [
        ("گواهي", "گواهی"),  # Arabic yeh
        ("على", "علی"),  # alef maksura
        ("كد ملي", "کد ملی"),  # Arabic kaf and yeh
        ("مدرسة", "مدرسه"),  # teh marbuta
        ("أحمد", "احمد"),  # alef with hamza above
        ("إسلام", "اسلام"),  # alef with hamza below
        ("آب", "اب"),  # alef with madda
        ("مسؤول", "مسوول"),  # waw with hamza
        ("آئین‌نامه", "ایین نامه"),  # yeh with hamza, ZWNJ
        ("خانهٔ ما", "خانه ما"),  # ezafe hamza over heh
        ("خانۀ ما", "خانه ما"),  # precomposed heh with yeh above
    ],
)
def test_letters_typed_on_arabic_keyboards_become_persian(typed: str, folded: str) -> None:
    assert fold(typed) == folded


def test_diacritics_are_removed() -> None:
    assert fold("مُحَمَّد") == "محمد"  # harakat and shadda
    assert fold("شُكْرًا") == "شکرا"  # sukun and tanwin
    assert fold("رحمٰن") == "رحمن"  # superscript alef


def test_tatweel_is_removed() -> None:
    assert fold("گواهـــــی") == "گواهی"


def test_zwnj_becomes_a_space_and_whitespace_collapses() -> None:
    assert fold("می‌شود") == "می شود"
    assert fold("  تمدید \t پروانهٔ\n\nکسب  ") == "تمدید پروانه کسب"


def test_persian_and_arabic_digits_become_ascii() -> None:
    assert fold("کد پستی ۱۳۵۷۹۱۳۵۷۹") == "کد پستی 1357913579"
    assert fold("٠١٢٣٤٥٦٧٨٩") == "0123456789"


def test_latin_is_casefolded() -> None:
    assert fold("Tax CLEARANCE Certificate") == "tax clearance certificate"
    assert fold("Straße") == "strasse"


def test_arabic_presentation_forms_from_pdfs_become_plain_letters() -> None:
    assert fold("ﻻ") == "لا"
    assert fold("ﮔﻮاﻫﯽ") == "گواهی"


def test_every_spelling_of_a_title_folds_the_same() -> None:
    spellings = ["گواهی عدم سوء پیشینه", "گواهي عدم سوء پيشينه", "گَواهی  عَدَمِ سوء پیشینه", "گواهـی عدم سوء پیشینه"]
    assert len({fold(spelling) for spelling in spellings}) == 1


@given(st.text())
def test_folding_twice_changes_nothing_more(text: str) -> None:
    assert fold(fold(text)) == fold(text)


@given(st.text())
def test_folded_text_has_no_outer_or_double_spaces(text: str) -> None:
    folded = fold(text)
    assert folded == folded.strip()
    assert "  " not in folded

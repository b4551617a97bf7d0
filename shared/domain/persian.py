"""Persian text folding for search: the same words typed on Persian, Arabic or Latin keyboards compare equal."""

from __future__ import annotations

import unicodedata
from typing import Final

from shared.domain.digits import normalize_digits

# Arabic keyboards (and text pasted from Arabic sources) give the Arabic forms of yeh and kaf, which look
# the same as the Persian letters but are different code points; teh marbuta and the heh variants are
# read as heh in Persian.
_LETTERS: Final = str.maketrans(
    {
        "\u064a": "\u06cc",  # ي Arabic yeh → ی
        "\u0649": "\u06cc",  # ى alef maksura → ی
        "\u0643": "\u06a9",  # ك Arabic kaf → ک
        "\u0629": "\u0647",  # ة teh marbuta → ه
        "\u06d5": "\u0647",  # ە ae, what ۀ (heh with yeh above) decomposes to → ه
        "\u06be": "\u0647",  # ھ heh doachashmee → ه
        "\u06c1": "\u0647",  # ہ heh goal → ه
        "\u0640": None,  # tatweel only stretches a word
        "\u200c": " ",  # ZWNJ: "می‌شود" and "می شود" are both written, so both become two tokens
        "\u200d": None,  # zero-width joiner
        "\u200e": None,  # left-to-right mark
        "\u200f": None,  # right-to-left mark
        "\u061c": None,  # Arabic letter mark
        "\ufeff": None,  # byte-order mark
    }
)


def _without_marks(text: str) -> str:
    # NFKD splits آ أ إ ؤ ئ ۀ into a base letter and a combining madda/hamza, and Arabic presentation
    # forms (from PDFs) into plain letters; dropping every combining mark then removes harakat, tanwin,
    # shadda, sukun, superscript alef and those hamzas alike.
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(char for char in decomposed if unicodedata.category(char) != "Mn")


def fold(text: str) -> str:
    """Return text reduced to a search key: unified letters, no diacritics, ASCII digits, single spaces."""
    # Compatibility forms can decompose to capitals (ℌ → H) and casefolding can add marks (İ → i + dot
    # above), so marks are dropped on both sides of casefold; that keeps fold(fold(x)) == fold(x).
    folded = _without_marks(_without_marks(text).casefold()).translate(_LETTERS)
    return " ".join(normalize_digits(folded).split())

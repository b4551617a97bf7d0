import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.domain.digits import to_persian_digits
from shared.domain.identity import (
    InvalidMobile,
    InvalidNationalId,
    InvalidPostalCode,
    is_valid_national_id,
    make_valid_national_id,
    mask_mobile,
    mask_national_id,
    normalize_mobile,
    normalize_national_id,
    normalize_postal_code,
)

# 0013542419: s = 0*10+0*9+1*8+3*7+5*6+4*5+2*4+4*3+1*2 = 101, r = 101 % 11 = 2, check = 11 - 2 = 9
VALID_NATIONAL_ID = "0013542419"
# 0084575948: s = 8*8+4*7+5*6+7*5+5*4+9*3+4*2 = 212, r = 3, check = 8
OTHER_VALID_NATIONAL_ID = "0084575948"

nine_digits = st.text(alphabet="0123456789", min_size=9, max_size=9).filter(lambda s: len(set(s)) > 1)


@pytest.mark.parametrize("national_id", [VALID_NATIONAL_ID, OTHER_VALID_NATIONAL_ID])
def test_known_valid_national_ids_are_accepted(national_id: str) -> None:
    assert is_valid_national_id(national_id)
    assert normalize_national_id(national_id) == national_id


def test_national_id_in_persian_digits_with_separators_is_normalized() -> None:
    assert normalize_national_id("۰۰۱-۳۵۴۲۴۱-۹") == VALID_NATIONAL_ID
    assert normalize_national_id(" ٠٠١ ٣٥٤٢٤١ ٩ ") == VALID_NATIONAL_ID


def test_national_id_with_wrong_check_digit_is_rejected_as_check_digit() -> None:
    with pytest.raises(InvalidNationalId) as raised:
        normalize_national_id("0013542418")
    assert raised.value.reason == "check_digit"
    assert not is_valid_national_id("0013542418")


@pytest.mark.parametrize("value", ["", "001354241", "00135424190", "00135a2419", "۰۰۱۳۵۴۲۴۱", "12345678x9"])
def test_national_id_of_wrong_shape_is_rejected_as_format(value: str) -> None:
    with pytest.raises(InvalidNationalId) as raised:
        normalize_national_id(value)
    assert raised.value.reason == "format"


@pytest.mark.parametrize("digit", "0123456789")
def test_repeated_digit_national_id_is_rejected_even_though_checksum_passes(digit: str) -> None:
    with pytest.raises(InvalidNationalId) as raised:
        normalize_national_id(digit * 10)
    assert raised.value.reason == "format"


@given(nine_digits)
def test_made_national_id_is_valid_in_ascii_and_persian(prefix: str) -> None:
    national_id = make_valid_national_id(prefix)
    assert national_id[:9] == prefix
    assert is_valid_national_id(national_id)
    assert is_valid_national_id(to_persian_digits(national_id))


@given(nine_digits, st.integers(min_value=1, max_value=9))
def test_any_changed_check_digit_invalidates_national_id(prefix: str, shift: int) -> None:
    national_id = make_valid_national_id(prefix)
    wrong = national_id[:9] + str((int(national_id[9]) + shift) % 10)
    assert not is_valid_national_id(wrong)


def test_make_valid_national_id_matches_known_id() -> None:
    assert make_valid_national_id("001354241") == VALID_NATIONAL_ID


def test_make_valid_national_id_refuses_prefix_that_completes_to_repeated_digits() -> None:
    with pytest.raises(ValueError):
        make_valid_national_id("000000000")


@pytest.mark.parametrize("prefix", ["12345678", "1234567890", "12345678a"])
def test_make_valid_national_id_rejects_non_nine_digit_prefix(prefix: str) -> None:
    with pytest.raises(ValueError):
        make_valid_national_id(prefix)


@pytest.mark.parametrize(
    "value",
    [
        "09121234567",
        "+989121234567",
        "00989121234567",
        "989121234567",
        "9121234567",
        "0912 123 4567",
        "0912-123-4567",
        "+98 912 123 4567",
        "۰۹۱۲۱۲۳۴۵۶۷",
        "+۹۸۹۱۲۱۲۳۴۵۶۷",
        "٠٩١٢١٢٣٤٥٦٧",
        "\u200e+98 912-123-4567\u200f",
    ],
)
def test_every_common_mobile_form_normalizes_to_09_form(value: str) -> None:
    assert normalize_mobile(value) == "09121234567"


@pytest.mark.parametrize(
    "value",
    [
        "",
        "0912123456",  # one digit short
        "091212345678",  # one digit long
        "02112345678",  # Tehran landline
        "+982112345678",  # landline in international form
        "+18005551234",
        "0912123456a",
        "09121234567 ext 2",
        "+9809121234567",
    ],
)
def test_non_mobile_values_are_rejected(value: str) -> None:
    with pytest.raises(InvalidMobile):
        normalize_mobile(value)


@pytest.mark.parametrize("value", ["1315735113", "13157-35113", "۱۳۱۵۷-۳۵۱۱۳", " ١٣١٥٧ ٣٥١١٣ "])
def test_postal_code_in_any_digits_with_hyphen_is_normalized(value: str) -> None:
    assert normalize_postal_code(value) == "1315735113"


def test_postal_code_may_contain_0_and_2_after_the_first_five_digits() -> None:
    assert normalize_postal_code("1315700220") == "1315700220"


@pytest.mark.parametrize(
    "value",
    [
        "131573511",  # 9 digits
        "13157351130",  # 11 digits
        "1315a35113",
        "0315735113",  # 0 in first five
        "1305735113",
        "1315235113",  # 2 in first five
        "۱۳۱۵۲۳۵۱۱۳",
    ],
)
def test_invalid_postal_codes_are_rejected(value: str) -> None:
    with pytest.raises(InvalidPostalCode):
        normalize_postal_code(value)


def test_national_id_mask_keeps_first_three_and_last_digit() -> None:
    assert mask_national_id(VALID_NATIONAL_ID) == "001******9"
    assert mask_national_id("۰۰۱۳۵۴۲۴۱۹") == "001******9"


def test_mobile_mask_keeps_first_four_and_last_two_digits_of_canonical_form() -> None:
    assert mask_mobile("09121234567") == "0912*****67"
    assert mask_mobile("+98 912 123 4567") == "0912*****67"


@pytest.mark.parametrize("value", ["", "12", "12345", "abc"])
def test_masks_hide_short_values_entirely_and_never_raise(value: str) -> None:
    assert set(mask_national_id(value)) <= {"*"}
    assert set(mask_mobile(value)) <= {"*"}


@given(nine_digits)
def test_national_id_mask_hides_six_of_ten_digits(prefix: str) -> None:
    national_id = make_valid_national_id(prefix)
    assert mask_national_id(national_id) == national_id[:3] + "******" + national_id[9]


@given(st.text(max_size=40))
def test_masks_never_raise_on_arbitrary_text(value: str) -> None:
    mask_national_id(value)
    mask_mobile(value)

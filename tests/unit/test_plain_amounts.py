"""Plain amounts (a sign, digits, up to four places) are read through a decimal cast, every other text
by the full parse: both must give every row the same value and the same reason."""

from __future__ import annotations

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from settler_pipeline.adapters.amounts import with_amount, with_any_amount, with_currency
from settler_pipeline.adapters.reasons import PREFIX
from settler_pipeline.jobspec import AmountOptions, SideSpec

DIGITS = st.text(alphabet="0123456789", min_size=0, max_size=20)
PLAIN = st.builds(
    lambda sign, whole, point, places: f"{sign}{whole}{point}{places}",
    st.sampled_from(["", "-", "+"]),
    DIGITS,
    st.sampled_from(["", ".", ","]),
    st.text(alphabet="0123456789", max_size=6),
)
ODD = st.text(alphabet="0123456789.,-+() $€e١", max_size=12)
TEXTS = st.lists(st.one_of(PLAIN, ODD, st.none()), min_size=1, max_size=40)
CURRENCIES = st.lists(
    st.sampled_from(["EUR", "JPY", "KWD", "CLF", "XTS", "usd", None]), min_size=1, max_size=40
)
OPTIONS = st.sampled_from(
    [
        AmountOptions(),
        AmountOptions(format="minor_units"),
        AmountOptions(thousands_separator=""),
        AmountOptions(decimal_separator=",", thousands_separator="."),
    ]
)
SPEC = SideSpec.model_validate(
    {
        "adapter": "csv",
        "path": "x.csv",
        "columns": {"record_id": "id", "occurred_at": "d", "amount": "a", "currency": "code"},
    }
)


def frame(texts: list[str | None], codes: list[str | None]) -> pl.DataFrame:
    rows = pl.DataFrame(
        {"text": texts, "code": [codes[i % len(codes)] for i in range(len(texts))]},
        schema={"text": pl.String, "code": pl.String},
    )
    return with_currency(rows, "code", SPEC)[0]


@settings(max_examples=300, deadline=None)
@given(texts=TEXTS, codes=CURRENCIES, options=OPTIONS, required=st.booleans())
def test_plain_amounts_read_as_the_full_parse_reads_them(
    texts: list[str | None], codes: list[str | None], options: AmountOptions, required: bool
) -> None:
    rows = frame(texts, codes)
    columns = [f"{PREFIX}value_amount", f"{PREFIX}reason_amount"]
    fast = with_amount(rows, "text", options, "amount", required=required).select(columns)
    full = with_any_amount(rows, "text", options, "amount", required=required).select(columns)
    assert fast.to_dicts() == full.to_dicts()


def test_plain_and_other_amounts_in_one_column() -> None:
    texts = [
        "12.50",
        "-3.1",
        "1,204.50",
        "(7.00)",
        "0.123",
        "12.345",
        "oops",
        None,
        "+4",
        "99999999999999.99",
    ]
    rows = frame(texts, ["EUR"])
    out = with_amount(rows, "text", AmountOptions(), "amount", required=True)
    assert out[f"{PREFIX}value_amount"].to_list() == [
        1250,
        -310,
        120450,
        -700,
        12,
        1234,
        None,
        None,
        400,
        9999999999999999,
    ]
    reasons = out[f"{PREFIX}reason_amount"].to_list()
    assert reasons[4] == "amount: '0.123' has 3 decimal places but EUR allows 2"
    assert reasons[6] is not None and reasons[6].startswith("amount: cannot parse 'oops'")
    assert reasons[7] == "amount: missing"
    assert [r for i, r in enumerate(reasons) if i not in (4, 5, 6, 7)] == [None] * 6

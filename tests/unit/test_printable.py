"""Input text shown on a terminal: control characters become visible escapes, nothing else changes."""

from __future__ import annotations

import unicodedata

from hypothesis import given
from hypothesis import strategies as st

from settler_pipeline.printable import printable, unescaped


def test_escape_sequences_line_breaks_and_bidi_overrides_are_shown_as_escapes() -> None:
    assert printable("\x1b[31mRED\x1b[0m\r\n\x00\x9b\u202eX\u2066") == (
        "\\x1b[31mRED\\x1b[0m\\x0d\\x0a\\x00\\x9b\\u202eX\\u2066"
    )


@given(st.text())
def test_no_control_character_survives_and_other_text_is_unchanged(text: str) -> None:
    shown = printable(text)
    assert not any(unicodedata.category(c) == "Cc" or 0x202A <= ord(c) <= 0x202E for c in shown)
    assert not any(0x2066 <= ord(c) <= 0x2069 for c in shown)
    if all(unicodedata.category(c) not in ("Cc", "Cf", "Zl", "Zp") for c in text):
        assert shown == text


def test_an_id_is_looked_up_as_printed_first_then_as_typed() -> None:
    from settler_pipeline.application.review import as_printed

    items = {"unmatched:source:a\nb": "x"}
    assert as_printed(items, {"source_ids": [printable("a\nb")]})["source_ids"] == ["a\nb"]
    typed = {"unmatched:source:a\\x0ab": "x"}  # an id holding a backslash sequence itself
    assert as_printed(typed, {"source_ids": ["a\\x0ab"]})["source_ids"] == ["a\\x0ab"]


@given(st.text(alphabet=st.sampled_from(["\\", "x", "u", "0", "a", "5", "c", "\n", "\u200b", "b"])))
def test_what_is_printed_maps_back_to_exactly_the_text_so_no_two_texts_print_alike(text: str) -> None:
    # an alphabet dense in backslashes and hex digits finds the texts that read as escapes
    assert unescaped(printable(text)) == text


@given(st.text())
def test_any_text_round_trips_through_its_printed_form(text: str) -> None:
    assert unescaped(printable(text)) == text


def test_a_literal_backslash_escape_and_the_character_it_names_print_differently() -> None:
    from settler_pipeline.application.review import as_printed

    literal, real = "a\\x0ab", "a\nb"
    assert printable(literal) == "a\\x5cx0ab" and printable(real) == "a\\x0ab"
    both = {"unmatched:source:" + literal: "x", "unmatched:source:" + real: "y"}
    for record_id in (literal, real):
        assert as_printed(both, {"source_ids": [printable(record_id)]})["source_ids"] == [record_id]
    assert printable("C:\\temp\\new") == "C:\\temp\\new"  # a backslash before anything else is kept

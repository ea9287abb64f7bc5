"""Input text shown on a terminal: control characters become visible escapes, nothing else changes."""

from __future__ import annotations

import unicodedata

from hypothesis import given
from hypothesis import strategies as st

from settler_pipeline.printable import printable


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

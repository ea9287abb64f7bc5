"""Input text shown on a terminal: control characters become visible escapes, nothing else changes."""

from __future__ import annotations

import re
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
    looks_escaped = re.search(r"\\(x[0-9a-f]{2}|u[0-9a-f]{4})", text)
    if all(unicodedata.category(c) not in ("Cc", "Cf", "Zl", "Zp") for c in text) and not looks_escaped:
        assert shown == text


@given(st.text(alphabet=st.sampled_from(["a", "\\", "x", "u", "0", "5", "c", "\n", "\u200b", "\x1b"])))
def test_printing_is_one_to_one_and_read_back_exactly(text: str) -> None:
    """Two different texts never print the same (a backslash that would read as an escape is shown as
    ``\\x5c``), and what is printed reads back as the text."""
    assert unescaped(printable(text)) == text


def test_a_typed_escape_and_the_character_it_names_print_differently() -> None:
    assert printable("a\\x0ab") == "a\\x5cx0ab"
    assert printable("a\nb") == "a\\x0ab"
    assert printable("C:\\data") == "C:\\data"  # a backslash that starts no escape is left alone


def test_an_id_is_looked_up_as_printed_first() -> None:
    from settler_pipeline.application.review import as_printed

    items = {"unmatched:source:a\\x0ab": "x", "unmatched:source:a\nb": "x"}
    for original in ("a\\x0ab", "a\nb"):
        shown = printable(original)
        assert as_printed(items, {"source_ids": [shown]})["source_ids"] == [original]

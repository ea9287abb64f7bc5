"""Text from input data made safe to show on a terminal.

A source row's description, reference or currency is whatever the file held. Printed raw, an escape
sequence in it can recolour or rewrite the reviewer's screen, hide text or plant a hyperlink; a carriage
return or line feed can overwrite or forge lines; a bidirectional override can make ``evil`` read as
``live``. Each such character is shown as its escape (``\\x1b``, ``\\u202e``) instead. A backslash
that would itself read as the start of such an escape is shown as ``\\x5c``, so two different texts
never print alike (a literal ``a\\x0ab`` and ``a`` + line feed + ``b``) and every printed id maps
back to exactly one id.
"""

from __future__ import annotations

import re

# C0 controls (NUL, ESC, CR, LF, TAB ...), DEL and the C1 controls; the bidirectional marks, embeddings,
# overrides and isolates; the Unicode line and paragraph separators; the zero-width characters (space,
# joiners, word joiner, byte-order mark), which would otherwise make two different ids look the same.
_CLASS = "[\x00-\x1f\x7f-\x9f\u061c\u200b-\u200f\u2028\u2029\u202a-\u202e\u2060\u2066-\u2069\ufeff]"
_UNSAFE = re.compile(_CLASS)
_ESCAPE_SHAPE = r"x[0-9a-f]{2}|u[0-9a-f]{4}"
# what printable() replaces: an unsafe character, or a backslash that an escape's shape follows
_SHOWN_ESCAPED = re.compile(rf"{_CLASS}|\\(?={_ESCAPE_SHAPE})")
_ESCAPED = re.compile(r"\\x([0-9a-f]{2})|\\u([0-9a-f]{4})")


def _escape(found: re.Match[str]) -> str:
    code = ord(found.group())
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def printable(text: str) -> str:
    """``text`` with every control character and bidirectional control replaced by its visible escape
    (``"a\\x1bb"`` -> ``a\\x1bb`` as typed) and every backslash that starts an escape's shape shown as
    ``\\x5c``; any other text, other backslashes included, is unchanged. :func:`unescaped` inverts it
    exactly, so no two texts print alike."""
    return _SHOWN_ESCAPED.sub(_escape, text)


def terminal_safe(text: str) -> str:
    """``text`` with every control character and bidirectional control replaced by its visible escape
    and nothing else changed: the last safety net for any text on its way to a terminal (messages,
    hints, log lines, layout around table cells). Unlike :func:`printable` it is idempotent, so text
    already shown through :func:`printable` passes unchanged, but a backslash sequence in it reads the
    same as the character it names: data a user copies back (record ids) goes through
    :func:`printable`."""
    return _UNSAFE.sub(_escape, text)


def unescaped(text: str) -> str:
    """The text :func:`printable` showed as ``text``: each escape of a character it escapes
    (``\\x0a``, ``\\u200b``, ``\\x5c``) back to that character; any other text is unchanged. An id copied from
    the screen is looked up as this first, then as typed."""

    def back(found: re.Match[str]) -> str:
        char = chr(int(found.group(1) or found.group(2), 16))
        return char if char == "\\" or _UNSAFE.fullmatch(char) else found.group()

    return _ESCAPED.sub(back, text)

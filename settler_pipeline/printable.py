"""Text from input data made safe to show on a terminal.

A source row's description, reference or currency is whatever the file held. Printed raw, an escape
sequence in it can recolour or rewrite the reviewer's screen, hide text or plant a hyperlink; a carriage
return or line feed can overwrite or forge lines; a bidirectional override can make ``evil`` read as
``live``. Each such character is shown as its escape (``\\x1b``, ``\\u202e``) instead.
"""

from __future__ import annotations

import re

# C0 controls (NUL, ESC, CR, LF, TAB ...), DEL and the C1 controls; the bidirectional marks, embeddings,
# overrides and isolates; the Unicode line and paragraph separators.
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def _escape(found: re.Match[str]) -> str:
    code = ord(found.group())
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def printable(text: str) -> str:
    """``text`` with every control character and bidirectional control replaced by its visible escape
    (``"a\\x1bb"`` -> ``a\\x1bb`` as typed); any other text, backslashes included, is unchanged."""
    return _UNSAFE.sub(_escape, text)

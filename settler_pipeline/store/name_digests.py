"""SHA-1 digests of many names at once, computed by DuckDB.

The matcher names each match by a uuid5 (one SHA-1 of namespace and name); hashing a million names
one ``hashlib`` call at a time costs about a second, DuckDB's vectorised ``sha1`` on both cores a
third of that. Kept out of the domain, which must not load DuckDB or PyArrow: the application hands
:func:`sha1_digests` to the matcher, whose own pure fallback gives the same bytes.
"""

from __future__ import annotations

import duckdb
import numpy as np
import numpy.typing as npt
import polars as pl
import pyarrow as pa

_DIGEST_BYTES = 20


def sha1_digests(prefix: bytes, names: pl.Series) -> npt.NDArray[np.uint8]:
    """An ``(len(names), 20)`` array whose row ``i`` is ``sha1(prefix + names[i] as UTF-8)``, in the
    order of ``names`` (which must hold no nulls)."""
    with duckdb.connect() as con:
        con.register("names", pl.DataFrame({"name": names.cast(pl.Binary)}))
        # The prefix goes in as a parameter; the query keeps the frame's row order (insertion order
        # is preserved for a plain projection). The digests come back as DuckDB writes them, 40 hex
        # digits each, and are turned into bytes here in one lookup per pair of digits: unhex() in
        # the query cost more, and so did reading the blobs it gives.
        table = con.sql(
            "SELECT sha1($prefix || name) AS digest FROM names", params={"prefix": prefix}
        ).to_arrow_table()
    column = table.column("digest").combine_chunks()
    if len(column) == 0:
        return np.empty((0, _DIGEST_BYTES), dtype=np.uint8)
    array = column.cast(pa.string()) if column.type != pa.string() else column
    offsets = np.frombuffer(array.buffers()[1], dtype=np.int32)[array.offset : array.offset + len(array) + 1]
    text = np.frombuffer(array.buffers()[2], dtype=np.uint8)[offsets[0] : offsets[-1]]
    return _FROM_HEX_PAIR[text.view(np.uint16)].reshape(-1, _DIGEST_BYTES)


def _from_hex_pairs() -> npt.NDArray[np.uint8]:
    """The byte each pair of lower-case hex digits writes, indexed by the pair read as a 16-bit word."""
    digits = b"0123456789abcdef"
    pairs = np.frombuffer(b"".join(bytes([digits[b >> 4], digits[b & 15]]) for b in range(256)), np.uint16)
    table = np.zeros(1 << 16, dtype=np.uint8)
    table[pairs] = np.arange(256, dtype=np.uint8)
    return table


_FROM_HEX_PAIR = _from_hex_pairs()

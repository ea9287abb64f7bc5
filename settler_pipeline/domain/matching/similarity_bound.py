"""An upper bound of ``rapidfuzz.fuzz.token_set_ratio``, cheap enough to skip the pairs that cannot
reach a minimum score without scoring them.

For texts ``a`` and ``b`` with token sets ``A`` and ``B`` (tokens split on spaces, each counted
once), ``La`` and ``Lb`` the lengths of their tokens joined by single spaces and ``s`` that of the
shared tokens joined, ``token_set_ratio`` is 0 when either has no token, 100 when the shared tokens
are all of ``A`` or all of ``B``, and otherwise the highest of

* ``200 * s / (s + La)`` and ``200 * s / (s + Lb)`` (the shared tokens against each whole set), at
  most ``200 * s / (s + min(La, Lb))``;
* ``100 * (1 - indel / (La + Lb))`` of the two sets of unshared tokens, which is
  ``200 * (s + 1 + lcs) / (La + Lb)`` (``s + 1 + lcs`` being 0 when nothing is shared) and so at
  most ``200 * common / (La + Lb)``, where ``common`` counts the characters the two texts have in
  common (a longest common subsequence has no more of a character than either text).

Both are increasing in ``s`` and ``common``, so over-estimates of those give a bound. ``s`` is
over-estimated from a 64-bit signature per text (a bit per token, by the token's hash): a token of
``A`` can only be shared when its bit is set in ``b``'s signature (and nothing is shared when the
signatures have no bit in common). ``common`` is over-estimated from
a histogram of characters per text, with rare characters sharing a bucket. The 100 case is the
first one with ``s = La`` or ``s = Lb``, so it is covered too.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import polars as pl

from settler_pipeline.domain.matching.tolerance import BoolArray, Int64Array

UInt64Array = npt.NDArray[np.uint64]
UInt8Array = npt.NDArray[np.uint8]

TOKEN_SLOTS = 6
"""Tokens per text whose signature bit is tested one by one; the length of any further tokens
counts as shared (still a bound, only a looser one)."""
WIDEST = 128
"""Texts longer than this many characters get a saturated histogram (any character in common)."""
_BUCKETS = 40  # a-z, 0-9, space, then three buckets for every other character
_HASH_SEED = 20261202


@dataclass(frozen=True)
class TextFeatures:
    """Per text: ``length`` of its token set joined (0 without tokens), ``signature`` (a bit per
    token), ``slot_bits`` and ``slot_lengths`` (per slot, a token's bit, as a mask, and its length + 1;
    0 for an empty slot), ``overflow`` (length + 1 of the tokens beyond the slots) and ``histogram``
    (characters per bucket)."""

    length: Int64Array
    signature: UInt64Array
    slot_bits: list[UInt64Array]
    slot_lengths: list[Int64Array]
    overflow: Int64Array
    histogram: UInt8Array

    def take(self, rows: Int64Array) -> TextFeatures:
        """The features of the texts ``rows``, in that order."""
        return TextFeatures(
            self.length[rows],
            self.signature[rows],
            [bits[rows] for bits in self.slot_bits],
            [lengths[rows] for lengths in self.slot_lengths],
            self.overflow[rows],
            self.histogram[rows],
        )


def text_features(texts: pl.Series) -> TextFeatures:
    """The features of each text of ``texts``: letters and digits in words separated by single
    spaces, as the fuzzy pass cleans them (nulls read as empty)."""
    frame = pl.DataFrame({"text": texts.fill_null("")})
    distinct = frame.unique(maintain_order=True)
    if 2 * distinct.height > frame.height:
        return _features(frame["text"])
    # A text repeated on many records (a bank's memo template, a frequent name) is worked out once.
    code = frame.join(distinct.with_row_index("code"), on="text", how="left", maintain_order="left")
    return _features(distinct["text"]).take(code["code"].cast(pl.Int64).to_numpy())


def _features(texts: pl.Series) -> TextFeatures:
    n = len(texts)
    tokens = (
        pl.DataFrame({"row": np.arange(n, dtype=np.int64), "token": texts.str.split(" ")})
        .with_columns(pl.col("token").list.unique())
        .explode("token")
        .filter(pl.col("token").str.len_bytes() > 0)
    )
    row = tokens["row"].to_numpy()  # ascending: explode keeps the rows' order
    size = tokens["token"].str.len_chars().cast(pl.Int64).to_numpy() + 1
    bit = np.left_shift(np.uint64(1), tokens["token"].hash(_HASH_SEED).to_numpy() % np.uint64(64))
    length = np.maximum(np.bincount(row, weights=size, minlength=n).astype(np.int64) - 1, 0)
    signature = np.zeros(n, dtype=np.uint64)
    first = np.flatnonzero(np.concatenate([[True], row[1:] != row[:-1]])) if len(row) else row
    if len(row):
        signature[row[first]] = np.bitwise_or.reduceat(bit, first)
    slot = np.arange(len(row)) - np.repeat(first, np.diff(np.append(first, len(row))))
    slot_bits: list[UInt64Array] = []
    slot_lengths: list[Int64Array] = []
    for index in range(min(TOKEN_SLOTS, int(slot.max()) + 1 if len(slot) else 0)):
        at = slot == index
        bits = np.zeros(n, dtype=np.uint64)
        lengths = np.zeros(n, dtype=np.int64)
        bits[row[at]], lengths[row[at]] = bit[at], size[at]
        slot_bits.append(bits)
        slot_lengths.append(lengths)
    beyond = slot >= TOKEN_SLOTS
    overflow = np.bincount(row[beyond], weights=size[beyond], minlength=n).astype(np.int64)
    return TextFeatures(length, signature, slot_bits, slot_lengths, overflow, _histograms(texts))


_BUCKET_OF_ASCII = np.array(
    [
        36
        if code == 32
        else code - 97
        if 97 <= code <= 122
        else code - 22
        if 48 <= code <= 57
        else 37 + code % 3
        for code in range(128)
    ],
    dtype=np.int64,
)


def _histograms(texts: pl.Series) -> UInt8Array:
    n = len(texts)
    chars = texts.str.len_chars().fill_null(0).to_numpy()
    width = int(min(chars.max(), WIDEST)) if n else 0
    histogram = np.full((n, _BUCKETS), 255, dtype=np.uint8)
    fits = np.flatnonzero(chars <= width)
    histogram[fits] = 0
    fits = fits[chars[fits] > 0]
    if not len(fits):
        return histogram
    points = np.array(texts.gather(fits).to_list(), dtype=f"U{width}")
    code = points.view(np.uint32).reshape(len(fits), width)
    bucket = _BUCKET_OF_ASCII[np.minimum(code, 127)]
    wide = code > 127
    if wide.any():
        bucket[wide] = 37 + code[wide] % 3
    bucket += (np.arange(len(fits), dtype=np.int64) * _BUCKETS)[:, None]
    counts = np.bincount(bucket[code != 0], minlength=len(fits) * _BUCKETS)  # 0: padding after the text
    histogram[fits] = counts.reshape(len(fits), _BUCKETS).astype(np.uint8)
    return histogram


def may_reach(
    a: TextFeatures, b: TextFeatures, a_rows: Int64Array, b_rows: Int64Array, score: float
) -> BoolArray:
    """For pairs of texts (``a_rows`` of ``a`` with ``b_rows`` of ``b``): may their
    ``token_set_ratio`` be ``score`` or more? False only when it certainly is below ``score``."""
    if not a.length.any() or not b.length.any():
        return np.zeros(len(a_rows), dtype=np.bool_)  # no text on one side: every score is 0
    la, lb = a.length[a_rows], b.length[b_rows]
    shorter = np.minimum(la, lb)
    possible = np.zeros(len(a_rows), dtype=np.bool_)
    # Shared words: equal words have equal bits, so only pairs whose signatures meet can share one.
    meet = np.flatnonzero((a.signature[a_rows] & b.signature[b_rows]) != 0)
    rows, other_signature = a_rows[meet], b.signature[b_rows[meet]]
    shared = a.overflow[rows]
    for bits, lengths in zip(a.slot_bits, a.slot_lengths, strict=True):
        shared = shared + lengths[rows] * ((other_signature & bits[rows]) != 0)
    shared = np.minimum(shared - 1, shorter[meet])
    possible[meet] = 200.0 * shared >= score * (shared + shorter[meet])
    by_characters = np.flatnonzero(~possible & (200.0 * shorter >= score * (la + lb)))
    common = np.minimum(a.histogram[a_rows[by_characters]], b.histogram[b_rows[by_characters]]).sum(
        axis=1, dtype=np.int64
    )
    possible[by_characters] = 200.0 * common >= score * (la[by_characters] + lb[by_characters])
    return possible & (shorter > 0)

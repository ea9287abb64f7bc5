"""Match quality against the generator's ground truth on its full mix of hard cases."""

from __future__ import annotations

from datetime import date

import polars as pl
import pytest

from settler_pipeline.domain.matching import MatchResult, match_records
from settler_pipeline.sample import SampleData, generate_sample, sample_match_config


def _link_key(frame: pl.DataFrame) -> pl.Expr:
    def joined(column: str) -> pl.Expr:
        return pl.col(column).list.sort().cast(pl.List(pl.String)).list.join(",")

    return pl.concat_str([joined("source_lines"), pl.lit("|"), joined("target_lines")]).alias("link")


@pytest.fixture(scope="module")
def outcome() -> tuple[SampleData, MatchResult]:
    sample = generate_sample(20_000, seed=20261101, start=date(2026, 11, 1), days=30)
    return sample, match_records(sample.source, sample.target, sample_match_config(), run_id="quality")


def test_auto_confirmed_links_are_right_at_least_999_times_in_1000(
    outcome: tuple[SampleData, MatchResult],
) -> None:
    sample, result = outcome
    truth = sample.truth.select(_link_key(sample.truth))
    confirmed = result.matches.filter(pl.col("status") == "matched")
    confirmed = confirmed.select(_link_key(confirmed))
    correct = confirmed.join(truth, on="link", how="semi").height
    assert confirmed.height > 17_000
    assert correct / confirmed.height >= 0.999


def test_at_least_99_percent_of_true_links_are_found_matched_or_proposed(
    outcome: tuple[SampleData, MatchResult],
) -> None:
    sample, result = outcome
    found = result.matches.select(_link_key(result.matches))
    truth = sample.truth.select(_link_key(sample.truth))
    # Every true link counts, including those no rule may match (twins, mismatched currencies...).
    assert truth.join(found, on="link", how="semi").height / truth.height >= 0.99


def test_no_ambiguous_twin_is_auto_matched(outcome: tuple[SampleData, MatchResult]) -> None:
    sample, result = outcome
    twins = pl.concat([sample.twins["source_line_a"], sample.twins["source_line_b"]])
    assert twins.len() > 0
    confirmed_lines = result.matches.filter(pl.col("status") == "matched")["source_lines"].explode()
    assert not confirmed_lines.is_in(twins.implode()).any()
    twin_reasons = result.unmatched.filter(
        (pl.col("side") == "source") & pl.col("line_number").is_in(twins.implode())
    )
    assert set(twin_reasons["reason"]) == {"ambiguous"}


@pytest.mark.parametrize("kind", ["currency_mismatch", "amount_mismatch", "date_mismatch"])
def test_designed_exceptions_end_unmatched_with_their_reason(
    outcome: tuple[SampleData, MatchResult], kind: str
) -> None:
    sample, result = outcome
    lines = sample.truth.filter(pl.col("kind") == kind)["source_lines"].explode()
    reasons = result.unmatched.filter(
        (pl.col("side") == "source") & pl.col("line_number").is_in(lines.implode())
    )
    assert reasons.height == lines.len() > 0
    assert (reasons["reason"] == kind).mean() >= 0.95  # type: ignore[operator]


def test_payouts_are_matched_as_groups(outcome: tuple[SampleData, MatchResult]) -> None:
    sample, result = outcome
    payouts = sample.truth.filter(pl.col("kind") == "payout")
    payouts = payouts.select(_link_key(payouts))
    groups = result.matches.filter(pl.col("match_type") == "many_to_one")
    groups = groups.select(_link_key(groups))
    assert payouts.join(groups, on="link", how="semi").height / payouts.height >= 0.98


def test_accounting_holds_on_the_sample(outcome: tuple[SampleData, MatchResult]) -> None:
    _, result = outcome
    accounting = result.accounting()
    assert accounting["source"]["duplicate"] == 100
    for side in ("source", "target"):
        counts = accounting[side]
        assert (
            counts["input"]
            == counts["matched"] + counts["proposed"] + counts["unmatched"] + counts["duplicate"]
        )

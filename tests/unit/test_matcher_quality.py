"""Match quality against the generator's ground truth on its full mix of hard cases: placeholder and
punctuated references, charge ids, split and part payments, mixed-zone accounts, common amounts,
decoys, twins, payouts, fees, refunds and the designed exceptions."""

from __future__ import annotations

from datetime import date

import polars as pl
import pytest

from settler_pipeline.domain.matching import MatchResult, match_records
from settler_pipeline.sample import SampleData, generate_sample, sample_match_config

SIZES = [20_000, pytest.param(200_000, marks=pytest.mark.slow)]


def _link_key(frame: pl.DataFrame) -> pl.Expr:
    def joined(column: str) -> pl.Expr:
        return pl.col(column).list.sort().cast(pl.List(pl.String)).list.join(",")

    return pl.concat_str([joined("source_lines"), pl.lit("|"), joined("target_lines")]).alias("link")


@pytest.fixture(scope="module", params=SIZES, ids=lambda size: f"{size // 1000}k")
def outcome(request: pytest.FixtureRequest) -> tuple[SampleData, MatchResult]:
    sample = generate_sample(request.param, seed=20261101, start=date(2026, 11, 1), days=30)
    return sample, match_records(sample.source, sample.target, sample_match_config(), run_id="quality")


def test_auto_confirmed_links_are_right_at_least_999_times_in_1000(
    outcome: tuple[SampleData, MatchResult],
) -> None:
    sample, result = outcome
    truth = sample.truth.select(_link_key(sample.truth))
    confirmed = result.matches.filter(pl.col("status") == "matched")
    confirmed = confirmed.select(_link_key(confirmed))
    correct = confirmed.join(truth, on="link", how="semi").height
    assert confirmed.height > 0.85 * sample.truth.height
    assert correct / confirmed.height >= 0.999


def test_at_least_98_percent_of_true_links_are_found_matched_or_proposed(
    outcome: tuple[SampleData, MatchResult],
) -> None:
    sample, result = outcome
    found = result.matches.select(_link_key(result.matches))
    truth = sample.truth.select(_link_key(sample.truth))
    # Every true link counts, including those no rule may match (twins, mismatched currencies...).
    assert truth.join(found, on="link", how="semi").height / truth.height >= 0.98


@pytest.mark.parametrize(
    "phenomenon",
    [
        "reference_in_punctuated_memo",
        "reference_is_charge_id",
        "reference_placeholder",
        "split_payment",
        "partial_payment",
    ],
)
def test_each_new_phenomenon_is_found_at_least_95_percent_of_the_time(
    outcome: tuple[SampleData, MatchResult], phenomenon: str
) -> None:
    sample, result = outcome
    links = sample.truth.filter(pl.col("phenomenon") == phenomenon)
    found = result.matches.select(_link_key(result.matches))
    assert links.height > 0
    assert links.select(_link_key(links)).join(found, on="link", how="semi").height / links.height >= 0.95


def test_no_record_is_used_twice(outcome: tuple[SampleData, MatchResult]) -> None:
    _, result = outcome
    for column in ("source_lines", "target_lines"):
        lines = result.matches[column].explode()
        assert lines.n_unique() == lines.len()


def test_no_decoy_or_ambiguous_twin_is_auto_matched(outcome: tuple[SampleData, MatchResult]) -> None:
    sample, result = outcome
    confirmed = result.matches.filter(pl.col("status") == "matched")
    assert sample.decoys.height > 0
    assert not confirmed["target_lines"].explode().is_in(sample.decoys["target_line"].implode()).any()
    twins = pl.concat([sample.twins["source_line_a"], sample.twins["source_line_b"]])
    assert twins.len() > 0
    assert not confirmed["source_lines"].explode().is_in(twins.implode()).any()
    twin_reasons = result.unmatched.filter(
        (pl.col("side") == "source") & pl.col("line_number").is_in(twins.implode())
    )
    assert set(twin_reasons["reason"]) == {"ambiguous"}


def test_part_payments_are_proposed_never_confirmed(outcome: tuple[SampleData, MatchResult]) -> None:
    sample, result = outcome
    partial = sample.truth.filter(pl.col("kind") == "partial_payment")
    partial_links = partial.select(_link_key(partial))
    matches = result.matches.with_columns(_link_key(result.matches))
    found = matches.join(partial_links, on="link", how="semi")
    assert found.height > 0 and set(found["status"]) == {"proposed"}
    assert (found["amount_difference_minor"] < 0).all()


@pytest.mark.parametrize("kind", ["currency_mismatch", "amount_mismatch", "date_mismatch"])
def test_designed_exceptions_end_unmatched_with_their_reason_and_closest_candidate(
    outcome: tuple[SampleData, MatchResult], kind: str
) -> None:
    sample, result = outcome
    links = sample.truth.filter(pl.col("kind") == kind)
    lines = links["source_lines"].explode()
    reasons = result.unmatched.filter(
        (pl.col("side") == "source") & pl.col("line_number").is_in(lines.implode())
    )
    assert reasons.height == lines.len() > 0
    assert (reasons["reason"] == kind).mean() >= 0.95  # type: ignore[operator]
    # The true counterpart is named as the closest candidate.
    bank_ids = dict(zip(sample.target["line_number"], sample.target["record_id"], strict=True))
    expected = {s[0]: bank_ids[t[0]] for s, t in links.select("source_lines", "target_lines").iter_rows()}
    named = dict(zip(reasons["line_number"], reasons["closest_id"], strict=True))
    assert sum(named[line] == expected[line] for line in expected) / len(expected) >= 0.95


def test_payouts_are_matched_as_groups(outcome: tuple[SampleData, MatchResult]) -> None:
    sample, result = outcome
    payouts = sample.truth.filter(pl.col("kind") == "payout")
    payouts = payouts.select(_link_key(payouts))
    groups = result.matches.filter(pl.col("match_type") == "many_to_one")
    groups = groups.select(_link_key(groups))
    assert payouts.join(groups, on="link", how="semi").height / payouts.height >= 0.98


def test_accounting_holds_on_the_sample(outcome: tuple[SampleData, MatchResult]) -> None:
    sample, result = outcome
    accounting = result.accounting()
    assert accounting["source"]["duplicate"] == round(0.005 * sample.source.height)
    for side in ("source", "target"):
        counts = accounting[side]
        assert (
            counts["input"]
            == counts["matched"] + counts["proposed"] + counts["unmatched"] + counts["duplicate"]
        )

"""Review items: a run's open exceptions with what a person needs to decide them, and the checks a
manual match must pass.

Every open item (the one definition of "open exceptions": the run's
:attr:`~settler_pipeline.domain.reconciliation.ReconciliationState.open_exceptions`) is shown with its
records as the run read them (id, time, amount in major units with the currency, reference,
description), taken from the events of the run's latest attempt: ``MatchProposed`` carries both sides'
records, ``RecordUnmatched`` the record with its closest candidate, ``DuplicateRecordDetected`` the line
it repeats, ``RecordQuarantined`` the raw row.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from settler_pipeline.adapters.amounts import CURRENCY_EXPONENTS, DEFAULT_EXPONENT, spec_exponents
from settler_pipeline.application.ports import EventLog
from settler_pipeline.domain import events as e
from settler_pipeline.domain.matching.tolerance import allowed_difference
from settler_pipeline.domain.reconciliation import ReconciliationState
from settler_pipeline.errors import StateError, ValidationError
from settler_pipeline.jobspec import job_spec_from_mapping
from settler_pipeline.printable import unescaped

_DETAIL_TYPES = (e.MATCH_PROPOSED, e.RECORD_UNMATCHED, e.DUPLICATE_DETECTED, e.RECORD_QUARANTINED)


def major(
    minor: int | None, currency: str | None, exponents: Mapping[str, int] = CURRENCY_EXPONENTS
) -> str | None:
    """``minor`` units of ``currency`` as an exact decimal string in major units (1234 EUR -> "12.34"),
    with the minor-unit ``exponents`` the run used (its job spec's ``currency.exponents`` over the
    built-in table: :func:`~settler_pipeline.adapters.amounts.spec_exponents`)."""
    if minor is None:
        return None
    exponent = exponents.get(currency or "", DEFAULT_EXPONENT)
    return str(Decimal(minor).scaleb(-exponent).quantize(Decimal(1).scaleb(-exponent)))


def _record(raw: dict[str, Any], side: str, exponents: Mapping[str, int]) -> dict[str, Any]:
    occurred = raw.get("occurred_at")
    return {
        "side": side,
        "id": raw.get("id") or raw.get("record_id"),
        "date": occurred[:10] if occurred else None,
        "occurred_at": occurred,
        "amount": major(raw.get("amount"), raw.get("currency"), exponents),
        "amount_minor": raw.get("amount"),
        "currency": raw.get("currency"),
        "reference": raw.get("reference"),
        "description": raw.get("description"),
    }


class RunDetails:
    """The details of a run's latest attempt that review needs, read from its events once."""

    def __init__(self, store: EventLog, state: ReconciliationState) -> None:
        assert state.reconciliation_id is not None
        self.state = state
        spec = state.spec.get("spec") or {}
        # each side's amounts were read with its own currency options
        self.exponents = {side: spec_exponents(spec, side) for side in ("source", "target")}
        frame = store.stream_frame(state.reconciliation_id, e.AGGREGATE_TYPE).filter(
            pl.col("event_type").is_in(list(_DETAIL_TYPES))
        )
        self.events: dict[str, tuple[str, dict[str, Any]]] = {}
        self.records: dict[tuple[str, str], dict[str, Any]] = {}
        for event_type, text in frame.select("event_type", "data").iter_rows():
            data = json.loads(text)
            if data.get("attempt", state.attempt) != state.attempt:
                continue
            if event_type == e.MATCH_PROPOSED:
                self.events[f"proposed:{data['match_id']}"] = (event_type, data)
                for side in ("source", "target"):
                    for raw in data.get(f"{side}_records") or []:
                        self.records[(side, raw["id"])] = _record(raw, side, self.exponents[side])
            elif event_type == e.RECORD_UNMATCHED:
                self.events[f"unmatched:{data['side']}:{data['record_id']}"] = (event_type, data)
                side = data["side"]
                self.records[(side, data["record_id"])] = _record(data, side, self.exponents[side])
            else:
                self.events[f"{_kind(event_type)}:{data['side']}:{data['line_number']}"] = (event_type, data)

    def record(self, side: str, record_id: str) -> dict[str, Any]:
        """A record of the run as review shows it (only its id when the run's events predate details)."""
        return self.records.get((side, record_id)) or {"side": side, "id": record_id}

    def _closest(self, data: dict[str, Any], side: str) -> dict[str, Any]:
        return _closest_of(data, side, self.exponents["target" if side == "source" else "source"])

    def items(self) -> list[dict[str, Any]]:
        """Every open item of the run with its records and the facts behind it: proposals first, then
        unmatched records, duplicates and quarantined rows, each group ordered by id (a part of the id
        that is a line number in numeric order: line 2 before line 13)."""
        order = {"proposed": 0, "unmatched": 1, "duplicate": 2, "quarantined": 3}
        ordered = sorted(
            self.state.open_exceptions.items(),
            key=lambda kv: (order.get(kv[0].split(":")[0], 9), _id_order(kv[0])),
        )
        return [self.item(item_id, reason) for item_id, reason in ordered]

    def item(self, item_id: str, reason: str) -> dict[str, Any]:
        kind, _, rest = item_id.partition(":")
        _, data = self.events.get(item_id, ("", {}))
        item: dict[str, Any] = {"id": item_id, "kind": kind, "reason": reason, "source": [], "target": []}
        if kind == "proposed":
            sources, targets = self.state.open_proposals.get(rest, ((), ()))
            currency = data.get("currency")
            item.update(
                source=[self.record("source", r) for r in sources],
                target=[self.record("target", r) for r in targets],
                rule=data.get("rule", reason),
                confidence=data.get("confidence"),
                currency=currency,
                amount_difference=major(data.get("amount_difference"), currency, self.exponents["source"]),
                date_difference_days=data.get("date_difference_days"),
            )
        elif kind == "unmatched":
            side, _, record_id = rest.partition(":")
            if reason == "ambiguous":
                item["kind"] = "ambiguous"
            item[side] = [self.record(side, record_id)]
            item["candidates"] = data.get("candidate_ids", [])
            if data.get("closest_id"):
                item["closest"] = self._closest(data, side)
        elif kind == "duplicate":
            side = rest.partition(":")[0]
            item["line_number"] = data.get("line_number")
            item[side] = [self.record(side, data["record_id"])] if data else []
            item["duplicate_of"] = {
                "record_id": data.get("record_id"),
                "line_number": data.get("first_line_number"),
            }
        elif kind == "quarantined":
            item["line_number"] = data.get("line_number")
            item["raw"] = data.get("raw")
        return item


def _closest_of(data: dict[str, Any], side: str, exponents: Mapping[str, int]) -> dict[str, Any]:
    """The closest candidate of the unmatched record of ``data`` (a ``RecordUnmatched``), in its own
    currency (events written before it was recorded: the record's), with the difference to the record
    only when both are in one currency."""
    currency = data.get("currency")
    theirs = data.get("closest_currency") or currency
    amount = data.get("closest_amount")
    difference = None
    if amount is not None and theirs == currency and data.get("amount") is not None:
        difference = (amount - data["amount"]) * (1 if side == "source" else -1)
    return {
        "id": data["closest_id"],
        "amount": major(amount, theirs, exponents),
        "currency": theirs,
        "occurred_at": data.get("closest_occurred_at"),
        "reference": data.get("closest_reference"),
        "rejection": data.get("closest_rejection"),
        "amount_difference": major(difference, currency, exponents),
    }


def _kind(event_type: str) -> str:
    return "duplicate" if event_type == e.DUPLICATE_DETECTED else "quarantined"


def manual_match_facts(
    details: RunDetails, source_ids: list[str], target_ids: list[str], *, accept_difference: bool, note: str
) -> dict[str, Any]:
    """Check a manual match and return what its event records: amounts (sums per side, minor units),
    currency, difference (target - source) and whether a difference beyond the job's tolerance was
    accepted. Currencies must agree; a difference beyond the widest tolerance of the job's matching
    passes needs ``accept_difference`` and a note saying why. An id listed twice is refused first: it
    would count its record's amount twice."""
    for side, ids in (("source", source_ids), ("target", target_ids)):
        repeated = sorted({r for r in ids if ids.count(r) > 1})
        if repeated:
            raise ValidationError(
                f"{side} record {', '.join(repeated)} is listed twice", hint="list each id once"
            )
    records = [details.record("source", r) for r in source_ids] + [
        details.record("target", r) for r in target_ids
    ]
    if any(r.get("amount_minor") is None for r in records):
        # Events written before record details existed: nothing to compare, the decision stands alone.
        return {}
    currencies = sorted({r["currency"] for r in records})
    if len(currencies) > 1:
        raise ValidationError(
            f"the records are in different currencies ({', '.join(currencies)}); a match needs one currency",
            hint="dismiss them separately with a reason instead",
        )
    currency = currencies[0]
    source = sum(r["amount_minor"] for r in records if r["side"] == "source")
    target = sum(r["amount_minor"] for r in records if r["side"] == "target")
    difference = target - source
    allowed = _allowed(details.state, source, target)
    beyond = abs(difference) > allowed
    if beyond and not accept_difference:

        def money(minor: int) -> str:
            return f"{major(minor, currency, details.exponents['source'])} {currency}"

        raise StateError(
            f"the amounts differ by {money(abs(difference))} (source {money(source)}, target "
            f"{money(target)}), more than the job's tolerance of {money(allowed)}",
            hint="check the records; to match them anyway pass --accept-difference with a --note saying why",
        )
    if beyond and not note.strip():
        raise ValidationError(
            "a match with a difference beyond the tolerance needs a note",
            hint="pass --note saying why the difference is accepted (e.g. a bank fee)",
        )
    return {
        "amount": source,
        "target_amount": target,
        "amount_difference": difference,
        "currency": currency,
        "difference_accepted": beyond,
    }


def _allowed(state: ReconciliationState, source: int, target: int) -> int:
    """The widest difference any of the job's matching passes allows for these amounts."""
    spec = job_spec_from_mapping(
        dict(state.spec.get("spec", {})),
        base_dir=Path(state.spec.get("spec_dir") or "."),
        origin="the job spec",
    )
    best = 0
    for matching_pass in spec.matching.passes:
        tolerance = getattr(matching_pass, "tolerance", None)
        if tolerance is None:
            continue
        base = source if tolerance.percent_of == "source" else target
        best = max(best, int(allowed_difference(np.array([base], dtype=np.int64), tolerance)[0]))
    return best


def _id_order(item_id: str) -> tuple[tuple[int, int, str], ...]:
    """A sort key for an item id: its ``:``-separated parts, those of digits only as numbers."""
    parts = item_id.split(":")
    return tuple((0, int(p), "") if p.isascii() and p.isdigit() else (1, 0, p) for p in parts)


def as_printed(open_items: Mapping[str, str], fields: dict[str, Any]) -> dict[str, Any]:
    """``fields`` (a review command's) with every record or exception id that names an open item as
    ``review list`` printed it (a newline shown as ``\\x0a``, a zero-width space
    as ``\\u200b``: :func:`~settler_pipeline.printable.unescaped`), replaced by the id it names."""
    forms = {"source_ids": "unmatched:source:{}", "target_ids": "unmatched:target:{}", "exception_ids": "{}"}

    def named(form: str, given: str) -> str:
        # as printed first (an id holding a newline is typed back as "\x0a"), then as typed (an id
        # holding the four characters "\x0a" itself); should a run hold both, the printed reading wins
        original = unescaped(given)
        return original if form.format(original) in open_items else given

    out = dict(fields)
    for key, form in forms.items():
        if isinstance(out.get(key), list | tuple):
            out[key] = [named(form, str(i)) for i in out[key]]
    if isinstance(out.get("exception_id"), str):
        out["exception_id"] = named("{}", out["exception_id"])
    return out


def not_reviewable(state: ReconciliationState, shown_id: str, *, process_gone: bool) -> StateError | None:
    """Why the run of ``state`` cannot be reviewed, with what to do instead (None when it can): review
    decides on a completed run's items only, so an unfinished, failed, cancelled, abandoned or
    superseded run's items are not final and would all be refused. ``shown_id``: the run as the user
    names it; ``process_gone``: it is started or running but the process executing it is gone."""
    status = str(state.status)
    if status == "completed":
        return None
    retry = f"`settler retry {shown_id}`"
    if process_gone:
        why, hint = f"{status} but its process is gone", f"{retry} marks it abandoned and runs it again"
    elif status in ("started", "running"):
        why, hint = status, "wait until it completes (`settler runs` shows it), or cancel it"
    elif status == "superseded":
        why, hint = (
            "superseded by a newer run of its days",
            "review the run that replaced it (`settler runs`)",
        )
    else:
        why, hint = status, f"{retry} runs it again"
    return StateError(
        f"run {shown_id} is {why}: only a completed run can be reviewed (its items are not final)",
        hint=f"{hint}; review it once it has completed",
    )

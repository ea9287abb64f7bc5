"""Realistic sample data with ground truth: a payment processor's export against a bank statement.

:func:`generate_sample` builds both sides in the canonical
:data:`~settler_pipeline.domain.transactions.TRANSACTION_SCHEMA`, the raw export rows they come from,
and the true links between them, vectorised (a million rows per side in a few seconds).

**Source** (a Stripe-like processor): charges ``ch_3...`` (refunds ``re_3...``) for invoices
``INV-000123``, a customer name as counterparty, a description such as ``Invoice INV-000123``, and
for charges settled in a batch the payout id ``po_1...`` as group key. The invoice number is the
reference; the charge id is a further reference (a bank line may name either).

**Target** (the bank statement): own ids ``BT...``, booking times written in the local time of the
account the line is booked on (one account per currency, each in its own zone), the invoice
reference in the Reference column, or only inside the memo, or nowhere (the Reference column then
empty or a placeholder such as ``NOTPROVIDED``); payouts arrive as one credit line.

Hard cases (``hard_cases=True``) at the rates of :data:`HARD_CASE_RATES`:

============================== ================================================================
``duplicate``                  of source rows: a row exported twice (same id), appended at the end
``payout_member``              of charges: settled in a payout of 2-25 charges (sum = one bank
                               line; payout id in the Reference 60 %, only in the memo 30 %,
                               nowhere 10 %)
``twin``                       of charges: pairs of identical charges (same customer, amount, day,
                               no reference) against one bank line (half the pairs) or two
``source_orphan``              of charges: never settled (no bank line)
``target_orphan``              bank-only lines (account fees, interest, internal transfers),
                               relative to the number of charges
``currency_mismatch``          of charges: settled in another currency, reference kept
``amount_mismatch``            of charges: short-paid (30-70 % of the amount), reference kept
``date_mismatch``              of charges: settled 12-20 days late, reference kept
``split_payment``              of charges (20.00 and more): paid in 2-3 instalments 10 days
                               apart, each naming the invoice only in its memo
``partial_payment``            of charges (20.00 and more): two of three instalments arrived
``decoy``                      bank-only lines copying a charge's amount, currency and day but
                               naming an invoice the processor never issued
``reference_noise``            of ordinary settlements: reference with other case, spaces,
                               prefix (``inv 000123``, ``000123``, ``REF-000123``, ...)
``reference_in_memo``          of ordinary settlements: the invoice only inside the memo
``reference_in_punctuated_memo`` of ordinary settlements: the invoice inside punctuated purpose
                               text (``SVWZ+RE/INV-000123/2026``, ``Rechnungsnr.INV-000123``)
``reference_is_charge_id``     of ordinary settlements: the memo names the charge id
                               (``CARD ch_3.../NAME``), not the invoice
``reference_missing``          of ordinary settlements: no reference anywhere (amount and date)
``placeholder_reference``      of lines without a Reference value: a placeholder written there
``common_amount``              of charges: at a catalogue price (79.00, 999.00, ...)
``fee``                        of ordinary settlements: the bank line is 1-50 cents less
``refund``                     of ordinary settlements: a refund (negative on both sides)
============================== ================================================================

Settlement lag is 0-3 days (:data:`LAG_PROBABILITIES`), so lines of the last days fall after the
date range. With ``hard_cases=False`` every charge is an ordinary settlement with a clean reference
(lags and account zones still apply).
"""

from settler_pipeline.sample.data import DECOYS_SCHEMA, TRUTH_SCHEMA, TWINS_SCHEMA, SampleData
from settler_pipeline.sample.files import write_sample_files
from settler_pipeline.sample.generate import generate_sample
from settler_pipeline.sample.matching import sample_match_config, sample_sides
from settler_pipeline.sample.processor import SOURCE_RAW_COLUMNS
from settler_pipeline.sample.rates import (
    BANK_ACCOUNTS,
    DEFAULT_CURRENCY_MIX,
    HARD_CASE_RATES,
    LAG_PROBABILITIES,
    SUPPORTED_CURRENCIES,
)
from settler_pipeline.sample.statement import TARGET_RAW_COLUMNS

__all__ = [
    "BANK_ACCOUNTS",
    "DECOYS_SCHEMA",
    "DEFAULT_CURRENCY_MIX",
    "HARD_CASE_RATES",
    "LAG_PROBABILITIES",
    "SOURCE_RAW_COLUMNS",
    "SUPPORTED_CURRENCIES",
    "TARGET_RAW_COLUMNS",
    "TRUTH_SCHEMA",
    "TWINS_SCHEMA",
    "SampleData",
    "generate_sample",
    "sample_match_config",
    "sample_sides",
    "write_sample_files",
]

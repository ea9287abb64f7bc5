"""Format options of a job-spec side: how its CSV is delimited, how amounts and dates are written,
and its currency defaults."""

from __future__ import annotations

import codecs
import functools
import re
import zoneinfo
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from settler_pipeline.jobspec.currencies import ISO_4217_CODES

CURRENCY_CODE_PATTERN = r"^[A-Z]{3}$"
THOUSANDS_SEPARATORS = (",", ".", " ", "'", "\u00a0", "\u202f", "")
MAX_ROW_ZONES = 200


class CsvOptions(BaseModel):
    """How to read a delimited text file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    delimiter: str = Field(default=",", min_length=1, max_length=1)
    quote_char: str | None = Field(default='"', min_length=1, max_length=1)
    encoding: str = "utf-8"
    header: bool = True
    skip_rows: int = Field(default=0, ge=0, le=1_000_000_000)

    @field_validator("encoding")
    @classmethod
    def _known_encoding(cls, value: str) -> str:
        try:
            codec = codecs.lookup(value)
        except LookupError:
            codec = None
        # rot13, base64 and friends are codecs too, but not text encodings: reading with one fails
        if codec is None or not getattr(codec, "_is_text_encoding", True):
            raise ValueError(
                f"unknown text encoding {value!r}; use e.g. utf-8, utf-8-sig, latin-1, cp1252, utf-16"
            )
        return codec.name

    @model_validator(mode="after")
    def _distinct_characters(self) -> CsvOptions:
        if self.quote_char is not None and self.quote_char == self.delimiter:
            raise ValueError(f"quote_char and delimiter must differ (both are {self.delimiter!r})")
        if self.delimiter in ("\n", "\r") or self.quote_char in ("\n", "\r"):
            raise ValueError("delimiter and quote_char cannot be a line break")
        return self


class AmountOptions(BaseModel):
    """How amounts are written: decimal or integer minor units, separators and the sign convention.

    ``thousands_separator`` defaults to ``","`` (or ``"."`` when the decimal separator is ``","``);
    ``""`` allows no grouping. Grouping must be in threes (``1,234,567.89``) so that a decimal comma
    read with the wrong settings is rejected rather than silently multiplied by 100.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    format: Literal["decimal", "minor_units"] = "decimal"
    decimal_separator: Literal[".", ","] = "."
    thousands_separator: str | None = None
    sign: Literal["as_is", "negate", "abs"] = "as_is"

    @field_validator("thousands_separator")
    @classmethod
    def _known_separator(cls, value: str | None) -> str | None:
        if value is not None and value not in THOUSANDS_SEPARATORS:
            raise ValueError(f"thousands_separator must be one of {list(THOUSANDS_SEPARATORS)!r}")
        return value

    @model_validator(mode="after")
    def _separators_differ(self) -> AmountOptions:
        if self.thousands_separator == self.decimal_separator:
            raise ValueError("thousands_separator and decimal_separator must differ")
        return self

    @property
    def grouping(self) -> str:
        """The effective thousands separator ("" when none is allowed)."""
        if self.thousands_separator is not None:
            return self.thousands_separator
        return "." if self.decimal_separator == "," else ","


class DateOptions(BaseModel):
    """How dates are written and which zone naive values are in.

    ``format`` is ``iso``, ``epoch_seconds``, ``epoch_millis`` or a strftime pattern such as
    ``"%d/%m/%Y"``. Naive values are local times in ``timezone`` (DST-aware) converted to UTC; values
    with an offset keep it; date-only values are midnight in ``timezone``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    format: str = "iso"
    timezone: str = "UTC"
    # Per-row zones: the column naming each row's zone (an IANA name, or with ``timezones`` a key
    # of that mapping such as an account number); rows where it is blank use ``timezone``.
    timezone_column: str | None = Field(default=None, min_length=1)
    timezones: dict[str, str] = Field(default_factory=dict, max_length=MAX_ROW_ZONES)

    @field_validator("format")
    @classmethod
    def _known_format(cls, value: str) -> str:
        if value in ("iso", "epoch_seconds", "epoch_millis"):
            return value
        if "%" not in value:
            raise ValueError(
                f"date format {value!r} is neither iso, epoch_seconds, epoch_millis nor a strftime "
                "pattern such as '%d/%m/%Y'"
            )
        if "%Y" not in value and "%y" not in value:
            raise ValueError(f"date format {value!r} has no year (%Y or %y)")
        return value

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        # The IANA names the parser knows; "localtime" (the host's zone file) and "Factory" load in
        # zoneinfo but not in Polars, and a spec must mean the same zone on every host anyway.
        if value not in _iana_zones():
            raise ValueError(f"unknown time zone {value!r}; use an IANA name such as UTC or Europe/London")
        return value

    @field_validator("timezones")
    @classmethod
    def _known_zones(cls, value: dict[str, str]) -> dict[str, str]:
        for key, zone in value.items():
            try:
                zoneinfo.ZoneInfo(zone)
            except (zoneinfo.ZoneInfoNotFoundError, ValueError):
                raise ValueError(
                    f"timezones[{key!r}]: unknown time zone {zone!r}; use an IANA name such as Europe/Berlin"
                ) from None
        return value

    @model_validator(mode="after")
    def _mapping_needs_a_column(self) -> DateOptions:
        if self.timezones and self.timezone_column is None:
            raise ValueError("timezones maps values of timezone_column: set timezone_column too")
        return self

    @property
    def has_offset(self) -> bool:
        """Whether a strftime format carries its own UTC offset (``%z``)."""
        return "%z" in self.format


@functools.cache
def _iana_zones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones() - {"localtime", "Factory", "posixrules"})


class CurrencyOptions(BaseModel):
    """Currency handling: a default for rows (or files) without a currency, and extra minor-unit
    exponents for codes the built-in table does not know (anything else defaults to 2). Rows are
    accepted in ISO 4217 codes and in the codes ``exponents`` names (private or withdrawn ones)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    default: str | None = None
    exponents: dict[str, int] = Field(default_factory=dict)

    @field_validator("default")
    @classmethod
    def _iso_code(cls, value: str | None) -> str | None:
        if value is None:
            return None
        code = value.strip().upper()
        if not re.fullmatch(CURRENCY_CODE_PATTERN, code):
            raise ValueError(f"{value!r} is not an ISO 4217 currency code (three letters such as EUR)")
        return code

    @field_validator("exponents")
    @classmethod
    def _exponents(cls, value: dict[str, int]) -> dict[str, int]:
        out: dict[str, int] = {}
        spelled: dict[str, str] = {}
        for code, exponent in value.items():
            upper = code.strip().upper()
            if not re.fullmatch(CURRENCY_CODE_PATTERN, upper):
                raise ValueError(f"{code!r} is not an ISO 4217 currency code")
            if upper in spelled:
                # codes are case-insensitive: two spellings of one code would leave the last one's
                # exponent in force without a word, and amounts scaled by the wrong power of ten
                raise ValueError(
                    f"currency {upper} is declared twice in currency.exponents "
                    f"({spelled[upper]}: {out[upper]}, {code}: {exponent}); keep one of them"
                )
            spelled[upper] = code
            if not 0 <= exponent <= 4:
                raise ValueError(f"exponent for {upper} must be 0..4, got {exponent}")
            out[upper] = exponent
        return out

    @model_validator(mode="after")
    def _known_default(self) -> CurrencyOptions:
        if self.default is not None and not self.accepts(self.default):
            raise ValueError(
                f"{self.default!r} is not an ISO 4217 currency code; to use a private or withdrawn code, "
                f"name it under currency.exponents (e.g. {{{self.default}: 2}})"
            )
        return self

    def accepts(self, code: str) -> bool:
        """Whether rows in currency ``code`` (upper case) are accepted: an ISO 4217 code, or one this
        spec names under ``exponents``."""
        return code in ISO_4217_CODES or code in self.exponents

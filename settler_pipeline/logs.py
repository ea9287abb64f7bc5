"""Settler's logging: one logger tree (``settler_pipeline.*``), levels, and structured fields.

Library modules log through :func:`get_logger` and attach what a reader needs to follow a run
(``run_id``, ``tenant``, ``step``, ``job`` ...) as fields, not inside the message, so the same line
reads well on a terminal (``... run_id=... step=match``) and parses under ``json=True``. Nothing is
configured on import (a library must not); the CLI calls :func:`configure` from ``--log-level`` /
``SETTLER_LOG_LEVEL``, and Dagster shows these records in its run logs when ``settler_pipeline`` is
among the instance's ``python_logs.managed_python_loggers`` (``make dagster`` and the demo set it).
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Mapping, MutableMapping
from datetime import UTC, datetime
from typing import IO, Any

from settler_pipeline.printable import terminal_safe

ROOT = "settler_pipeline"
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
_FIELDS = "settler_fields"
_HANDLER_NAME = "settler-cli"


class FieldLogger(logging.LoggerAdapter[logging.Logger]):
    """A logger carrying fixed fields (e.g. the run being worked on); fields given per call add to
    them (``log.info("matched", extra={"step": "match"})``)."""

    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) -> tuple[Any, MutableMapping[str, Any]]:
        fields = {**(self.extra or {}), **kwargs.pop("extra", {})}
        kwargs["extra"] = {_FIELDS: fields}
        return msg, kwargs

    def bind(self, **fields: Any) -> FieldLogger:
        """A logger with these fields added to the ones it has."""
        return FieldLogger(self.logger, {**(self.extra or {}), **fields})


def get_logger(name: str, **fields: Any) -> FieldLogger:
    """The logger for module ``name`` (under ``settler_pipeline``), with ``fields`` on every record."""
    return FieldLogger(logging.getLogger(name), fields)


def fields_of(record: logging.LogRecord) -> Mapping[str, Any]:
    """The structured fields attached to ``record`` (empty for records from elsewhere)."""
    found = getattr(record, _FIELDS, None)
    return found if isinstance(found, Mapping) else {}


class TextFormatter(logging.Formatter):
    """``2026-12-01T06:20:00Z INFO settler_pipeline.application.service run completed run_id=...``
    (one line per record plus any traceback: control characters of the message and fields, which may
    come from input data, are escaped)."""

    def format(self, record: logging.LogRecord) -> str:
        stamp = datetime.fromtimestamp(record.created, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        text = f"{stamp} {record.levelname} {record.name} {terminal_safe(record.getMessage())}"
        extra = " ".join(f"{k}={terminal_safe(str(v))}" for k, v in fields_of(record).items())
        if extra:
            text = f"{text} {extra}"
        if record.exc_info:
            text = f"{text}\n{self.formatException(record.exc_info)}"
        return text


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time (UTC), level, logger, message and the fields."""

    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            **fields_of(record),
        }
        if record.exc_info:
            payload["exception"] = self.formatException(record.exc_info)
        return json.dumps(payload, default=str)


def parse_level(level: str | int) -> int:
    """A logging level from a name (any case) or number; raises ``ValueError`` naming the choices."""
    if isinstance(level, int):
        return level
    name = level.strip().upper()
    if name not in LEVELS:
        raise ValueError(f"unknown log level {level!r}; choose one of {', '.join(LEVELS)}")
    return int(logging.getLevelName(name))


def configure(
    level: str | int = "WARNING",
    *,
    json_lines: bool = False,
    stream: IO[str] | None = None,
    silent: bool = False,
) -> None:
    """Send ``settler_pipeline`` records at ``level`` and above to ``stream`` (stderr by default), as
    text or JSON lines; ``silent`` writes none of them there (other handlers still get them). Calling it
    again replaces the earlier handler instead of adding one."""
    logger = logging.getLogger(ROOT)
    logger.setLevel(parse_level(level))
    for handler in list(logger.handlers):
        if handler.get_name() == _HANDLER_NAME:
            logger.removeHandler(handler)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(JsonFormatter() if json_lines else TextFormatter())
    if silent:
        handler.setLevel(logging.CRITICAL + 1)
    logger.addHandler(handler)

"""Logging: structured fields on every line, levels, JSON lines, and the run's own log lines."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from settler_pipeline.logs import ROOT, configure, get_logger, parse_level


@pytest.fixture(autouse=True)
def _restore_root_logger() -> Iterator[None]:
    logger = logging.getLogger(ROOT)
    handlers, level = list(logger.handlers), logger.level
    yield
    logger.handlers[:] = handlers
    logger.setLevel(level)


def test_a_line_carries_its_bound_and_per_call_fields() -> None:
    out = io.StringIO()
    configure("INFO", stream=out)
    log = get_logger("settler_pipeline.test", run_id="r-1").bind(tenant="t-1")
    log.info("matched %d", 5, extra={"step": "match"})
    line = out.getvalue().strip()
    assert line.endswith("INFO settler_pipeline.test matched 5 run_id=r-1 tenant=t-1 step=match")


def test_lines_below_the_level_are_dropped_and_configuring_twice_keeps_one_handler() -> None:
    out = io.StringIO()
    configure("WARNING", stream=out)
    configure("WARNING", stream=out)
    log = get_logger("settler_pipeline.test")
    log.info("quiet")
    log.warning("loud")
    assert out.getvalue().count("loud") == 1 and "quiet" not in out.getvalue()


def test_json_lines_hold_the_fields_as_keys() -> None:
    out = io.StringIO()
    configure("DEBUG", json_lines=True, stream=out)
    get_logger("settler_pipeline.test", run_id="r-2").debug("step done", extra={"events": 3})
    record = json.loads(out.getvalue())
    assert record["level"] == "DEBUG" and record["message"] == "step done"
    assert (record["run_id"], record["events"]) == ("r-2", 3)
    assert record["time"].endswith("+00:00")


@pytest.mark.parametrize(("given", "level"), [("info", logging.INFO), (" ERROR ", logging.ERROR), (10, 10)])
def test_levels_are_read_by_name_in_any_case(given: str | int, level: int) -> None:
    assert parse_level(given) == level


def test_an_unknown_level_names_the_choices() -> None:
    with pytest.raises(ValueError, match="DEBUG, INFO, WARNING, ERROR"):
        parse_level("verbose")


def test_a_text_line_shows_control_characters_of_its_message_and_fields_escaped() -> None:
    out = io.StringIO()
    configure("INFO", stream=out)
    get_logger("settler_pipeline.test", job="a\x1b[2Jb").info("row %s", "x\r\ny\u202e")
    assert out.getvalue() == out.getvalue().splitlines()[0] + "\n"
    assert out.getvalue().rstrip("\n").endswith("row x\\x0d\\x0ay\\u202e job=a\\x1b[2Jb")

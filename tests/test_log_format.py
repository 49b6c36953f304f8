"""HERALD_LOG_FORMAT: text lines and JSON lines, both with the request id of the work under way."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from herald.settings import load_settings
from messaging import context
from messaging.logs import TEXT_FORMAT, JsonFormatter, RequestIdFilter, configure_logging
from messaging.settings import SettingsError


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    """A handler on a logger of its own, formatted as configure_logging does it."""
    yield io.StringIO()


def emit(fmt: str, stream: io.StringIO, message: str, **extra: object) -> str:
    handler = logging.StreamHandler(stream)
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    logger = logging.getLogger(f"herald.test.{fmt}")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning(message, extra=extra)
    finally:
        logger.removeHandler(handler)
    return stream.getvalue().strip()


def test_a_json_line_carries_level_logger_message_request_id_and_its_fields(stream: io.StringIO) -> None:
    with context.bound("req-1"):
        line = json.loads(emit("json", stream, "delivery %s failed", channel="email", delivery_id=7))
    assert line["level"] == "WARNING" and line["logger"] == "herald.test.json"
    assert line["message"] == "delivery %s failed" and line["request_id"] == "req-1"
    assert (line["channel"], line["delivery_id"]) == ("email", 7)


def test_a_text_line_ends_with_the_request_id_only_when_there_is_one(stream: io.StringIO) -> None:
    with context.bound("req-2"):
        assert emit("text", stream, "hello").endswith("WARNING herald.test.text hello request_id=req-2")
    stream.seek(0)
    stream.truncate()
    assert emit("text", stream, "plain").endswith("WARNING herald.test.text plain")


def test_configure_logging_replaces_the_root_handlers_with_one_of_the_chosen_format() -> None:
    root = logging.getLogger()
    saved, level = list(root.handlers), root.level
    try:
        configure_logging("WARNING", "json")
        [handler] = root.handlers
        assert isinstance(handler.formatter, JsonFormatter) and root.level == logging.WARNING
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in saved:
            root.addHandler(handler)
        root.setLevel(level)


def test_an_unknown_log_format_stops_start_up_naming_the_key() -> None:
    with pytest.raises(SettingsError, match="HERALD_LOG_FORMAT"):
        load_settings({"HERALD_LOG_FORMAT": "xml"})
    assert load_settings({"HERALD_LOG_FORMAT": "json"}).log_format == "json"


def test_only_sane_request_ids_are_taken() -> None:
    assert context.sane_request_id("abc-123_x.y:z") == "abc-123_x.y:z"
    for bad in ("", "has space", "x" * 65, "-leading", "new\nline", None):
        assert context.sane_request_id(bad) is None

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest

from funnel_common.settings import CommonSettings
from funnel_common.telemetry import (
    JsonFormatter,
    configure_logging,
    mask_personal_data,
    new_tracer_provider,
)


@pytest.mark.parametrize(
    "text",
    [
        "lead from ada.lovelace+promo@example.co.uk arrived",
        "call +44 20 7946 0958 now",
        "call (555) 123-4567 now",
    ],
)
def test_personal_data_is_masked(text: str) -> None:
    masked = mask_personal_data(text)

    assert "@example" not in masked
    assert "7946" not in masked
    assert "123-4567" not in masked


@pytest.mark.parametrize(
    "text",
    [
        "2026-11-24T16:34:08.881821+00:00",
        "lag 0.123456789 s",
        "listening on 127.0.0.1:9092",
        "lead 5b3f0c1e-2d4a-4f7e-9a51-0c8d2e6f1a3b",
    ],
)
def test_timestamps_numbers_and_ids_are_kept(text: str) -> None:
    assert mask_personal_data(text) == text


def test_json_lines_carry_extras_and_mask_them() -> None:
    record = logging.makeLogRecord(
        {"msg": "lead captured", "levelname": "INFO", "name": "t", "form": "default"}
    )
    record.__dict__["note"] = "from bob@example.com"

    line = json.loads(JsonFormatter("lead-intake").format(record))

    assert line["service"] == "lead-intake"
    assert line["form"] == "default"
    assert line["note"] == "from <email>"


@pytest.fixture
def restored_logging() -> Iterator[None]:
    loggers = [
        logging.getLogger(),
        logging.getLogger("uvicorn.error"),
        logging.getLogger("uvicorn.access"),
    ]
    saved = [(each.handlers[:], each.level, each.propagate) for each in loggers]
    yield
    for each, (handlers, level, propagate) in zip(loggers, saved, strict=True):
        each.handlers[:] = handlers
        each.setLevel(level)
        each.propagate = propagate


@pytest.mark.usefixtures("restored_logging")
def test_uvicorn_lines_are_json_too(capsys: pytest.CaptureFixture[str]) -> None:
    server_logger = logging.getLogger("uvicorn.error")
    # What uvicorn's own config does (another test's uvicorn may have left it at WARNING).
    server_logger.addHandler(logging.StreamHandler())
    server_logger.setLevel(logging.INFO)

    configure_logging(CommonSettings(log_format="json"), "handoff")
    server_logger.info("Started server process [%d]", 42)

    [line] = capsys.readouterr().err.splitlines()
    assert json.loads(line)["message"] == "Started server process [42]"
    assert json.loads(line)["service"] == "handoff"


@pytest.mark.usefixtures("restored_logging")
def test_no_access_log_stays_off(capsys: pytest.CaptureFixture[str]) -> None:
    access_logger = logging.getLogger("uvicorn.access")
    # What uvicorn's own config does with --no-access-log (as `funnel dev` and the images
    # run it); its HTTP protocols then log a request only if the logger has handlers.
    access_logger.setLevel(logging.INFO)
    access_logger.handlers = []
    access_logger.propagate = False

    configure_logging(CommonSettings(log_format="json"), "lead-intake")
    access_logger.info('%s - "%s %s HTTP/%s" %d', "127.0.0.1:5000", "GET", "/healthz", "1.1", 200)

    assert not access_logger.hasHandlers()
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize(
    "message", ["note:\nbob@example.com", "cafébob@example.com", "offset 123456789"]
)
def test_masking_keeps_each_line_one_json_object(message: str) -> None:
    record = logging.makeLogRecord(
        {"msg": message, "levelname": "INFO", "name": "t", "offset": 123456789}
    )

    line = json.loads(JsonFormatter("handoff").format(record))

    assert "bob@" not in line["message"]
    assert line["offset"] == 123456789


def _line_of(message: str, **extra: object) -> dict[str, object]:
    record = logging.makeLogRecord({"msg": message, "levelname": "INFO", "name": "t", **extra})
    line: dict[str, object] = json.loads(JsonFormatter("handoff").format(record))
    return line


def test_a_line_inside_an_operation_carries_its_trace_and_span_ids() -> None:
    tracer = new_tracer_provider("handoff").get_tracer("tests")

    with tracer.start_as_current_span("apply event") as span:
        line = _line_of("event applied")

    # Not recorded (no exporter), yet the ids tie the request's lines together.
    assert not span.is_recording()
    context = span.get_span_context()
    assert line["trace_id"] == f"{context.trace_id:032x}"
    assert line["span_id"] == f"{context.span_id:016x}"


def test_a_line_outside_any_operation_has_no_trace_ids() -> None:
    line = _line_of("relay waiting for the broker")

    assert "trace_id" not in line
    assert "span_id" not in line


def test_uvicorns_coloured_copy_of_a_message_stays_out_of_the_json() -> None:
    line = _line_of(
        "Uvicorn running on http://127.0.0.1:8001",
        color_message="Uvicorn running on \x1b[1mhttp://127.0.0.1:8001\x1b[0m",
    )

    assert line["message"] == "Uvicorn running on http://127.0.0.1:8001"
    assert "color_message" not in line
    assert "\x1b" not in json.dumps(line)

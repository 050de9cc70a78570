"""funnel_common.spreadsheet: CSV a spreadsheet opens without running anything (OWASP's
CSV-injection advice), and the types it writes."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime

import pytest

from funnel_common.spreadsheet import Cell, csv_line, csv_stream, safe_text


@pytest.mark.parametrize(
    "text", ["=1+1", "+49 30 1234567", "-2", "@SUM(A1)", "\tx", "\r=1", '=HYPERLINK("x")']
)
def test_text_a_spreadsheet_would_evaluate_is_prefixed(text: str) -> None:
    assert safe_text(text) == f"'{text}"


@pytest.mark.parametrize("text", ["plain", "", " =not first", "a=b", "'quoted already"])
def test_other_text_is_left_as_it_is(text: str) -> None:
    assert safe_text(text) == text


def test_a_line_quotes_text_keeps_numbers_and_writes_times_in_utc() -> None:
    cells: list[Cell] = ['say "hi"', "=cmd", -5, 2.5, True, None, date(2026, 12, 5)]
    line = csv_line([*cells, datetime(2026, 12, 5, 8, 0, tzinfo=UTC)]).decode()

    assert line.endswith("\r\n")
    assert line == (
        '"say ""hi""","\'=cmd",-5,2.5,"true","","2026-12-05","2026-12-05T08:00:00Z"\r\n'
    )
    [row] = list(csv.reader(io.StringIO(line)))
    assert row[:3] == ['say "hi"', "'=cmd", "-5"]


async def test_a_stream_is_the_header_then_each_row() -> None:
    async def rows() -> AsyncIterator[list[Cell]]:
        yield ["a", 1]
        yield ["@b", 2]

    lines = [line async for line in csv_stream(["name", "n"], rows())]

    assert b"".join(lines) == b'"name","n"\r\n"a",1\r\n"\'@b",2\r\n'

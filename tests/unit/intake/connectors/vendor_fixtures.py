"""The vendors' documented examples kept under tests/fixtures/vendors/ (sources in each
folder's README)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

VENDORS = Path(__file__).resolve().parents[3] / "fixtures" / "vendors"


def vendor_bytes(vendor: str, name: str) -> bytes:
    return (VENDORS / vendor / name).read_bytes()


def vendor_json(vendor: str, name: str) -> Any:
    return json.loads(vendor_bytes(vendor, name))

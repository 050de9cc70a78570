from __future__ import annotations

from funnel_common import schemas


def test_checked_in_schemas_match_the_models() -> None:
    differing = schemas.drift()

    assert differing == [], f"run `make schemas` and commit the result: {differing}"


def test_drift_is_detected(tmp_path) -> None:  # type: ignore[no-untyped-def]
    schemas.write(tmp_path)
    (tmp_path / "funnel.lead.captured.v1.json").write_text("{}\n")
    (tmp_path / "funnel.lead.retired.v1.json").write_text("{}\n")

    assert schemas.drift(tmp_path) == [
        "funnel.lead.captured.v1.json",
        "funnel.lead.retired.v1.json",
    ]

"""dbt's own unit tests (the `unit_tests:` of dbt_alphadb), alone: the quick loop's dbt check.

Their models are built first, from an empty raw table (dbt reads the input columns' types from them); the
data tests and the real builds are in tests/test_dbt_*.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from dbt_support import create_raw_table, dbt_settings
from pipelines import transform
from pipelines.database import Connection

pytestmark = pytest.mark.dbt_unit


def test_dbt_unit_tests_pass(database: Connection, tmp_path: Path) -> None:
    settings = dbt_settings(tmp_path / "home")
    create_raw_table(database)
    outcome = transform.run_dbt(settings, database, ["build", "--select", "+test_type:unit", "--exclude", "test_type:data"])
    units = [r for r in outcome.results if "::" in r.name]
    assert outcome.success, [(r.name, r.status, r.message) for r in outcome.results if r.status not in ("success", "pass")]
    assert len(units) >= 5 and {r.status for r in units} == {"pass"}, units

"""Provenance: a database holds the points of one source (ops.data_source). `make demo` keeps to its own
home, database and log; a run from another source stops before writing (exit 2) and
`alphadb reset-source --yes` is the explicit way to switch."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path
from typing import Any, Mapping

import pytest

from cron_support import REPO_ROOT, log_lines
from http_support import FixtureRoute, FixtureServer, data_requests
from postgres_support import dlt_cursors, points, query, user_tables
from process_support import error_lines, output, run_cli
from response_fixtures import FIXTURES, load_fixture

BACKFILL_2023 = ("backfill", "--start", "2023-10-04", "--end", "2023-10-09")


class CoinGeckoStandIn(FixtureServer):
    """The production source in these tests: real CoinGecko responses, and CoinGecko's own /ping answer."""

    def answer(self, path: str, query: Mapping[str, str]) -> tuple[int, Any]:
        if path.rstrip("/").endswith("/ping"):
            return 200, {"gecko_says": "(V3) To the Moon!"}
        return super().answer(path, query)


@pytest.fixture
def coingecko():  # type: ignore[no-untyped-def]
    body = load_fixture(FIXTURES / "bitcoin_7d_hourly_169points.json")
    with CoinGeckoStandIn([FixtureRoute("bitcoin", "usd", body)]) as server:
        server.body = body
        yield server


def production_env(base: Mapping[str, str], coingecko: Any) -> dict[str, str]:  # type: ignore[no-untyped-def]
    return {
        **base,
        "COINGECKO_BASE_URL": coingecko.base_url,
        "COINGECKO_PLAN": "pro",
        "COINGECKO_API_KEY": "CG-production-key",
        "ALPHADB_PAIRS": "BTC/USD=bitcoin:usd",
    }


def recorded_source(database) -> list[tuple[str, str]]:  # type: ignore[no-untyped-def]
    return query(database, "select kind, base_url from ops.data_source")


def only_real_points(database, body) -> None:  # type: ignore[no-untyped-def]
    stored = points(database, "bitcoin")
    real = {int(t): v for t, v in body["prices"]}
    assert stored and all(real.get(ts) == price for ts, price, _, _ in stored), "a point not served by CoinGecko"


def test_another_source_stops_before_writing_and_reset_source_switches(alphadb_env, database, simulator, coingecko) -> None:  # type: ignore[no-untyped-def]
    assert run_cli(alphadb_env, "load", "--pair", "BTC/USDT").returncode == 0
    simulated = points(database, "bitcoin")
    assert simulated and [kind for kind, _ in recorded_source(database)] == ["simulator"]

    production = production_env(alphadb_env, coingecko)
    result = run_cli(production, *BACKFILL_2023)
    assert result.returncode == 2, output(result)
    errors = error_lines(result)
    assert len(errors) == 1, output(result)
    assert f"database {database.dbname} ({database.host}:{database.port}) holds points from the CoinGecko simulator" in errors[0]
    assert f"this run's source is CoinGecko ({coingecko.base_url})" in errors[0]
    assert "own ALPHADB_HOME or POSTGRES_DB" in errors[0] and "`alphadb reset-source --yes`" in errors[0]
    assert points(database, "bitcoin") == simulated  # nothing written
    assert [r.path.split("?")[0] for r in coingecko.received] == ["/api/v3/ping"]  # no data asked for either

    refused = run_cli(production, "reset-source")
    assert refused.returncode == 2 and "--yes" in " ".join(error_lines(refused)) and points(database, "bitcoin") == simulated
    reset = run_cli(production, "reset-source", "--yes")
    assert reset.returncode == 0, output(reset)
    assert f"deleted {len(simulated)} raw point(s)" in output(reset)
    assert points(database, "bitcoin") == [] and recorded_source(database) == [] and dlt_cursors(database) == {}
    assert not (Path(alphadb_env["ALPHADB_HOME"]) / "dlt" / "alphadb_coingecko").exists()

    loaded = run_cli(production, *BACKFILL_2023)
    assert loaded.returncode == 0, output(loaded)
    only_real_points(database, coingecko.body)
    assert recorded_source(database) == [("coingecko", coingecko.base_url)]

    # And the other way round: the nightly job against the simulator now stops, exit 2, nothing fetched.
    simulator.clear_requests()
    before = points(database, "bitcoin")
    nightly = run_cli(alphadb_env, "run")
    assert nightly.returncode == 2, output(nightly)
    assert any("holds points from CoinGecko" in line for line in log_lines(Path(alphadb_env["ALPHADB_LOG_FILE"])))
    assert data_requests(simulator) == [] and points(database, "bitcoin") == before


def _stop_embedded(home: Path) -> None:
    pid_file = home / "pgdata" / "postmaster.pid"
    if not pid_file.exists():
        return
    postmaster = int(pid_file.read_text().split()[0])
    os.kill(postmaster, 2)  # fast shutdown
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and Path(f"/proc/{postmaster}").exists():
        time.sleep(0.1)


def test_demo_then_production_leaves_no_simulated_point_in_production(database, coingecko, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    prod_home, prod_log, demo_home = tmp_path / "prod-home", tmp_path / "prod.log", tmp_path / "demo"
    env_file = tmp_path / "production.env"
    settings = production_env(
        {
            "ALPHADB_HOME": str(prod_home),
            "ALPHADB_LOG_FILE": str(prod_log),
            "POSTGRES_HOST": database.host,
            "POSTGRES_PORT": str(database.port),
            "POSTGRES_USER": database.user,
            "POSTGRES_PASSWORD": database.password,
            "POSTGRES_DB": database.dbname,
        },
        coingecko,
    )
    env_file.write_text("".join(f"{name}={value}\n" for name, value in settings.items()))
    env_file.chmod(0o600)
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "ALPHADB_ENV_FILE": str(env_file)}
    try:
        demo = subprocess.run(
            [str(REPO_ROOT / "scripts" / "demo.sh")], env={**env, "ALPHADB_DEMO_HOME": str(demo_home)},
            cwd=tmp_path, capture_output=True, text=True, timeout=600,
        )
    finally:
        _stop_embedded(demo_home)
    assert demo.returncode == 0, demo.stdout + demo.stderr
    assert any("completed successfully" in line for line in log_lines(demo_home / "alphadb-demo.log"))
    # The production database, home, log and API were not touched.
    assert user_tables(database) == [] and not prod_home.exists() and not prod_log.exists()
    assert coingecko.received == []

    production = run_cli(env, *BACKFILL_2023)
    assert production.returncode == 0, output(production)
    only_real_points(database, coingecko.body)
    assert [kind for kind, _ in recorded_source(database)] == ["coingecko"]

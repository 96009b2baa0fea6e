"""No network: a host that does not resolve, refuses connections or has no route gets one quick retry,
then exit 1 with one line saying so and that `make demo` runs the job offline. Transient errors keep
their retries."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from cron_support import REPO_ROOT, cron_env, log_lines
from http_support import closed_port
from postgres_support import user_tables
from process_support import error_lines, isolated_env, output, run_cli
from pipelines.coingecko.client import CoinGeckoClient
from pipelines.config import Pair, load_settings
from pipelines.source import QUICK_RETRY_S, HostUnreachable

BTC = Pair("BTC/USDT", "bitcoin", "usd")
NO_SUCH_HOST = "alphadb-no-such-host.invalid"  # .invalid never resolves (RFC 6761)


def offline_client(tmp_path: Path, base_url: str, sleeps: list[float]) -> CoinGeckoClient:
    settings = load_settings(isolated_env(tmp_path, base_url, COINGECKO_RETRY_BUDGET_S="900"))
    return CoinGeckoClient(settings, sleep=lambda s: sleeps.append(s) if s > 0.01 else None)


@pytest.mark.parametrize(
    ("host", "reason"),
    [("closed port", "connection refused"), (NO_SUCH_HOST, "its name does not resolve")],
    ids=["refused", "unresolvable"],
)
def test_an_unreachable_host_gets_one_quick_retry(tmp_path: Path, host: str, reason: str) -> None:
    # The closed port is picked now, not at collection: minutes later something may listen on it.
    base_url = f"http://127.0.0.1:{closed_port()}/api/v3" if host == "closed port" else f"http://{host}/api/v3"
    sleeps: list[float] = []
    client = offline_client(tmp_path, base_url, sleeps)
    with pytest.raises(HostUnreachable) as info:
        client.market_chart_range(BTC, 1_700_000_000, 1_700_086_400, "test window")
    assert client.requests_made == 2 and sleeps == [QUICK_RETRY_S]
    message = str(info.value)
    assert "could not be reached" in message and reason in message and "`make demo` runs the job offline" in message
    assert info.value.exit_code == 1
    # Every later request of the run fails at once: 1,000 pairs do not each wait for it again.
    with pytest.raises(HostUnreachable):
        client.market_chart(BTC, 1)
    assert client.requests_made == 2


def test_server_errors_keep_their_retries(tmp_path: Path, simulator) -> None:  # type: ignore[no-untyped-def]
    sleeps: list[float] = []
    client = offline_client(tmp_path, simulator.base_url, sleeps)
    simulator.add_fault({"kind": "server_error", "status": 503, "count": 3})
    body = client.market_chart(BTC, 1)
    assert body["prices"] and client.requests_made == 4 and len(sleeps) == 3


def test_load_offline_exits_1_with_one_line_before_writing(alphadb_env, database) -> None:  # type: ignore[no-untyped-def]
    env = {**alphadb_env, "COINGECKO_BASE_URL": f"http://127.0.0.1:{closed_port()}/api/v3"}
    for command in (["load"], ["backfill", "--days", "2"]):
        result = run_cli(env, *command)
        assert result.returncode == 1, output(result)
        errors = error_lines(result)
        assert len(errors) == 1, output(result)
        assert "could not be reached (connection refused" in errors[0] and "`make demo` runs the job offline" in errors[0]
    assert user_tables(database) == []


def test_make_run_offline_says_what_make_prints(alphadb_env, database, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    env = cron_env(alphadb_env, COINGECKO_BASE_URL=f"http://{NO_SUCH_HOST}/api/v3")
    result = subprocess.run(["make", "-C", str(REPO_ROOT), "run"], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2  # make's own exit status when a recipe fails
    assert "make: *** [Makefile" in result.stderr and "run] Error 1" in result.stderr
    lines = log_lines(Path(env["ALPHADB_LOG_FILE"]))
    failures = [line for line in lines if "❌" in line]
    assert len(failures) == 1 and "could not be reached (its name does not resolve" in failures[0], lines
    assert "`make demo` runs the job offline" in failures[0]
    assert "exit 1" in lines[-1]
    assert not any(t.startswith("staging.") for t in user_tables(database))

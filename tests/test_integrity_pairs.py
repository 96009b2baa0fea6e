"""Unknown coins and removed pairs: a coin CoinGecko does not know fails only its pair (exit 5, named,
with where to fix it); a removed pair's raw points stay until `alphadb purge` deletes them."""

from __future__ import annotations

from pathlib import Path

from cron_support import log_lines
from postgres_support import counts
from process_support import error_lines, output, run_cli
from pipelines.errors import EXIT_CONFIG, EXIT_UNKNOWN_COIN


def test_unknown_coin_fails_its_pair_and_the_nightly_ends_with_exit_5(alphadb_env, database, simulator) -> None:  # type: ignore[no-untyped-def]
    env = {**alphadb_env, "ALPHADB_PAIRS": "XYZ/USDT=notacoin:usd,BTC/USDT=bitcoin:usd"}
    result = run_cli(env, "run", timeout=600)
    assert result.returncode == EXIT_UNKNOWN_COIN, output(result)
    lines = log_lines(Path(env["ALPHADB_LOG_FILE"]))
    unknown = [line for line in lines if "❌" in line and "'notacoin'" in line]
    assert unknown and "XYZ/USDT" in unknown[0] and "ALPHADB_PAIRS" in unknown[0], lines
    assert "dbt run passed" in "\n".join(lines)  # the known pair went on to its candles
    assert f"failed at Backfill (XYZ/USDT) (exit {EXIT_UNKNOWN_COIN})" in lines[-1], lines[-1]
    assert set(counts(database)) == {"bitcoin"}


def test_purge_lists_and_deletes_removed_pairs_only(alphadb_env, database, simulator) -> None:  # type: ignore[no-untyped-def]
    both = {**alphadb_env, "ALPHADB_PAIRS": "BTC/USDT=bitcoin:usd,ETH/USDT=ethereum:usd"}
    assert run_cli(both, "load").returncode == 0
    btc, eth = counts(database)["bitcoin"][0], counts(database)["ethereum"][0]
    assert btc > 0 and eth > 0

    only_btc = {**alphadb_env, "ALPHADB_PAIRS": "BTC/USDT=bitcoin:usd"}
    listed = run_cli(only_btc, "purge")
    assert listed.returncode == 0, output(listed)
    assert f"ethereum:usd: {eth} raw point(s) of a pair no longer configured" in output(listed)
    assert "`alphadb purge ethereum:usd` deletes them" in output(listed)
    assert "bitcoin:usd:" not in output(listed)

    refused = run_cli(only_btc, "purge", "ethereum:usd", "bitcoin:usd")
    assert refused.returncode == EXIT_CONFIG
    assert "bitcoin:usd is still configured (pair BTC/USDT)" in " ".join(error_lines(refused)) and "--force" in output(refused)
    assert "`alphadb backfill --pair BTC/USDT` reloads its history" in output(refused)
    assert counts(database)["ethereum"][0] == eth  # checked before anything was deleted

    purged = run_cli(only_btc, "purge", "ethereum:usd")
    assert purged.returncode == 0 and f"ethereum:usd: deleted {eth} raw point(s)" in output(purged)
    assert set(counts(database)) == {"bitcoin"} and counts(database)["bitcoin"][0] == btc

    forced = run_cli(only_btc, "purge", "bitcoin:usd", "--force")
    assert forced.returncode == 0 and counts(database) == {}
    assert run_cli(only_btc, "purge", "not a series").returncode == EXIT_CONFIG

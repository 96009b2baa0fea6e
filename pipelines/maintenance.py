"""Deleting raw points on purpose, never by accident.

- `alphadb reset-source --yes`: the explicit way out when a database holds another source's
  points. Deletes the raw points, the loader's state (cursors, backfill progress, in PostgreSQL
  and under ALPHADB_HOME) and the recorded source, then rebuilds the candles from nothing, so the
  next run starts afresh from the configured source.
- `alphadb purge [COIN:VS ...]`: a pair removed from the configuration keeps its raw points (its
  candles go with the next run); this lists the stored series no longer configured, and deletes
  the ones named. A series still configured is refused unless `--force`.
"""

from __future__ import annotations

import argparse
import shutil
from typing import Any, Callable

from psycopg2 import sql

from pipelines import runlog
from pipelines.config import Settings
from pipelines.database import Connection, connect
from pipelines.errors import EXIT_FAILURE, ConfigError

AddCommand = Callable[[str, Callable[[Settings, argparse.Namespace], int], str], argparse.ArgumentParser]


def _existing(cur: Any, *names: str) -> list[bool]:
    cur.execute("select " + ", ".join("to_regclass(%s) is not null" for _ in names), names)
    return list(cur.fetchone())


def reset_source(settings: Settings, connection: Connection) -> int:
    """Delete every raw point, the loader's state and the recorded source; return the points deleted."""
    from pipelines.coingecko.settings import RESOURCE_NAME
    from pipelines.load import DATASET, PIPELINE_NAME, load_lock

    with load_lock(settings):  # never under a running load
        with connect(connection) as conn, conn.cursor() as cur:
            points, state, source = _existing(cur, f"{DATASET}.{RESOURCE_NAME}", f"{DATASET}._dlt_pipeline_state", "ops.data_source")
            deleted = 0
            if points:
                cur.execute(sql.SQL("delete from {}").format(sql.Identifier(DATASET, RESOURCE_NAME)))
                deleted = cur.rowcount
            if state:
                cur.execute(
                    sql.SQL("delete from {} where pipeline_name = %s").format(sql.Identifier(DATASET, "_dlt_pipeline_state")),
                    (PIPELINE_NAME,),
                )
            if source:
                cur.execute("delete from ops.data_source")
        shutil.rmtree(settings.home / "dlt" / PIPELINE_NAME, ignore_errors=True)
    return deleted


def cmd_reset_source(settings: Settings, args: argparse.Namespace, connection: Connection) -> int:
    from pipelines import transform
    from pipelines.source import where

    place = where(settings, connection)
    if not args.yes:
        raise ConfigError(
            f"reset-source deletes every raw point and the loader's state of {place}, so that it can take "
            "another source: run it again with --yes to do so"
        )
    deleted = reset_source(settings, connection)
    runlog.line(runlog.OK, f"{place}: deleted {deleted} raw point(s), the loader's state and the recorded source")
    outcome = transform.run_models(settings, connection, full_refresh=True)
    if not outcome.success:
        runlog.line(runlog.ERROR, "rebuilding the candles failed: run `alphadb transform --full-refresh`")
        return EXIT_FAILURE
    runlog.line(runlog.OK, "candles rebuilt from nothing: the next run loads from the configured source")
    return 0


def stored_series(connection: Connection) -> dict[str, int]:
    """`coin_id:vs_currency` -> raw points stored, for every series in the database."""
    from pipelines.coingecko.settings import RESOURCE_NAME
    from pipelines.load import DATASET

    with connect(connection) as conn, conn.cursor() as cur:
        if not _existing(cur, f"{DATASET}.{RESOURCE_NAME}")[0]:
            return {}
        cur.execute(
            sql.SQL("select coin_id || ':' || vs_currency, count(*) from {} group by 1 order by 1").format(
                sql.Identifier(DATASET, RESOURCE_NAME)
            )
        )
        return dict(cur.fetchall())


def _series(value: str) -> tuple[str, str]:
    from pipelines.config import COIN_ID_RE, VS_CURRENCY_RE

    coin_id, _, vs_currency = value.strip().partition(":")
    if not COIN_ID_RE.match(coin_id) or not VS_CURRENCY_RE.match(vs_currency):
        raise ConfigError(f"{value!r} is not a coin series: use coin_id:vs_currency, e.g. bitcoin:usd")
    return coin_id, vs_currency


def purge_series(settings: Settings, connection: Connection, coin_id: str, vs_currency: str) -> int:
    """Delete one series' raw points (under the load lock); return how many."""
    from pipelines.coingecko.settings import RESOURCE_NAME
    from pipelines.load import DATASET, load_lock

    with load_lock(settings), connect(connection) as conn, conn.cursor() as cur:
        cur.execute(
            sql.SQL("delete from {} where coin_id = %s and vs_currency = %s").format(sql.Identifier(DATASET, RESOURCE_NAME)),
            (coin_id, vs_currency),
        )
        return cur.rowcount


def cmd_purge(settings: Settings, args: argparse.Namespace, connection: Connection) -> int:
    configured = {f"{p.coin_id}:{p.vs_currency}": p.name for p in settings.pairs}
    targets = [_series(value) for value in args.series]  # every argument checked before any delete
    for coin_id, vs_currency in targets:
        name = configured.get(f"{coin_id}:{vs_currency}")
        if name and not args.force:
            raise ConfigError(
                f"{coin_id}:{vs_currency} is still configured (pair {name}): remove the pair from the configuration "
                f"first, or add --force to delete its raw points anyway (then `alphadb backfill --pair {name}` reloads its history)"
            )
    stored = stored_series(connection)
    if not targets:
        removed = {series: n for series, n in stored.items() if series not in configured}
        for series, n in removed.items():
            runlog.line(runlog.WARNING, f"{series}: {n} raw point(s) of a pair no longer configured")
        hint = f"`alphadb purge {' '.join(removed)}` deletes them" if removed else "nothing to purge"
        runlog.line(runlog.OK, f"{len(removed)} stored series no longer configured: {hint}")
        return 0
    for coin_id, vs_currency in targets:
        deleted = purge_series(settings, connection, coin_id, vs_currency)
        runlog.line(runlog.OK, f"{coin_id}:{vs_currency}: deleted {deleted} raw point(s)")
    return 0


def add_commands(add: AddCommand, connection: Callable[[Settings], Connection]) -> None:
    """Register the maintenance commands on the `alphadb` parser."""
    p = add(
        "reset-source",
        lambda settings, args: cmd_reset_source(settings, args, connection(settings)),
        "delete this database's raw points, loader state and recorded source (e.g. demo data), rebuild the candles",
    )
    p.add_argument("--yes", action="store_true", help="really delete them")
    p = add(
        "purge",
        lambda settings, args: cmd_purge(settings, args, connection(settings)),
        "delete the raw points of coin series no longer configured (without arguments: list them)",
    )
    p.add_argument("series", nargs="*", metavar="COIN:VS", help="a stored coin series, e.g. bitcoin:usd")
    p.add_argument("--force", action="store_true", help="also delete a series that is still configured")

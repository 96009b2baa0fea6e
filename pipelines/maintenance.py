"""`alphadb reset-source`: the explicit way out when a database holds another source's points.

Deletes the raw points, the loader's state (cursors, backfill progress, in PostgreSQL and under
ALPHADB_HOME) and the recorded source, then rebuilds the candles from nothing, so the next run
starts afresh from the configured source. Nothing is deleted without `--yes`.
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

    with load_lock(settings.home):  # never under a running load
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


def add_commands(add: AddCommand, connection: Callable[[Settings], Connection]) -> None:
    """Register the maintenance commands on the `alphadb` parser."""
    p = add(
        "reset-source",
        lambda settings, args: cmd_reset_source(settings, args, connection(settings)),
        "delete this database's raw points, loader state and recorded source (e.g. demo data), rebuild the candles",
    )
    p.add_argument("--yes", action="store_true", help="really delete them")

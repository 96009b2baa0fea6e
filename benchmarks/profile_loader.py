"""Where the loader's time goes: `python -m benchmarks.profile_loader [PAIRS HOURS] [--cprofile]`.

Runs `load_range` in-process against the replaying simulator on a throwaway database and
prints dlt's step times (extract / normalize / load), the time of every SQL statement kind dlt
sends (COPY into the staging dataset, the merge's DELETE and INSERT, state and schema
bookkeeping) and, with --cprofile, the top Python functions by cumulative time.
"""

from __future__ import annotations

import collections
import cProfile
import pstats
import re
import sys
import time
from datetime import timedelta
from typing import Any

import psycopg2
import psycopg2.extensions

from benchmarks.harness import Postgres, bench_env, bench_pairs, scratch_dir, settings_for
from benchmarks.loadbench import RANGE_START, fetch_all, replay_server

SQL_TIMES: collections.Counter[str] = collections.Counter()
SQL_COUNTS: collections.Counter[str] = collections.Counter()


def _kind(statement: Any) -> str:
    text = statement.decode() if isinstance(statement, bytes) else str(statement)
    text = " ".join(text.split())[:90]
    return re.sub(r"'[^']*'", "'…'", re.sub(r"\d+", "N", text))


class _TimedCursor(psycopg2.extensions.cursor):
    def execute(self, query: Any, vars: Any = None) -> Any:  # noqa: A002 - psycopg2's name
        started = time.perf_counter()
        try:
            return super().execute(query, vars)
        finally:
            kind = _kind(query)
            SQL_TIMES[kind] += time.perf_counter() - started
            SQL_COUNTS[kind] += 1

    def copy_expert(self, sql: Any, file: Any, size: int = 8192) -> Any:
        started = time.perf_counter()
        try:
            return super().copy_expert(sql, file, size)
        finally:
            kind = _kind(sql)
            SQL_TIMES[kind] += time.perf_counter() - started
            SQL_COUNTS[kind] += 1


class _TimedConnection(psycopg2.extensions.connection):
    def cursor(self, *args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("cursor_factory", _TimedCursor)
        return super().cursor(*args, **kwargs)


def main(argv: list[str]) -> int:
    use_cprofile = "--cprofile" in argv
    numbers = [int(a) for a in argv if a.isdigit()]
    pairs, hours = (numbers + [40, 25000])[:2] if len(numbers) < 2 else numbers[:2]
    import pipelines.load as load

    real_connect = psycopg2.connect

    def timed_connect(*args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("connection_factory", _TimedConnection)
        return real_connect(*args, **kwargs)

    psycopg2.connect = timed_connect  # dlt looks it up at call time

    steps: collections.Counter[str] = collections.Counter()
    original_run = load._run

    def timed_run(pipeline: Any, *args: Any, **kwargs: Any) -> Any:
        result = original_run(pipeline, *args, **kwargs)
        if pipeline.last_trace:
            for step in pipeline.last_trace.steps:
                steps[step.step] += (step.finished_at - step.started_at).total_seconds()
        return result

    load._run = timed_run
    pg = Postgres()
    try:
        with replay_server(coins=pairs) as base_url, scratch_dir("alphadb-profile-") as home:
            connection = pg.new_database("profile")
            env = bench_env(connection, base_url, bench_pairs(pairs), home)
            end = RANGE_START + timedelta(hours=hours)
            fetch_all(env, RANGE_START, end)
            settings = settings_for(env)
            for label in ("first load", "re-load"):
                steps.clear()
                SQL_TIMES.clear()
                SQL_COUNTS.clear()
                profiler = cProfile.Profile() if use_cprofile else None
                started = time.perf_counter()
                if profiler:
                    profiler.enable()
                report = load.load_range(settings, connection, RANGE_START, end)
                if profiler:
                    profiler.disable()
                elapsed = time.perf_counter() - started
                print(f"\n== {label}: {report.points} points, {report.requests} requests, {elapsed:.2f} s, {report.points / elapsed:,.0f} points/s")
                print("dlt steps: " + ", ".join(f"{k} {v:.2f} s" for k, v in steps.items()))
                print("SQL (dlt's connection), by statement kind:")
                for kind, seconds in SQL_TIMES.most_common(12):
                    print(f"  {seconds:7.2f} s  x{SQL_COUNTS[kind]:<4d} {kind}")
                if profiler:
                    pstats.Stats(profiler).sort_stats("cumulative").print_stats(45)
    finally:
        pg.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

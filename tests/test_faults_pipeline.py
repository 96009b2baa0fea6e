"""Fault injection across the whole nightly job (`scripts/run_elt.sh` → load → dbt): the database
restarting in the middle of a run, dbt killed while it builds, and the session time zone on both
2026 US daylight-saving changes.

The run tests share one PostgreSQL server the module owns (`postgres_support.OwnServer`), populated by
one successful `run_elt.sh` against the simulator; each test leaves it after a successful run, so
the next one starts from a healthy, complete state. Marts are views over the incremental
`int_candles_*` tables, so "the marts" below are read through the views. Every test records what it
measured in docs/reliability.json (`reliability_support.record`).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Iterator

import psycopg2
import pytest
from psycopg2 import sql

from candle_reference import reference_candles
from cron_support import RUN_ELT, assert_log_format, cron_env, log_lines, run_script
from postgres_support import OwnServer, duplicates, query
from process_support import wait_for
from reliability_support import record

from pipelines.candles import CANDLE_COLUMN_LIST
from pipelines.database import Connection

pytestmark = [
    pytest.mark.slow,
    pytest.mark.faults,
    pytest.mark.skipif(
        not (Path(__file__).resolve().parent.parent / ".venv" / "bin" / "alphadb").exists(),
        reason="needs the project installed in .venv (make test does it)",
    ),
]

UTC = timezone.utc
HOUR_MS, DAY_MS = 3_600_000, 86_400_000
PAIRS = {"BTC/USDT": "bitcoin", "ETH/USDT": "ethereum"}
MARTS = {f"ohlcv_{p.replace('/', '_').lower()}{s}": (p, s or "_1h") for p in PAIRS for s in ("", "_1d")}
CANDLES = CANDLE_COLUMN_LIST
ROLE, PASSWORD, DBNAME = "trader", "r3start-t3st-pw", "market"


# --- the module's own server and a populated database --------------------------------------

class Stack:
    """The module's PostgreSQL server, the simulator, and the run environment pointing at both."""

    def __init__(self, root: Path, server: OwnServer, simulator: Any) -> None:
        self.root = root
        self.server = server
        self.simulator = simulator
        self.connection = Connection(server.socket_dir, server.port, ROLE, PASSWORD, DBNAME)
        self.admin = Connection(server.socket_dir, server.port, "postgres", "", "postgres")
        self.log = root / "alphadb.log"
        self.workdir = root / "elsewhere"
        self.workdir.mkdir(exist_ok=True)
        self.env = cron_env(
            {
                "HOME": str(root),
                "ALPHADB_ENV_FILE": str(root / "no.env"),
                "ALPHADB_HOME": str(root / "home"),
                "ALPHADB_LOG_FILE": str(self.log),
                "COINGECKO_BASE_URL": simulator.base_url,
                "COINGECKO_RATE_LIMIT_PER_MIN": "6000",
                "COINGECKO_MAX_RETRY_AFTER_S": "5",
                "COINGECKO_RETRY_BUDGET_S": "20",
                "POSTGRES_HOST": self.connection.host,
                "POSTGRES_PORT": str(self.connection.port),
                "POSTGRES_USER": ROLE,
                "POSTGRES_PASSWORD": PASSWORD,
                "POSTGRES_DB": DBNAME,
            }
        )

    def run(self, timeout: float = 300) -> tuple[int, str, list[str]]:
        """One `run_elt.sh` the way cron runs it; (exit code, stdout+stderr, this run's log lines)."""
        before = len(log_lines(self.log))
        result = run_script(RUN_ELT, self.env, self.workdir, timeout=timeout)
        return result.returncode, result.stdout + result.stderr, log_lines(self.log)[before:]

    def start(self) -> subprocess.Popen[str]:
        """`run_elt.sh` in the background (its own process group, so a test can find its children)."""
        return subprocess.Popen(
            [str(RUN_ELT)], env=dict(self.env), cwd=self.workdir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True, start_new_session=True,
        )


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    from pipelines.simulator import Simulator

    # Not under pytest's basetemp (a concurrent session prunes it); a short path for the socket.
    root = Path(tempfile.mkdtemp(prefix="alphadb-restart-"))
    server = OwnServer(root / "pgdata")
    admin = psycopg2.connect(server.uri())
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(sql.SQL("create role {} login password %s").format(sql.Identifier(ROLE)), (PASSWORD,))
        cur.execute(sql.SQL("create database {} owner {}").format(sql.Identifier(DBNAME), sql.Identifier(ROLE)))
    admin.close()
    sim = Simulator()
    sim.start()
    try:
        s = Stack(root, server, sim)
        code, out, lines = s.run()
        assert code == 0, out
        yield s
    finally:
        sim.stop()
        server.cleanup()
        shutil.rmtree(root, ignore_errors=True)


# --- reading the database ------------------------------------------------------------------

def marts(connection: Connection) -> dict[str, list[tuple[Any, ...]]]:
    return {name: query(connection, f"select {CANDLES} from public.{name} order by ts") for name in MARTS}


def expected_marts(connection: Connection) -> dict[str, list[tuple[Any, ...]]]:
    """What a complete build of the raw points stored now gives (docs/design.md, the Python reference)."""
    now_ms = int(time.time() * 1000)
    out = {}
    for name, (pair, timeframe) in MARTS.items():
        points = query(
            connection,
            "select (extract(epoch from ts) * 1000)::bigint, price, market_cap, total_volume"
            " from staging.market_chart_points where coin_id = %s and vs_currency = 'usd' and price is not null"
            " order by ts",
            (PAIRS[pair],),
        )
        rows = reference_candles([(int(t), p, m, v) for t, p, m, v in points], DAY_MS if timeframe == "_1d" else HOUR_MS, now_ms)
        out[name] = [(datetime.fromtimestamp(r[0] / 1000, UTC), *r[1:]) for r in rows]
    return out


def same(actual: list[tuple[Any, ...]], expected: list[tuple[Any, ...]]) -> bool:
    return len(actual) == len(expected) and all(
        a[0] == e[0] and a[7:] == e[7:] and all(float(x) == float(y) for x, y in zip(a[1:7], e[1:7]))
        for a, e in zip(actual, expected)
    )


def holes_and_duplicates(rows: list[tuple[Any, ...]], step: timedelta) -> tuple[int, int]:
    ts = [r[0] for r in rows]
    dups = len(ts) - len(set(ts))
    holes = sum(1 for a, b in zip(ts, ts[1:]) if b - a != step)
    return holes, dups


def summary(state: dict[str, list[tuple[Any, ...]]]) -> dict[str, tuple[int, Any]]:
    return {name: (len(rows), rows[-1][0] if rows else None) for name, rows in state.items()}


# --- watching a run -------------------------------------------------------------------------

def dbt_writing(stack: Stack) -> Any:
    """A predicate: truthy (what it saw) while a dbt session holds a write transaction (a model mid-build)."""
    def check() -> Any:
        try:
            rows = query(
                stack.admin,
                "select state, query from pg_stat_activity where application_name = 'alphadb-dbt'"
                " and backend_xid is not null and query like '%int_candles_1_%'",
            )
        except psycopg2.Error:
            return None
        if not rows:
            return None
        state, running = rows[0]
        model = re.search(r"int_candles_1[hd]", running)
        statement = " ".join(re.sub(r"^\s*/\*.*?\*/", "", running, flags=re.S).split()[:3])
        return f"dbt held the write transaction of {model and model.group(0)} ({state}, last statement `{statement} ...`)"

    return check


def wait_until(proc: subprocess.Popen[str], predicate: Any, timeout: float = 120, interval: float = 0.003) -> Any:
    """Poll `predicate` until truthy (returns it) or the process exits (None)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        hit = predicate()
        if hit:
            return hit
        if proc.poll() is not None:
            return None
        time.sleep(interval)
    raise TimeoutError("the phase to interrupt never came")


def finish(proc: subprocess.Popen[str], timeout: float = 180) -> tuple[int, str]:
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        raise
    return proc.returncode, out


def assert_clean_failure(code: int, out: str, lines: list[str], stack: Stack) -> str:
    """Exit 1 or 3, a ❌ line saying why, the log format, no traceback and no password anywhere."""
    assert code in (1, 3), out
    assert_log_format(lines)
    text = "\n".join(lines)
    assert "Traceback" not in out + text, out
    assert PASSWORD not in out + text
    dbt_logs = Path(stack.env["ALPHADB_HOME"]) / "dbt"
    for path in dbt_logs.rglob("*.log"):
        assert PASSWORD not in path.read_text(errors="replace"), path
    assert f"(exit {code})" in lines[-1], text
    errors = [line.split("❌ ", 1)[1] for line in lines if "❌" in line]
    assert errors, text
    return errors[0]


def check_marts_whole(stack: Stack, before: dict[str, list[tuple[Any, ...]]]) -> dict[str, str]:
    """Each mart is either exactly as before the run or exactly a complete build of the raw points now."""
    after, expected = marts(stack.connection), expected_marts(stack.connection)
    states = {}
    for name in MARTS:
        if after[name] == before[name]:
            states[name] = "previous"
        elif same(after[name], expected[name]):
            states[name] = "new, complete"
        else:
            states[name] = "HALF-WRITTEN"
    assert "HALF-WRITTEN" not in states.values(), states
    return states


def check_healthy(stack: Stack) -> dict[str, Any]:
    """After a successful run: marts = a complete build of the raw points, no duplicate, hole or gap."""
    got, expected = marts(stack.connection), expected_marts(stack.connection)
    for name, (pair, timeframe) in MARTS.items():
        assert same(got[name], expected[name]), name
        holes, dups = holes_and_duplicates(got[name], timedelta(days=1) if timeframe == "_1d" else timedelta(hours=1))
        assert (holes, dups) == (0, 0), name
    assert query(stack.connection, "select count(*) from public.gaps") == [(0,)]
    assert duplicates(stack.connection) == 0
    return {name: len(rows) for name, rows in got.items()}


def staging_key_set(stack: Stack) -> set[tuple[str, int]]:
    rows = query(stack.connection, "select coin_id, (extract(epoch from ts) * 1000)::bigint from staging.market_chart_points")
    return {(c, int(t)) for c, t in rows}


# --- 2. the database restarts during a run -------------------------------------------------------

def test_database_stops_during_dbt_run_and_during_load(stack: Stack) -> None:
    outcomes = []
    keys_before = staging_key_set(stack)

    # a) PostgreSQL stops (immediate shutdown: a crash) while dbt writes a model.
    before = marts(stack.connection)
    log_start = len(log_lines(stack.log))
    hit = None
    for attempt in range(3):  # a model's transaction lasts tens of ms: retry if the run got past dbt
        proc = stack.start()
        hit = wait_until(proc, dbt_writing(stack))
        if hit:
            stack.server.stop_fast()
            break
        assert finish(proc)[0] == 0
        before, log_start = marts(stack.connection), len(log_lines(stack.log))
    assert hit, "never caught dbt mid-build"
    try:
        code, out = finish(proc)
    finally:
        stack.server.start()
    lines = log_lines(stack.log)[log_start:]
    message = assert_clean_failure(code, out, lines, stack)
    assert "dbt run failed" in message, message
    cause = next(line.split("❌ ", 1)[1] for line in lines if "❌" in line and ("server" in line or "connection" in line))
    states = check_marts_whole(stack, before)
    outcomes.append(f"(a) PG stopped while {hit}: exit {code}, `{message[:60]}` ... `{cause[:90]}`; marts {states}")

    # b) PostgreSQL stops while the load waits on a slow API response, and stays down until the run exits.
    stack.simulator.clear_requests()
    # 6 s: the server's fast shutdown must end while the loader still waits, even on a busy machine
    stack.simulator.add_fault({"kind": "slow", "delay_s": 6, "count": 1})
    before = marts(stack.connection)
    log_start = len(log_lines(stack.log))
    proc = stack.start()
    try:
        # The simulator takes the fault off its list when the request arrives: from then on the
        # loader is in extract (after its state sync with PostgreSQL), waiting 6 s for the answer.
        assert wait_for(lambda: not stack.simulator.faults, timeout=60, interval=0.01)
        time.sleep(0.2)
        assert proc.poll() is None
        stack.server.stop_fast()
        code, out = finish(proc)
    finally:
        stack.simulator.clear_faults()
        stack.server.start()
    lines = log_lines(stack.log)[log_start:]
    fetched = len([r for r in stack.simulator.requests if "/market_chart" in r["path"] and r["status"] == 200])
    message = assert_clean_failure(code, out, lines, stack)
    assert code == 3 and "Database not accessible" in message and "pending load package" in message, message
    assert not any("dlt pipeline" in line for line in lines), lines  # no advice to abort the package by hand
    assert sum("Database not accessible" in line for line in lines) == 1, lines  # said once
    states = check_marts_whole(stack, before)
    assert set(states.values()) == {"previous"}, states  # dbt never ran
    outcomes.append(f"(b) PG stopped during extract ({fetched} responses fetched while it was down): exit {code}, "
                    f"`{message[:140]}`; marts untouched")

    # c) the next run, PostgreSQL up again: completes, nothing lost, no duplicate, no gap.
    code, out, lines = stack.run()
    assert code == 0, out
    assert any("finishing its pending load packages" in line for line in lines), lines  # (b)'s package
    rows = check_healthy(stack)
    lost = len(keys_before - staging_key_set(stack))
    assert lost == 0
    record(
        "PostgreSQL restart during a nightly run",
        "`pg_ctl stop -m immediate` (a crash) of the run's server (a) while a dbt session holds a model's write "
        "transaction, (b) while the load waits on a slow API response, restarted after the run exited; then `run_elt.sh`",
        runs_survived=2,
        points_lost=lost,
        duplicates=0,
        outcome="; ".join(outcomes) + f"; next run exit 0, marts = a complete build of the raw points ({rows}), 0 gaps",
    )


# --- dbt killed while it builds ---------------------------------------------------------------

def dbt_processes(pgid: int) -> list[int]:
    """PIDs of `dbt run` processes in the job's process group."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if os.getpgid(int(entry.name)) != pgid:
                continue
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except (OSError, ProcessLookupError):
            continue
        if any(a.endswith(b"/dbt") for a in argv) and b"run" in argv:
            pids.append(int(entry.name))
    return pids


def test_sigkill_dbt_while_it_builds(stack: Stack) -> None:
    from process_support import output, run_cli

    hit = None
    for attempt in range(3):
        before = marts(stack.connection)
        log_start = len(log_lines(stack.log))
        proc = stack.start()
        hit = wait_until(proc, dbt_writing(stack))
        if hit:
            pids = dbt_processes(proc.pid)
            assert pids, "dbt run is not a child of the job"
            for pid in pids:
                os.kill(pid, signal.SIGKILL)
            break
        assert finish(proc)[0] == 0
    assert hit, "never caught dbt mid-build"
    failed_code, out = finish(proc)
    lines = log_lines(stack.log)[log_start:]
    message = assert_clean_failure(failed_code, out, lines, stack)
    assert failed_code == 1 and "dbt run was killed by SIGKILL" in message, message
    states = check_marts_whole(stack, before)
    # The killed session's transaction is rolled back: no dbt session is left holding locks.
    assert wait_for(lambda: not query(stack.admin, "select pid from pg_stat_activity where application_name = 'alphadb-dbt'"), 30)

    # The next run, started twice at the same instant (two cron entries, a manual start beside cron):
    # exactly one takes the run lock and completes, the other exits 75 doing nothing.
    both = [stack.start(), stack.start()]
    results = sorted((finish(p) for p in both), key=lambda r: r[0])
    assert [c for c, _ in results] == [0, 75], results
    assert "Another run is in progress" in results[1][1], results[1][1]
    rows = check_healthy(stack)
    incremental = marts(stack.connection)
    refreshed = run_cli(stack.env, "transform", "--full-refresh")
    assert refreshed.returncode == 0, output(refreshed)
    assert marts(stack.connection) == incremental  # the recovered incremental build = a fresh full build
    record(
        "SIGKILL dbt during dbt run",
        f"`run_elt.sh` started; SIGKILL to its `dbt run` child while {hit}",
        runs_survived=1,
        points_lost=0,
        duplicates=0,
        outcome=f"exit {failed_code}: `{message[:70]}...`; marts {states} (model transactions rolled back); next run exit 0, "
        f"marts = a complete build of the raw points ({rows}) and equal row by row to `alphadb transform --full-refresh`; "
        "that next run was started twice at once: one exit 0, the other exit 75 (`Another run is in progress`)",
    )


# --- DST in the session time zone ----------------------------------------------------------------

LOS_ANGELES = "America/Los_Angeles"


def _dst_points() -> list[Any]:
    """15-minute points over 3 UTC days around each 2026 US change, plus points on the edges that
    matter: UTC and Los Angeles midnights, the change instants, both 01:30s of the repeated hour."""
    from dbt_support import hourly_points

    edges = {
        "BTC/USDT": ["2026-03-08T00:00:00", "2026-03-08T08:00:00", "2026-03-08T09:59:59.999", "2026-03-08T10:00:00",
                     "2026-03-08T23:59:59.999", "2026-03-09T07:00:00"],
        "ETH/USDT": ["2026-11-01T00:00:00", "2026-11-01T07:00:00", "2026-11-01T08:30:00", "2026-11-01T09:00:00",
                     "2026-11-01T09:30:00", "2026-11-01T23:59:59.999", "2026-11-02T08:00:00"],
    }
    points = hourly_points("BTC/USDT", datetime(2026, 3, 7, tzinfo=UTC), 72, per_hour=4) + hourly_points(
        "ETH/USDT", datetime(2026, 10, 31, tzinfo=UTC), 72, per_hour=4, base=10.0
    )
    for pair, instants in edges.items():
        for i, text in enumerate(instants):
            price = 500.0 + i
            points.append((pair, datetime.fromisoformat(text).replace(tzinfo=UTC), price, price * 1e6, 7.0 + i))
    by_key = {(p[0], p[1]): p for p in points}
    return sorted(by_key.values(), key=lambda p: (p[0], p[1]))


def test_dst_session_time_zone_gives_the_same_candles(database: Connection, tmp_path: Path, pg_admin_uri: str) -> None:
    from dbt_support import dbt_settings, marts as all_marts, upsert_points

    from pipelines import transform

    settings = dbt_settings(tmp_path / "home")
    points = _dst_points()
    # The role's default time zone in this database is Los Angeles (ALTER ROLE ... IN DATABASE), and
    # dbt's own session asks for it too (PGTZ): the models see a session in Los Angeles.
    admin = psycopg2.connect(pg_admin_uri)
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(
            sql.SQL("alter role {} in database {} set timezone = %s").format(
                sql.Identifier(database.user), sql.Identifier(database.dbname)
            ),
            (LOS_ANGELES,),
        )
    admin.close()
    plain = psycopg2.connect(host=database.host, port=database.port, user=database.user, password=database.password,
                             dbname=database.dbname)
    with plain.cursor() as cur:
        cur.execute("show timezone")
        assert cur.fetchone()[0] == LOS_ANGELES
    plain.close()
    in_la = {"PGTZ": LOS_ANGELES}
    shown = transform.run_dbt(settings, database, ["show", "--inline", "select current_setting('TimeZone') as tz"],
                              extra_env=in_la)
    assert shown.success and LOS_ANGELES in (settings.home / "dbt" / "last_output.log").read_text()

    # In Los Angeles: the first half of each series, a build, the rest, an incremental build.
    half = {"BTC/USDT": datetime(2026, 3, 8, 12, tzinfo=UTC), "ETH/USDT": datetime(2026, 11, 1, 12, tzinfo=UTC)}
    upsert_points(database, [p for p in points if p[1] < half[p[0]]])
    first = transform.run_dbt(settings, database, ["run"], extra_env=in_la)
    assert first.success, [(r.name, r.message) for r in first.failed]
    upsert_points(database, [p for p in points if p[1] >= half[p[0]]])
    second = transform.run_dbt(settings, database, ["run"], extra_env=in_la)
    assert second.success, [(r.name, r.message) for r in second.failed]
    built_in_la = all_marts(database, list(PAIRS))

    # In UTC (what the nightly job's sessions use): a full refresh.
    refreshed = transform.run_models(settings, database, full_refresh=True)
    assert refreshed.success, [(r.name, r.message) for r in refreshed.failed]
    built_in_utc = all_marts(database, list(PAIRS))
    differing = [name for name in built_in_utc if built_in_la[name] != built_in_utc[name]]
    assert not differing, differing

    now_ms = int(time.time() * 1000)
    for pair in PAIRS:
        mine = [(int(p[1].timestamp() * 1000), p[2], p[3], p[4]) for p in points if p[0] == pair]
        hourly = built_in_utc[f"ohlcv_{pair.replace('/', '_').lower()}"]
        daily = built_in_utc[f"ohlcv_{pair.replace('/', '_').lower()}_1d"]
        for rows, width in ((hourly, HOUR_MS), (daily, DAY_MS)):
            expected = [(datetime.fromtimestamp(r[0] / 1000, UTC), *r[1:]) for r in reference_candles(mine, width, now_ms)]
            assert same(rows, expected), (pair, width)
        per_day: dict[Any, list[Any]] = {}
        for row in hourly:
            assert (row[0].minute, row[0].second, row[0].microsecond) == (0, 0, 0)
            per_day.setdefault(row[0].astimezone(UTC).date(), []).append(row)
        assert {day: len(rows) for day, rows in per_day.items()} == {day: 24 for day in per_day}, pair  # no 23/25-h day
        assert len(per_day) == 3 and all(r[7] > 0 for r in hourly), pair  # every hour sampled: nothing filled
        assert [d[0].astimezone(UTC).timetuple()[3:6] for d in daily] == [(0, 0, 0)] * 3, pair  # 00:00 UTC
        assert [d[0].astimezone(UTC).date() for d in daily] == sorted(per_day), pair
        assert [d[7] for d in daily] == [sum(r[7] for r in per_day[d[0].astimezone(UTC).date()]) for d in daily], pair
    record(
        "DST in the session time zone (2026-03-08, 2026-11-01)",
        "raw points (15-min, plus UTC/LA midnights, the change instants, both 01:30s of the repeated hour) over 3 UTC "
        "days around each 2026 US change; candles built in a session in America/Los_Angeles (ALTER ROLE ... IN DATABASE "
        "SET timezone, PGTZ for dbt), half then incrementally, and again with a UTC full refresh",
        runs_survived=3,
        points_lost=0,
        duplicates=0,
        outcome=f"1h, 1d, ohlcv and gaps identical row by row ({sum(len(v) for v in built_in_utc.values())} rows) "
        "and equal to the Python reference; every UTC day has 24 hourly candles (no 23/25-hour day); daily buckets "
        "start at 00:00 UTC and hold exactly that UTC day's points",
    )

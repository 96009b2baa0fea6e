"""Fast tests of the nightly job's parts: alerts and pings over real loopback HTTP, the lock, the
quality report on a real PostgreSQL, heal planning, and the orchestration's exit codes with fake
collaborators handed to the job (the real end-to-end runs are in test_run_elt.py)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Sequence

import psycopg2.extensions
import pytest
from psycopg2 import sql

from cron_support import LOG_LINE, REPO_ROOT, assert_log_format, log_lines
from http_support import WebhookReceiver

from pipelines import alerts, heal, nightly, report, runlog
from pipelines.candles import CANDLE_COLUMNS
from pipelines.config import Pair, Settings, load_settings
from pipelines.database import Connection, connect
from pipelines.errors import AlphaDBError, ConfigError, DatabaseUnavailable, LockHeld
from pipelines.load import LoadReport, PairResult
from pipelines.locks import exclusive_lock
from pipelines.transform import DbtOutcome, Gap, NodeResult, TestsScope

BTC = Pair("BTC/USDT", "bitcoin", "usd")
ETH = Pair("ETH/USDT", "ethereum", "usd")
SECRETS = {"key": "CG-secret-api-key-123", "password": "pg-s3cret-password", "hook": "/services/T000/B000/XXXXSECRET"}


def make_settings(tmp_path: Path, **env: str) -> Settings:
    base = {
        "ALPHADB_ENV_FILE": str(tmp_path / "no.env"),
        "ALPHADB_HOME": str(tmp_path / "home"),
        "ALPHADB_LOG_FILE": str(tmp_path / "run.log"),
        "POSTGRES_HOST": "127.0.0.1",
        "POSTGRES_PASSWORD": SECRETS["password"],
        "ALPHADB_PAIRS": "BTC/USDT=bitcoin:usd,ETH/USDT=ethereum:usd",
    }
    base.update(env)
    return load_settings(base)


@pytest.fixture(autouse=True)
def _reset_logging():  # type: ignore[no-untyped-def]
    yield
    runlog.setup(None, stream=False)
    runlog._secrets.clear()


# -- alerts ------------------------------------------------------------------------------------

def test_failure_text_has_host_step_code_and_tail_without_secrets(tmp_path: Path) -> None:
    runlog.register_secrets(SECRETS.values())
    tail = [f"[2025-06-13 02:00:0{i}] 📊 line {i}" for i in range(5)] + [f"❌ boom with {SECRETS['key']}"]
    text = alerts.failure_text("Backfill", 1, [f"ETH/USDT failed: password {SECRETS['password']}"], tail, host="db-host-1")
    assert "db-host-1" in text and "*Failed step:* Backfill" in text and "*Exit code:* 1" in text
    assert "line 4" in text and "ETH/USDT failed" in text
    assert not [s for s in SECRETS.values() if s in text]


def test_failure_text_keeps_the_end_of_a_long_log() -> None:
    tail = [f"line {i} " + "x" * 300 for i in range(20)]
    text = alerts.failure_text("dbt run", 1, [], tail, host="h")
    assert len(text) <= alerts.MAX_TEXT_CHARS
    assert "line 19" in text and "line 0 " not in text


def test_tail_log(tmp_path: Path) -> None:
    log = tmp_path / "x.log"
    log.write_text("".join(f"l{i}\n" for i in range(50)))
    assert alerts.tail_log(log, 3) == ["l47", "l48", "l49"]
    assert alerts.tail_log(tmp_path / "missing.log") == []


def test_slack_alert_delivered_with_no_secret_and_url_never_logged(tmp_path: Path, receiver: WebhookReceiver) -> None:
    hook = receiver.url(SECRETS["hook"])
    settings = make_settings(tmp_path, SLACK_WEBHOOK_URL=hook, COINGECKO_API_KEY=SECRETS["key"], COINGECKO_PLAN="demo")
    runlog.setup(settings.log_file, stream=False)
    runlog.register_secrets(settings.secrets())
    runlog.line(runlog.ERROR, f"something failed for key {SECRETS['key']}")
    alerts.notify_failure(settings, "Backfill (ETH/USDT)", 2, ["ETH/USDT: coin not found"])
    [post] = receiver.posts(SECRETS["hook"])
    text = post.json()["text"]
    assert post.headers["Content-Type"] == "application/json"
    assert "Backfill (ETH/USDT)" in text and "*Exit code:* 2" in text and "coin not found" in text
    assert "something failed for key ***" in text
    assert not [s for s in SECRETS.values() if s in text]
    log = settings.log_file.read_text()
    assert "Slack alert sent" in log
    assert SECRETS["hook"] not in log and str(receiver.url()) not in log


def test_undeliverable_alerts_are_warnings(tmp_path: Path, receiver: WebhookReceiver) -> None:
    receiver.status = 500
    settings = make_settings(tmp_path, SLACK_WEBHOOK_URL=receiver.url(SECRETS["hook"]), ALPHADB_HEALTHCHECK_URL=receiver.url("/ping/abc"))
    runlog.setup(settings.log_file, stream=False)
    assert alerts.send_slack(settings, "hello") is False
    assert alerts.ping(settings, "fail", "body") is False
    # A closed port: connection refused, reported without the URL.
    closed = make_settings(tmp_path, SLACK_WEBHOOK_URL=f"http://127.0.0.1:9{SECRETS['hook']}")
    assert alerts.send_slack(closed, "hello", timeout=2) is False
    lines = log_lines(settings.log_file)
    assert_log_format(lines)
    assert "⚠️ Slack alert could not be delivered (HTTP 500)" in lines[0]
    assert "⚠️ Healthcheck fail ping could not be delivered (HTTP 500)" in lines[1]
    assert "Slack alert could not be delivered (connection failed)" in lines[2]
    assert SECRETS["hook"] not in "\n".join(lines)


def test_healthcheck_ping_paths(tmp_path: Path, receiver: WebhookReceiver) -> None:
    settings = make_settings(tmp_path, ALPHADB_HEALTHCHECK_URL=receiver.url("/ping/uuid-1/"))
    for kind in ("start", "success", "fail"):
        assert alerts.ping(settings, kind, f"{kind} body")
    assert [r.path for r in receiver.received] == ["/ping/uuid-1/start", "/ping/uuid-1", "/ping/uuid-1/fail"]
    assert receiver.received[2].body == b"fail body"
    with pytest.raises(ValueError):
        alerts.ping(settings, "bogus")


def test_nothing_sent_when_not_configured(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    assert alerts.send_slack(settings, "x") is False
    assert alerts.ping(settings, "start") is False
    alerts.notify_failure(settings, "x", 1)


# -- the run lock ------------------------------------------------------------------------------

def test_run_lock_is_exclusive_and_names_the_holder(tmp_path: Path) -> None:
    path = tmp_path / "home" / "run.lock"
    with exclusive_lock(path, "run"):
        assert path.read_text().strip() == str(os.getpid())
        with pytest.raises(LockHeld, match=rf"Another run is in progress \(PID {os.getpid()}.*nothing done"):
            with exclusive_lock(path, "run"):
                pass
    with exclusive_lock(path, "run"):  # released
        pass


def test_run_lock_dies_with_its_process(tmp_path: Path) -> None:
    path = tmp_path / "run.lock"
    code = (
        "import sys, time; sys.path.insert(0, sys.argv[2]); from pathlib import Path; from pipelines.locks import exclusive_lock\n"
        "with exclusive_lock(Path(sys.argv[1]), 'run'):\n    print('locked', flush=True); time.sleep(60)\n"
    )
    holder = subprocess.Popen([sys.executable, "-c", code, str(path), str(REPO_ROOT)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        with pytest.raises(LockHeld, match=f"PID {holder.pid}"):
            with exclusive_lock(path, "run"):
                pass
        holder.send_signal(signal.SIGKILL)  # a crash: no cleanup code runs
        holder.wait(10)
        with exclusive_lock(path, "run"):
            pass
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()


def test_a_load_waits_for_the_lock_then_gives_up(tmp_path: Path) -> None:
    """The same lock with a wait (the load lock): said once, then LockHeld naming the holder."""
    log = tmp_path / "run.log"
    runlog.setup(log, stream=False)
    path = tmp_path / "load.lock"
    with exclusive_lock(path, "load"):
        started = time.monotonic()
        with pytest.raises(LockHeld, match=rf"Another load is in progress \(PID {os.getpid()}, lock {path}\) and still was after 0.6s"):
            with exclusive_lock(path, "load", wait_s=0.6):
                pass
        assert time.monotonic() - started >= 0.6
    lines = log_lines(log)
    assert len(lines) == 1 and "⚠️ another load is running; waiting for it to finish" in lines[0]


# -- the quality report on a real PostgreSQL ----------------------------------------------------

def _make_mart(conn: psycopg2.extensions.connection, name: str, start: datetime, step: timedelta, n: int, unsampled: set[int]) -> None:
    columns = sql.SQL(", ").join(sql.SQL(f"{c.name} {c.data_type}") for c in CANDLE_COLUMNS)
    with conn.cursor() as cur:
        cur.execute(sql.SQL("create table {} ({})").format(sql.Identifier("public", name), columns))
        for i in range(n):
            cur.execute(
                sql.SQL("insert into {} values (%s, 1, 1, 1, 1, 1, 1, %s, true)").format(sql.Identifier("public", name)),
                (start + i * step, 0 if i in unsampled else 3),
            )


def test_quality_report_on_real_tables(tmp_path: Path, database: Connection) -> None:
    now = datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0)
    with connect(database) as conn:
        _make_mart(conn, "ohlcv_btc_usdt", now - timedelta(hours=48), timedelta(hours=1), 48, {5, 20, 21, 22})
        _make_mart(conn, "ohlcv_btc_usdt_1d", now.replace(hour=0) - timedelta(days=2), timedelta(days=1), 3, set())
    settings = make_settings(tmp_path)
    runlog.setup(settings.log_file, stream=False)
    gap = Gap("BTC/USDT", "1h", now - timedelta(hours=28), now - timedelta(hours=26), 3)
    code = report.log_report(settings, database, gaps=[gap])
    assert code == 4  # a gap, and ETH/USDT has no tables
    lines = log_lines(settings.log_file)
    assert_log_format(lines)
    text = "\n".join(lines)
    assert "🔍 Data quality report" in text
    header = next(line for line in lines if "records" in line and "latest" in line)
    row = next(line for line in lines if "BTC/USDT  1h" in line)
    assert row.index("48") < row.index(f"{now - timedelta(hours=48):%Y-%m-%d %H:%M}")
    assert "⚠️" in row and "  4  " in row  # 4 forward-filled buckets, 1 gap: needs attention
    assert "no table public.ohlcv_eth_usdt" in text
    assert f"Gap BTC/USDT 1h {gap.start:%Y-%m-%d %H:%M} → {gap.end:%Y-%m-%d %H:%M} (3 missing buckets)" in text
    assert re.search(r"📊 symbol +\| records \| latest\n.*📊 BTC/USDT \| +48 \| ", text)
    # Aligned: every table line has its columns at the same offsets.
    table = [line.split(" ", 3)[3] for line in lines if "USDT  1" in line or line.endswith(" lag")]
    assert len(table) == 5
    for column in ("records", "latest", "lag"):
        header_end = table[0].index(column) + len(column)
        assert all(len(t) >= header_end - 1 for t in table)
    assert len({t.index(" 1") for t in table[1:]}) == 1 and table[0].index(" tf") == table[1].index(" 1")


def test_quality_report_with_many_pairs_logs_totals_and_the_pairs_needing_attention(tmp_path: Path, database: Connection) -> None:
    """Beyond FULL_TABLE_PAIRS pairs the nightly logs one summary line, the rows of the pairs with a
    gap, stale or without candles, and where the full table is; `alphadb report` prints every row."""
    now = datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0)
    names = [f"C{n:02d}/USD" for n in range(report.FULL_TABLE_PAIRS + 3)]
    with connect(database) as conn:
        for n, name in enumerate(names[:-1]):  # the last pair has no candles
            stem = "ohlcv_" + name.lower().replace("/", "_")
            end = now - (timedelta(days=3) if n == 1 else timedelta(0))  # C01/USD is stale
            _make_mart(conn, stem, end - timedelta(hours=24), timedelta(hours=1), 24, {3, 4, 5, 6} if n == 2 else set())
            _make_mart(conn, stem + "_1d", end.replace(hour=0) - timedelta(days=1), timedelta(days=1), 2, set())
    settings = make_settings(tmp_path, ALPHADB_PAIRS=",".join(f"{name}=coin{n:02d}:usd" for n, name in enumerate(names)))
    runlog.setup(settings.log_file, stream=False)
    gap = Gap("C02/USD", "1h", now - timedelta(hours=21), now - timedelta(hours=17), 4)
    assert report.log_report(settings, database, gaps=[gap]) == 4
    after = datetime.now(timezone.utc)  # the report read the clock itself, after `now`: past midnight maybe
    lines = log_lines(settings.log_file)
    assert_log_format(lines)
    text = "\n".join(lines)
    assert any(f"Data quality report ({day:%Y-%m-%d} " in lines[0] for day in (now, after)), lines[0]
    assert lines[0].endswith(f"{len(names)} pairs, candles: 1h {24 * (len(names) - 1):,}, 1d {2 * (len(names) - 1)};"
                             " 1 gap(s) in 1 pair(s), 1 pair(s) stale, 1 without candles")
    table = [line for line in lines if re.search(r"C\d\d/USD  1", line)]
    assert {line.split()[3] for line in table} == {"C01/USD", "C02/USD", names[-1]}  # the healthy pairs are left out
    assert all("⚠️" in line for line in table)
    assert "alphadb report" in lines[-1] and "Guide check query" not in text
    # on demand: every pair and timeframe, and the guide query
    runlog.setup(settings.log_file, stream=False)
    assert report.print_report(settings, database) == 4
    every = [line for line in log_lines(settings.log_file)[len(lines):] if re.search(r"C\d\d/USD  1", line)]
    assert len(every) == 2 * len(names)
    assert "Guide check query" in "\n".join(log_lines(settings.log_file))


def test_guide_query_is_the_original_shape(database: Connection) -> None:
    conn = psycopg2.connect(**database.psycopg_kwargs())
    try:
        text = report.guide_query([BTC, ETH]).as_string(conn)
    finally:
        conn.close()
    assert text == (
        "SELECT 'BTC/USDT' as symbol, COUNT(*) as records, MAX(ts) as latest FROM \"ohlcv_btc_usdt\" UNION ALL "
        "SELECT 'ETH/USDT' as symbol, COUNT(*) as records, MAX(ts) as latest FROM \"ohlcv_eth_usdt\""
    )


def test_format_lag() -> None:
    assert report.format_lag(timedelta(minutes=65)) == "1h05m"
    assert report.format_lag(timedelta(days=2, hours=3)) == "2d03h"
    assert report.format_lag(None) == "-"


# -- heal planning -----------------------------------------------------------------------------

def test_plan_ranges_pads_merges_and_caps_at_now() -> None:
    t = datetime(2025, 6, 10, tzinfo=timezone.utc)
    gaps = [
        Gap("BTC/USDT", "1h", t + timedelta(hours=3), t + timedelta(hours=5), 3),
        Gap("BTC/USDT", "1h", t + timedelta(hours=7), t + timedelta(hours=9), 3),  # merges (padding overlaps)
        Gap("ETH/USDT", "1d", t, t + timedelta(days=1), 1),
        Gap("DOGE/USDT", "1h", t, t + timedelta(hours=5), 5),  # not configured: ignored
        Gap("ETH/USDT", "1h", t + timedelta(days=3), t + timedelta(days=3, hours=4), 5),  # capped at now
    ]
    now = t + timedelta(days=3, hours=5)
    ranges = heal.plan_ranges(gaps, [BTC, ETH], now=now)
    assert ranges == [
        (BTC, t + timedelta(hours=1), t + timedelta(hours=11)),
        (ETH, t - timedelta(hours=2), t + timedelta(days=1, hours=2)),
        (ETH, t + timedelta(days=3) - timedelta(hours=2), now),
    ]


# -- the orchestration, with fakes for the database, the loader and dbt --------------------------

@dataclass
class World:
    """The job's collaborators as the tests script them: what the fake database, loader and dbt do
    (the healer, its planning included, and the alerter are the real ones). `gaps` shrink as
    re-fetches say."""

    load_errors: dict[str, AlphaDBError] = field(default_factory=dict)
    db_error: AlphaDBError | None = None
    source_error: AlphaDBError | None = None
    interrupt_load: bool = False
    models_ok: bool = True
    tests_ok: list[bool] = field(default_factory=lambda: [True])
    gaps: list[Gap] = field(default_factory=list)
    fillable: bool = True
    calls: list[str] = field(default_factory=list)
    tests_scopes: list[TestsScope | None] = field(default_factory=list)

    # the database
    def resolve_connection(self, settings: Settings) -> Connection:
        return Connection("/nonexistent", 5432, "trader", "-", "market")

    def check_database(self, connection: Connection) -> int:
        if self.db_error:
            raise self.db_error
        return 150004

    # the loader
    def check_source(self, settings: Settings) -> int:
        if self.source_error:
            raise self.source_error
        return 1

    def preflight(self, settings: Settings, connection: Connection) -> None:
        return None  # no API behind these fakes

    def load_incremental(self, settings: Settings, connection: Connection, pairs: Sequence[Pair] | None = None, now: datetime | None = None) -> LoadReport:
        self.calls.append("load")
        if self.interrupt_load:
            os.kill(os.getpid(), signal.SIGTERM)
            raise AssertionError("not reached")
        return LoadReport([PairResult(p, 0 if p.name in self.load_errors else 100, 2, self.load_errors.get(p.name)) for p in settings.pairs])

    def load_range(self, settings: Settings, connection: Connection, start: datetime, end: datetime,
                   pairs: Sequence[Pair] | None = None, job: str | None = None, now: datetime | None = None) -> LoadReport:
        assert pairs is not None
        self.calls.append(f"load_range {pairs[0].name}")
        if self.fillable:
            self.gaps = [g for g in self.gaps if g.pair != pairs[0].name]
        return LoadReport([PairResult(pairs[0], 12, 1)])

    # dbt
    def run_models(self, settings: Settings, connection: Connection, full_refresh: bool = False) -> DbtOutcome:
        self.calls.append("dbt run")
        return DbtOutcome("dbt run", self.models_ok, [NodeResult("ohlcv", "success" if self.models_ok else "error", "boom", None)], 0.1)

    def source_freshness(self, settings: Settings, connection: Connection) -> DbtOutcome:
        self.calls.append("freshness")
        return DbtOutcome("dbt source freshness", True, [NodeResult("source.points", "pass", "", None)], 0.1)

    def run_tests(self, settings: Settings, connection: Connection, scope: TestsScope | None = None) -> DbtOutcome:
        self.calls.append("dbt test")
        self.tests_scopes.append(scope)
        ok = self.tests_ok.pop(0) if len(self.tests_ok) > 1 else self.tests_ok[0]
        failing = NodeResult("no_gaps_ohlcv_btc_usdt", "fail", "Got 1 result:\n@@ ,pair ,gap_start\n---,BTC/USDT,2025-06-10", 1)
        return DbtOutcome("dbt test", ok, [NodeResult("unique_ohlcv", "pass", "", None)] + ([] if ok else [failing]), 0.1)

    def find_gaps(self, connection: Connection) -> list[Gap]:
        return list(self.gaps)

    # the reporter
    def log_report(self, settings: Settings, connection: Connection, gaps: Sequence[Gap], now: datetime | None = None) -> int:
        self.calls.append("report")
        return 0

    def collaborators(self) -> nightly.Collaborators:
        return nightly.Collaborators(
            database=self, loader=self, transformer=self, healer=heal, reporter=self, alerter=alerts
        )


@pytest.fixture
def world() -> World:
    return World()


def run_job(tmp_path: Path, world: World, receiver: WebhookReceiver, **env: str) -> tuple[int, list[str]]:
    settings = make_settings(
        tmp_path, SLACK_WEBHOOK_URL=receiver.url(SECRETS["hook"]), ALPHADB_HEALTHCHECK_URL=receiver.url("/hc"), **env
    )
    code = nightly.run(settings, world.collaborators())
    lines = log_lines(settings.log_file)
    assert_log_format(lines)
    return code, lines


def test_success_path(tmp_path: Path, world: World, receiver: WebhookReceiver) -> None:
    code, lines = run_job(tmp_path, world, receiver)
    assert code == 0
    assert world.calls == ["load", "dbt run", "freshness", "dbt test", "report"]
    assert "🕐 Starting daily backfill cron job" in lines[0]
    assert "🏁 Daily backfill cron job completed successfully" in lines[-1] and "200 points, 4 requests" in lines[-1]
    assert [r.path for r in receiver.received] == ["/hc/start", "/hc"]
    text = "\n".join(lines)
    for step in ("Environment check passed", "Database connectivity check passed", "Backfill completed successfully", "dbt run passed", "Data quality checks passed"):
        assert step in text
    # the tests' scope: the candles rebuilt from the last week's loads, plus the whole history of the
    # pairs audited on tonight's UTC weekday
    now = datetime.now(timezone.utc)
    [scope] = world.tests_scopes
    assert scope is not None and timedelta(days=7) <= now - scope.loaded_since < timedelta(days=7, minutes=1)
    assert scope.audit_weekday in (now.weekday(), (now - timedelta(minutes=1)).weekday())
    assert f"dbt test on candles loaded since {scope.loaded_since:%Y-%m-%d %H:%M} UTC + all history of the pairs audited on" in text


def test_every_night_tests_the_last_week_plus_the_pairs_audited_that_weekday() -> None:
    saturday = datetime(2026, 11, 28, 2, 0, tzinfo=timezone.utc)
    week = [nightly.tests_scope(saturday + timedelta(days=n)) for n in range(7)]
    assert [scope.loaded_since for scope in week] == [datetime(2026, 11, 21, 2, 0, tzinfo=timezone.utc) + timedelta(days=n) for n in range(7)]
    assert [scope.audit_weekday for scope in week] == [5, 6, 0, 1, 2, 3, 4]  # each weekday once, no all-history night
    # the UTC weekday, whatever the zone `now` is given in: 23:30 in New York on a Saturday is Sunday in UTC
    new_york = timezone(timedelta(hours=-5))
    assert nightly.tests_scope(datetime(2026, 11, 28, 23, 30, tzinfo=new_york)).audit_weekday == 6
    assert week[0].dbt_vars() == {"tests_loaded_since": "2026-11-21T02:00:00+00:00", "tests_audit_weekday": 5}


def test_database_down_exits_3_and_alerts(tmp_path: Path, world: World, receiver: WebhookReceiver) -> None:
    world.db_error = DatabaseUnavailable("Database not accessible. Is AlphaDB stack running? (h:1: refused)")
    code, lines = run_job(tmp_path, world, receiver)
    assert code == 3 and world.calls == []
    assert any(l.endswith("❌ Database not accessible. Is AlphaDB stack running? (h:1: refused)") for l in lines)
    [alert] = receiver.posts(SECRETS["hook"])
    assert "Database connectivity check" in alert.json()["text"] and "*Exit code:* 3" in alert.json()["text"]
    assert [r.path for r in receiver.received if r.path.startswith("/hc")] == ["/hc/start", "/hc/fail"]


def test_one_pair_fails_others_still_transform(tmp_path: Path, world: World, receiver: WebhookReceiver) -> None:
    world.load_errors["ETH/USDT"] = ConfigError("coin 'ethereum' not found on CoinGecko")
    code, lines = run_job(tmp_path, world, receiver)
    assert code == 2
    assert world.calls[:2] == ["load", "dbt run"]
    text = "\n".join(lines)
    assert "ETH/USDT failed to load: coin 'ethereum' not found" in text
    # The failing pair has its line; the pair that loaded is counted in the summary, not listed.
    assert not any("BTC/USDT:" in line for line in lines), lines
    assert "❌ Backfill failed for ETH/USDT in" in text and ": 100 points, 4 requests, 1/2 pairs" in text
    alert = receiver.posts(SECRETS["hook"])[0].json()["text"]
    assert "Backfill (ETH/USDT)" in alert and "*Exit code:* 2" in alert


def test_the_log_of_many_pairs_stays_readable(tmp_path: Path, world: World, receiver: WebhookReceiver) -> None:
    """1,000 pairs: the environment check counts them (no 1,000 names in a line), the load logs its
    summary and a line per failing pair, not a line per pair that loaded."""
    many = ",".join(f"C{i:04d}/USD=coin-{i:04d}:usd" for i in range(1, 1001))
    world.load_errors["C0007/USD"] = ConfigError("coin 'coin-0007' not found on CoinGecko")
    code, lines = run_job(tmp_path, world, receiver, ALPHADB_PAIRS=many)
    assert code == 2
    [check] = [line for line in lines if "Environment check passed" in line]
    assert "pairs 1000 (C0001/USD, C0002/USD, C0003/USD and 997 more)" in check and len(check) < 300, check
    start = next(i for i, line in enumerate(lines) if "Running backfill" in line)
    end = next(i for i, line in enumerate(lines) if "Building candles" in line)
    load_lines = lines[start + 1 : end]
    assert len(load_lines) == 2, load_lines  # the failing pair, then the summary naming it
    assert "C0007/USD failed to load" in load_lines[0]
    assert "❌ Backfill failed for C0007/USD in" in load_lines[1] and "99900 points, 2000 requests, 999/1000 pairs" in load_lines[1]


def test_all_pairs_fail_skips_dbt(tmp_path: Path, world: World, receiver: WebhookReceiver) -> None:
    world.load_errors = {"BTC/USDT": AlphaDBError("unreachable"), "ETH/USDT": AlphaDBError("unreachable")}
    code, lines = run_job(tmp_path, world, receiver)
    assert code == 1 and world.calls == ["load"]
    assert any("No pair loaded: skipping dbt" in l for l in lines)


def test_dbt_run_failure_exits_1(tmp_path: Path, world: World, receiver: WebhookReceiver) -> None:
    world.models_ok = False
    code, lines = run_job(tmp_path, world, receiver)
    assert code == 1 and world.calls == ["load", "dbt run"]
    assert any("dbt run failed: ohlcv error: boom" in l for l in lines)


def test_gap_heals_then_retests(tmp_path: Path, world: World, receiver: WebhookReceiver) -> None:
    t = datetime(2025, 6, 10, 3, tzinfo=timezone.utc)
    world.gaps = [Gap("BTC/USDT", "1h", t, t + timedelta(hours=2), 3)]
    world.tests_ok = [False, True]
    code, lines = run_job(tmp_path, world, receiver)
    assert code == 0, "\n".join(lines)
    assert world.calls == ["load", "dbt run", "freshness", "dbt test", "load_range BTC/USDT", "dbt run", "freshness", "dbt test", "report"]
    text = "\n".join(lines)
    assert "Gap healed: BTC/USDT 1h 2025-06-10 03:00 → 2025-06-10 05:00 (3 missing buckets)" in text
    assert "Data quality re-checks passed" in text


def test_unfillable_gap_exits_4_after_one_round(tmp_path: Path, world: World, receiver: WebhookReceiver) -> None:
    t = datetime(2025, 6, 10, 3, tzinfo=timezone.utc)
    world.gaps = [Gap("BTC/USDT", "1h", t, t + timedelta(hours=2), 3)]
    world.tests_ok = [False]
    world.fillable = False
    code, lines = run_job(tmp_path, world, receiver)
    assert code == 4
    # One round: the re-fetch changed nothing, so no second round and no pointless re-test.
    assert world.calls == ["load", "dbt run", "freshness", "dbt test", "load_range BTC/USDT", "dbt run", "report"]
    gap_text = "BTC/USDT 1h 2025-06-10 03:00 → 2025-06-10 05:00 (3 missing buckets)"
    assert any(f"❌ Gap the source cannot fill: {gap_text}" in l for l in lines)
    alert = receiver.posts(SECRETS["hook"])[0].json()["text"]
    assert "*Exit code:* 4" in alert and gap_text in alert


def test_bad_key_exits_2(tmp_path: Path, world: World, receiver: WebhookReceiver) -> None:
    world.source_error = ConfigError("COINGECKO_API_KEY was rejected (error 10002): check the key")
    code, lines = run_job(tmp_path, world, receiver, COINGECKO_API_KEY=SECRETS["key"], COINGECKO_PLAN="demo")
    assert code == 2 and world.calls == []
    assert any("❌ COINGECKO_API_KEY was rejected" in l for l in lines)
    assert SECRETS["key"] not in json.dumps([r.body.decode() for r in receiver.received])


def test_lock_held_exits_75_without_alert(tmp_path: Path, world: World, receiver: WebhookReceiver) -> None:
    settings = make_settings(tmp_path)
    with exclusive_lock(nightly.lock_path(settings), "run"):
        code, lines = run_job(tmp_path, world, receiver)
    assert code == 75 and world.calls == [] and receiver.received == []
    assert "⚠️ Another run is in progress" in lines[-1]


def test_sigterm_is_an_alerted_failure(tmp_path: Path, world: World, receiver: WebhookReceiver) -> None:
    world.interrupt_load = True
    code, lines = run_job(tmp_path, world, receiver)
    assert code == 1
    assert any("❌ Interrupted by SIGTERM" in l for l in lines)
    assert receiver.posts(SECRETS["hook"])
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # restored


def test_log_line_pattern_matches_design_example() -> None:
    assert LOG_LINE.match("[2025-06-13 02:00:01] 🕐 Starting daily backfill cron job")
    assert LOG_LINE.match("[2025-06-13 02:00:01] ❌ Database not accessible. Is AlphaDB stack running?")

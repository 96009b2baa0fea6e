"""`alphadb`: the command line of the ELT (docs/design.md).

Every command validates settings first (exit 2 before anything is written) and maps failures to
the exit codes of docs/design.md. Tracebacks are not shown (they could carry secrets); set
ALPHADB_DEBUG=1 to see them.
"""

from __future__ import annotations

import argparse
import os
import sys
from datetime import date, datetime, time, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

from pipelines import admin, progress, run_history, runlog
from pipelines.config import MAX_DAYS, Settings, load_settings
from pipelines.database import Connection
from pipelines.errors import EXIT_FAILURE, EXIT_QUALITY, AlphaDBError, ConfigError
from pipelines.transform import FAILED_STATUSES, DbtOutcome

if TYPE_CHECKING:  # the loader imports dlt: only the commands that load pay for it
    from pipelines.load import LoadReport

OK_STATUSES = ("success", "pass")


def _now() -> datetime:
    """The moment a command starts: the `now` its loads plan with."""
    return datetime.now(timezone.utc)


def _date(value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a date in YYYY-MM-DD form") from None


def _days(value: str) -> int:
    try:
        days = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number of days") from None
    if not 1 <= days <= MAX_DAYS:
        raise argparse.ArgumentTypeError(f"--days {days} is out of range: use 1..{MAX_DAYS}")
    return days


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        # A usage error is a configuration error: exit 2 with one clear line (argparse's own code too).
        self.print_usage(sys.stderr)
        raise ConfigError(message)


def backfill_range(args: argparse.Namespace, now: datetime) -> tuple[datetime, datetime, str]:
    """The UTC range of `backfill --days N | --start D --end D` (end date inclusive) and its job key."""
    if args.days is not None:
        if args.start or args.end:
            raise ConfigError("use either --days or --start/--end, not both")
        return now - timedelta(days=args.days), now, f"days={args.days}"
    if not args.start:
        raise ConfigError("backfill needs --days N or --start YYYY-MM-DD [--end YYYY-MM-DD]")
    end_date = args.end or now.date()
    if args.start > now.date() or end_date > now.date():
        raise ConfigError(f"dates in the future cannot be backfilled (today is {now.date()} UTC)")
    if args.start > end_date:
        raise ConfigError(f"--start {args.start} is after --end {end_date}")
    start = datetime.combine(args.start, time(0), timezone.utc)
    end = min(now, datetime.combine(end_date + timedelta(days=1), time(0), timezone.utc))
    return start, end, f"{args.start}..{end_date}"


def _connection(settings: Settings, fetches: bool = False, record: run_history.RunRecord | None = None) -> Connection:
    from pipelines.database import check_database, resolve_connection

    connection = resolve_connection(settings)
    check_database(connection)
    if fetches:  # a command that loads: the source must be reachable (and the database's own) first
        from pipelines.source import preflight

        preflight(settings, connection)
    if record is not None:  # the run reaches the database: its row in ops.runs starts now
        record.start(connection)
    return connection


def _print_load(report: LoadReport) -> int:
    from pipelines.load import FEW_PAIRS

    every_pair = len(report.results) <= FEW_PAIRS  # else the failures and the totals only
    for result in report.results:
        if result.error:
            runlog.line(runlog.ERROR, f"{result.pair.name}: {result.error}")
        elif every_pair:
            runlog.line(
                runlog.OK,
                f"{result.pair.name}: {result.points} points ({result.written} new or changed) in {result.requests} request(s)",
            )
    rate = report.points / report.elapsed_s if report.elapsed_s else 0.0
    runlog.line(
        runlog.OK if not report.failed else runlog.WARNING,
        f"loaded {report.points} points in {report.requests} request(s) in {report.elapsed_s:.1f}s ({rate:,.0f} points/s)",
    )
    return report.exit_code


def cmd_load(settings: Settings, args: argparse.Namespace) -> int:
    from pipelines.load import load_incremental

    pairs = [settings.pair(args.pair)] if args.pair is not None else None
    report = load_incremental(settings, _connection(settings, fetches=True, record=args.record), pairs, now=_now())
    args.record.add_load(report)
    return _print_load(report)


def cmd_backfill(settings: Settings, args: argparse.Namespace) -> int:
    # Validate the arguments before importing dlt: a typo answers at once.
    now = _now()
    start, end, job = backfill_range(args, now)
    pairs = [settings.pair(args.pair)] if args.pair is not None else None
    from pipelines.load import load_range

    runlog.line(runlog.RUNNING, f"backfill {start:%Y-%m-%d %H:%M}..{end:%Y-%m-%d %H:%M} UTC")
    report = load_range(settings, _connection(settings, fetches=True, record=args.record), start, end, pairs, job=job, now=now)
    args.record.add_load(report)
    return _print_load(report)


def _log_dbt_outcome(outcome: DbtOutcome) -> None:
    for result in outcome.results:
        if result.status not in OK_STATUSES:
            marker = runlog.ERROR if result.status in FAILED_STATUSES else runlog.WARNING
            runlog.line(marker, f"{result.name}: {result.status} {result.message}")
    verdict = "passed" if outcome.success else "failed"
    runlog.line(runlog.OK if outcome.success else runlog.ERROR, f"{outcome.command}: {verdict} in {outcome.elapsed_s:.1f}s")


def cmd_transform(settings: Settings, args: argparse.Namespace) -> int:
    from pipelines import transform

    outcome = transform.run_models(settings, _connection(settings), full_refresh=args.full_refresh)
    _log_dbt_outcome(outcome)
    return 0 if outcome.success else EXIT_FAILURE


def cmd_test(settings: Settings, args: argparse.Namespace) -> int:
    from pipelines import transform

    connection = _connection(settings)
    outcomes = [transform.source_freshness(settings, connection), transform.run_tests(settings, connection)]
    for outcome in outcomes:
        _log_dbt_outcome(outcome)
    return 0 if all(o.success for o in outcomes) else EXIT_QUALITY


def cmd_heal(settings: Settings, args: argparse.Namespace) -> int:
    from pipelines import heal, load, transform

    return heal.heal(settings, _connection(settings, fetches=True, record=args.record), load, transform, _now(), args.record)


def cmd_report(settings: Settings, args: argparse.Namespace) -> int:
    from pipelines import report

    if args.html is not None:  # `--html [PATH]`: the data-quality page instead of the log table
        from pipelines import html_report

        html_report.write_and_log(settings, _connection(settings), Path(args.html) if args.html else None)
        return 0
    return report.print_report(settings, _connection(settings))


def cmd_run(settings: Settings, args: argparse.Namespace) -> int:
    from pipelines import nightly

    return nightly.run(settings)


def cmd_log_file(settings: Settings, args: argparse.Namespace) -> int:
    """`alphadb log-file`: where the nightly job logs (what setup_cron.sh and run_elt.sh ask); exit 2
    when the settings do not load (run_elt.sh then asks `python -m pipelines.logfile`)."""
    print(settings.log_file)
    return 0


def cmd_docs(settings: Settings, args: argparse.Namespace) -> int:
    from pipelines import transform

    path = transform.generate_docs(settings, _connection(settings), static=True)
    runlog.line(runlog.OK, f"dbt docs written to {path}")
    if args.serve:
        import functools
        import http.server

        handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(path.parent))
        server = http.server.ThreadingHTTPServer(("127.0.0.1", args.port), handler)
        runlog.line(runlog.RUNNING, f"serving docs on http://127.0.0.1:{args.port}/{path.name} (Ctrl-C to stop)")
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
    return 0


def cmd_dbt(settings: Settings, args: argparse.Namespace) -> int:
    """Any dbt command on the same connection and generated pair models, e.g. `alphadb dbt build`."""
    from pipelines import transform

    if not args.passthrough:
        raise ConfigError("name a dbt command, e.g. `alphadb dbt build` or `alphadb dbt source freshness`")
    if {"-h", "--help"} & set(args.passthrough):
        return admin.dbt_help(args.passthrough)  # dbt's own help: no project, no database needed
    outcome = transform.run_dbt(settings, _connection(settings), args.passthrough)
    output = transform.dbt_dir(settings) / "last_output.log"
    if output.exists():
        print(runlog.redact(output.read_text(encoding="utf-8")), end="")
    return 0 if outcome.success else EXIT_FAILURE


def cmd_dbt_env(settings: Settings, args: argparse.Namespace) -> int:
    """The POSTGRES_* variables for dbt run by hand: `eval "$(alphadb dbt-env)"` (no password)."""
    from pipelines import transform

    print(transform.shell_environment(settings, _connection(settings)), end="")
    return 0


def cmd_psql(settings: Settings, args: argparse.Namespace) -> int:
    """psql on the same connection as every other component (password via the environment)."""
    import shutil

    from pipelines.database import resolve_connection

    connection = resolve_connection(settings)
    psql = shutil.which("psql")
    if settings.embedded_database or not psql:
        from pipelines.database import embedded_bin

        psql = str(embedded_bin("psql"))
    env = {**os.environ, **connection.environment()}
    os.execve(psql, [psql, *args.passthrough], env)
    return 0  # not reached


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="alphadb", description="AlphaDB ELT: CoinGecko → PostgreSQL (dlt) → candles (dbt).")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    def add(name: str, func: Callable[[Settings, argparse.Namespace], int], help: str, **options: bool) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help, **options)
        p.set_defaults(func=func)
        return p

    p = add("load", cmd_load, "incremental load: each pair from its cursor minus ALPHADB_BACKFILL_DAYS to now")
    p.add_argument("--pair", help="only this configured pair, e.g. BTC/USDT")
    p = add("backfill", cmd_backfill, "load an explicit range without moving the nightly cursor (resumable)")
    p.add_argument("--days", type=_days, help="the last N days")
    p.add_argument("--start", type=_date, help="first day, YYYY-MM-DD (UTC)")
    p.add_argument("--end", type=_date, help="last day, YYYY-MM-DD (UTC, inclusive; default today)")
    p.add_argument("--pair", help="only this configured pair, e.g. BTC/USDT")
    p = add("transform", cmd_transform, "dbt run: build the candle models")
    p.add_argument("--full-refresh", action="store_true", help="rebuild incremental models from scratch")
    add("test", cmd_test, "dbt source freshness + dbt test (exit 4 when quality tests fail)")
    add("heal", cmd_heal, "re-fetch the ranges the no-gap test reports, rebuild and re-test")
    p = add("report", cmd_report, "print the data-quality report")
    p.add_argument("--html", nargs="?", const="", metavar="PATH",
                   help="write the data-quality page instead (default ALPHADB_HOME/report/data-quality.html)")
    add("run", cmd_run, "the whole nightly job (what scripts/run_elt.sh runs)")
    p = add("docs", cmd_docs, "generate dbt docs (static single page); --serve to browse them")
    p.add_argument("--serve", action="store_true", help="then serve them on http://127.0.0.1:PORT/ until Ctrl-C")
    p.add_argument("--port", type=int, default=8080, help="the port for --serve (default 8080)")
    # Every argument, --help included, goes to dbt / psql.
    add("dbt", cmd_dbt, "run a dbt command on the AlphaDB database, e.g. `alphadb dbt build` (arguments go to dbt)", add_help=False)
    add("psql", cmd_psql, "open psql on the AlphaDB database (further arguments go to psql)", add_help=False)
    add("dbt-env", cmd_dbt_env, "print the POSTGRES_* exports for dbt run by hand in dbt_alphadb/ (never the password)")
    add("log-file", cmd_log_file, "print the log file the nightly job writes (ALPHADB_LOG_FILE, .env, or the default)")
    admin.register(add)

    from pipelines import maintenance

    maintenance.add_commands(add, _connection)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    settings: Settings | None = None
    command = None
    try:
        parser = build_parser()
        args, extra = parser.parse_known_args(argv)
        if args.command in ("psql", "dbt"):
            args.passthrough = extra
        elif extra:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        command = args.command
        settings = load_settings()
        runlog.register_secrets(settings.secrets())
        if args.command not in ("run", "psql", "dbt-env"):
            runlog.setup(None)  # interactive commands log to stdout; `run` sets up the log file itself
        admin.announce_log_file(args.command, settings)
        raw = list(sys.argv[1:] if argv is None else argv)
        arguments = raw[raw.index(command) + 1 :] if command in raw else []
        # a bar for backfill/heal on a terminal; the run's row in ops.runs for the commands that reach the database
        with progress.on_terminal(args.command), run_history.recording(command, arguments) as record:
            args.record = record
            code = int(args.func(settings, args) or 0)
            record.close(code)
    except AlphaDBError as exc:
        if command == "run" and settings is None:
            from pipelines.nightly import log_config_error

            return log_config_error(exc)  # cron's run log must say why the job stopped
        _fail(str(exc))
        code = exc.exit_code
    except KeyboardInterrupt:
        _fail("interrupted")
        code = 130
    except Exception as exc:  # noqa: BLE001 - the last line of defence: a clear line, no traceback
        if os.environ.get("ALPHADB_DEBUG"):
            raise
        _fail(f"unexpected error: {type(exc).__name__}: {exc} (set ALPHADB_DEBUG=1 for a traceback)")
        code = EXIT_FAILURE
    return code


def _fail(message: str) -> None:
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
    print(runlog.redact(f"[{stamp}] {runlog.ERROR} {message}"), file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())

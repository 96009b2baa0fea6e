"""Per-pair dbt files generated from the pairs config (pairs.conf or ALPHADB_PAIRS).

dbt cannot create models from a list at run time, so each configured pair gets two one-line model
files (`ohlcv_<slug>.sql` hourly, `ohlcv_<slug>_1d.sql` daily) calling the `pair_candles` macro, a
properties file with their docs and contracts, and the macro `configured_pairs()` that the rest of
the project reads the pairs from. All logic stays in the project's macros and models; these files
only name the pairs. They are gitignored and rewritten only when their content changes (so dbt's
partial parsing keeps working); files of pairs no longer configured are deleted.

`pipelines.transform.prepare_project` syncs a per-ALPHADB_HOME mirror of the project before every dbt
run; `python -m pipelines.pair_models` syncs the repo's dbt_alphadb/ itself, for running dbt by hand.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable, Sequence

from pipelines.config import REPO_ROOT, Pair

PROJECT_DIR = REPO_ROOT / "dbt_alphadb"
PAIRS_DIR = Path("models") / "marts" / "pairs"
PAIRS_MACRO = Path("macros") / "generated" / "configured_pairs.sql"
PAIRS_PROPERTIES = PAIRS_DIR / "_pairs__models.yml"
HEADER = "generated from pairs.conf by alphadb; do not edit"

TIMEFRAMES = {"1h": ("", "Hourly"), "1d": ("_1d", "Daily (UTC days)")}

# (name, contract data type, doc block): the candle columns of DESIGN.md §3, in order.
CANDLE_COLUMNS = (
    ("ts", "timestamp with time zone", "candle_ts"),
    ("open", "double precision", "candle_open"),
    ("high", "double precision", "candle_high"),
    ("low", "double precision", "candle_low"),
    ("close", "double precision", "candle_close"),
    ("volume", "double precision", "candle_volume"),
    ("market_cap", "double precision", "candle_market_cap"),
    ("sample_count", "integer", "candle_sample_count"),
    ("is_complete", "boolean", "candle_is_complete"),
)


def model_name(pair: Pair, timeframe: str) -> str:
    return f"ohlcv_{pair.slug}{TIMEFRAMES[timeframe][0]}"


def _model_sql(pair: Pair, timeframe: str) -> str:
    return f"{{# {HEADER} #}}\n{{{{ pair_candles('{pair.name}', '{timeframe}') }}}}\n"


def _macro_sql(pairs: Sequence[Pair]) -> str:
    items = ",\n".join(
        "        " + json.dumps({"name": p.name, "coin_id": p.coin_id, "vs_currency": p.vs_currency, "slug": p.slug})
        for p in pairs
    )
    return f"{{# {HEADER} #}}\n{{% macro configured_pairs() %}}\n    {{{{ return([\n{items}\n    ]) }}}}\n{{% endmacro %}}\n"


def _properties_yml(pairs: Sequence[Pair]) -> str:
    q = json.dumps  # a JSON string is a valid YAML scalar
    lines = [f"# {HEADER}", "version: 2", "", "models:"]
    for pair in pairs:
        for timeframe, (_, label) in TIMEFRAMES.items():
            description = (
                f"{label} candles of {pair.name} (CoinGecko {pair.coin_id}/{pair.vs_currency}), one row per "
                f"bucket from the first sampled bucket to the last, in the column order of DESIGN.md §3."
            )
            lines += [
                f"  - name: {model_name(pair, timeframe)}",
                f"    description: {q(description)}",
                "    columns:",
            ]
            for column, data_type, doc in CANDLE_COLUMNS:
                lines += [
                    f"      - name: {column}",
                    f"        data_type: {data_type}",
                    f"        description: {q('{{ doc(' + repr(doc) + ') }}')}",
                ]
                if column == "ts":
                    lines.append("        data_tests: [unique, not_null]")
    return "\n".join(lines) + "\n"


def _write_if_changed(path: Path, text: str) -> bool:
    if path.exists() and path.read_text(encoding="utf-8") == text:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
    return True


def is_generated(path: Path) -> bool:
    try:
        with path.open(encoding="utf-8") as handle:
            return HEADER in handle.readline()
    except (OSError, ValueError):
        return False


def generated_files(pairs: Iterable[Pair], project_dir: Path = PROJECT_DIR) -> dict[Path, str]:
    """Every generated file of the project for these pairs, with its content."""
    pairs = tuple(pairs)
    files = {project_dir / PAIRS_MACRO: _macro_sql(pairs), project_dir / PAIRS_PROPERTIES: _properties_yml(pairs)}
    for pair in pairs:
        for timeframe in TIMEFRAMES:
            files[project_dir / PAIRS_DIR / f"{model_name(pair, timeframe)}.sql"] = _model_sql(pair, timeframe)
    return files


def sync_pair_models(pairs: Iterable[Pair], project_dir: Path = PROJECT_DIR) -> list[Path]:
    """Write the pairs' generated files, delete those of pairs no longer configured; return what changed."""
    project_dir = Path(project_dir)
    files = generated_files(pairs, project_dir)
    changed = [path for path, text in files.items() if _write_if_changed(path, text)]
    for path in sorted((project_dir / PAIRS_DIR).glob("ohlcv_*.sql")):
        if path not in files and is_generated(path):
            path.unlink()
            changed.append(path)
    return changed


def main() -> int:
    from pipelines.config import load_settings
    from pipelines.errors import AlphaDBError

    try:
        settings = load_settings()
    except AlphaDBError as exc:
        print(f"error: {exc}")
        return exc.exit_code
    changed = sync_pair_models(settings.pairs)
    print(f"{len(settings.pairs)} pairs; {len(changed)} generated files updated in {PROJECT_DIR}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

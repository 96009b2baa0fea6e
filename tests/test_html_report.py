"""The data-quality page (`alphadb report --html`) in a real headless Chromium: built from a real
nightly run against the simulator and a real PostgreSQL, opened from file:// with the network
unused, its numbers checked against SQL on the same database."""

from __future__ import annotations

import io
import os
import re
import subprocess
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Iterator

import pytest
from PIL import Image

from browser_support import Browser, chromium_path
from postgres_support import query
from process_support import alphadb_command, output, run_cli

# CI installs chromium (.ci/run), so there a missing browser fails the tests instead of skipping them.
pytestmark = pytest.mark.skipif(chromium_path() is None and not os.environ.get("CI"), reason="chromium is not installed (apt-get install chromium)")

DEMO_KEY = "CG-demo-test-key"  # a key the simulator accepts on its public host
WEBHOOK = "http://127.0.0.1:9/services/T0AAA/B0BBB/s3cr3t-page-token"  # never called: the run alerts to a closed port
PAIRS = "BTC/USDT=bitcoin:usd,ETH/USDT=ethereum:usd"
NEW_PAIR = "SOL/USDT"  # configured after the run: no data yet

# Every chart drawn: each [data-panel] holds a Bokeh root whose canvases (in shadow roots) have ink.
PANELS_JS = """
(() => {
  const canvases = (node, out = []) => {
    if (node.tagName === 'CANVAS') out.push(node);
    if (node.shadowRoot) [...node.shadowRoot.children].forEach(child => canvases(child, out));
    [...node.children].forEach(child => canvases(child, out));
    return out;
  };
  const inked = canvas => {
    const context = canvas.width && canvas.height ? canvas.getContext('2d') : null;
    if (!context) return 0;
    const pixels = context.getImageData(0, 0, canvas.width, canvas.height).data;
    let count = 0;
    for (let i = 3; i < pixels.length; i += 4) if (pixels[i] > 0) count++;
    return count;
  };
  return [...document.querySelectorAll('[data-panel]')].map(el => ({
    panel: el.dataset.panel, pair: el.dataset.pair || null,
    ink: canvases(el).reduce((sum, canvas) => sum + inked(canvas), 0),
  }));
})()
"""

FIELDS_JS = """
(() => {
  const text = selector => [...document.querySelectorAll(selector)].map(el => el.textContent.trim());
  const rows = [...document.querySelectorAll('table[data-table=freshness] tr[data-pair]')].map(tr => ({
    pair: tr.dataset.pair, timeframe: tr.dataset.timeframe,
    latest: tr.querySelector('[data-field=latest]').textContent.trim(),
    filled: tr.querySelector('[data-field=filled]').textContent.trim(),
    candles: tr.querySelector('[data-field=candles]').textContent.trim(),
  }));
  return {
    exit_code: text('[data-field=last-exit-code]')[0], gap_count: text('[data-field=gap-count]')[0],
    outcome: text('[data-field=last-run-outcome]')[0], last_success: text('[data-field=last-success]')[0],
    gap_rows: document.querySelectorAll('table[data-table=gaps] tr').length - 1,
    healed: [...document.querySelectorAll('table[data-table=healed] tr')].slice(1).map(tr => [...tr.cells].map(td => td.textContent.trim())),
    banners: [...document.querySelectorAll('[data-banner]')].map(el => [el.dataset.banner, el.textContent]),
    empty: [...document.querySelectorAll('[data-empty]')].map(el => [el.dataset.empty, el.dataset.pair || null, el.textContent]),
    freshness: rows,
  };
})()
"""


def hours_ago(hours: float) -> float:
    now = datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0)
    return (now - timedelta(hours=hours)).timestamp()


@contextmanager
def clean_page(path: Path, profile: Path, charts: bool = True) -> Iterator[tuple[Browser, dict[str, Any], list[dict[str, Any]]]]:
    """Open the page in Chromium (waiting until BokehJS has drawn every chart, when it has any),
    check that it logged no error and loaded nothing from elsewhere, yield (browser, fields, panels)
    and close the browser afterwards."""
    profile.mkdir(parents=True, exist_ok=True)
    browser = Browser(profile)
    try:
        browser.open(path.resolve().as_uri())
        if charts:
            browser.wait_until(f"(() => {{ const p = {PANELS_JS.strip()}; return p.length > 0 && p.every(x => x.ink > 0); }})()")
        fields, panels = browser.evaluate(FIELDS_JS), browser.evaluate(PANELS_JS)
        assert_offline_and_clean(browser)
        yield browser, fields, panels
    finally:
        browser.close()


def assert_offline_and_clean(browser: Browser) -> None:
    assert browser.errors() == []
    remote = [url for url in browser.requested_urls() if not url.startswith(("file:", "data:", "blob:"))]
    assert remote == [], remote


def assert_not_blank(png: bytes) -> None:
    image = Image.open(io.BytesIO(png)).convert("RGB")
    assert image.width >= 800 and image.height >= 1500
    colours = image.getcolors(maxcolors=1 << 20) or []
    assert len(colours) > 200, "the screenshot is (nearly) blank"
    background = max(colours)[0] / (image.width * image.height)
    assert background < 0.9, f"{background:.0%} of the screenshot is one colour"


def write_page(env: dict[str, str], path: Path) -> subprocess.CompletedProcess[str]:
    result = run_cli(env, "report", "--html", str(path))
    assert result.returncode == 0, output(result)
    assert f"Data-quality page written to {path}" in result.stdout
    return result


def sql_latest(database: Any) -> dict[tuple[str, str], tuple[str, int, int]]:
    rows = query(database, "select pair, timeframe, max(ts), count(*) filter (where sample_count = 0), count(*) from public.ohlcv group by 1, 2")
    return {
        (pair, tf): ((latest.astimezone(timezone.utc).strftime("%Y-%m-%d" if tf == "1d" else "%Y-%m-%d %H:%M")), filled, count)
        for pair, tf, latest, filled, count in rows
    }


@pytest.mark.slow
def test_the_page_of_a_failed_nightly_run_in_chromium(alphadb_env, database, simulator, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    # A gap the source cannot fill (BTC, 4 h: exit 4) and a tolerated 2-hour hole (ETH: forward-filled).
    simulator.add_fault({"kind": "missing", "coin": "bitcoin", "start": hours_ago(40), "end": hours_ago(36)})
    simulator.add_fault({"kind": "missing", "coin": "ethereum", "start": hours_ago(20), "end": hours_ago(18)})
    env = {**alphadb_env, "ALPHADB_PAIRS": PAIRS, "COINGECKO_PLAN": "demo", "COINGECKO_API_KEY": DEMO_KEY,
           "SLACK_WEBHOOK_URL": WEBHOOK}
    nightly = run_cli(env, "run", timeout=600)
    assert nightly.returncode == 4, output(nightly)
    default_page = Path(env["ALPHADB_HOME"]) / "report" / "data-quality.html"
    logged = [line for line in Path(env["ALPHADB_LOG_FILE"]).read_text().splitlines() if "Data-quality page written to" in line]
    assert len(logged) == 1 and str(default_page) in logged[0] and default_page.exists()

    page = tmp_path / "page.html"
    write_page({**env, "ALPHADB_PAIRS": f"{PAIRS},{NEW_PAIR}=solana:usd"}, page)
    html = page.read_text()
    for secret in (DEMO_KEY, env["POSTGRES_PASSWORD"], "s3cr3t-page-token"):
        assert secret not in html and secret not in default_page.read_text()
    assert not re.search(r"<script[^>]+src=|<link[^>]+href=\"https?:", html)  # nothing loaded from elsewhere

    with clean_page(page, tmp_path / "profile") as (browser, fields, panels):
        assert_not_blank(browser.screenshot())

    # One chart per pair and panel, each drawn; the pair without data says so instead.
    drawn = sorted((p["panel"], p["pair"]) for p in panels)
    assert drawn == sorted([("coverage", None), ("runs", None)] + [
        (f"candles-{tf}", pair) for pair in ("BTC/USDT", "ETH/USDT") for tf in ("1h", "1d")
    ])
    empty = {(kind, pair): text for kind, pair, text in fields["empty"]}
    for tf in ("1h", "1d"):
        assert "nothing is loaded yet" in empty[(f"candles-{tf}", NEW_PAIR)]

    # The numbers shown are the database's.
    (exit_code,) = query(database, "select exit_code from ops.runs order by started_at desc limit 1")[0]
    assert fields["exit_code"] == str(exit_code) == "4" and fields["outcome"] == "failed (exit 4)"
    (gap_count,) = query(database, "select count(*) from public.gaps")[0]
    assert gap_count >= 1 and fields["gap_count"] == str(gap_count) == str(fields["gap_rows"])
    expected = sql_latest(database)
    shown = {(row["pair"], row["timeframe"]): row for row in fields["freshness"]}
    for key, (latest, filled, count) in expected.items():
        assert (shown[key]["latest"], shown[key]["filled"], shown[key]["candles"]) == (latest, str(filled), str(count))
    assert int(shown[("BTC/USDT", "1h")]["filled"]) >= 4 and int(shown[("ETH/USDT", "1h")]["filled"]) >= 1
    assert shown[(NEW_PAIR, "1h")]["candles"] == "0"
    # One run only, and it failed: both said in words, with the failure's message.
    banners = dict(fields["banners"])
    assert "Only one run recorded" in banners["one-run"]
    assert "failed with exit code 4" in banners["last-run-failed"] and "Gap the source cannot fill" in banners["last-run-failed"]
    assert fields["last_success"] == "none yet"
    # The heal step recorded the gap it could not fill; nothing healed, and the page says so.
    assert query(database, "select pair, timeframe, healed from ops.run_gaps") == [("BTC/USDT", "1h", False)]
    assert fields["healed"] == [] and "healed" in {kind for kind, _pair, _text in fields["empty"]}

    # A second run that succeeds: the header follows it, the history chart has both runs.
    simulator.clear_faults()
    assert run_cli(env, "load").returncode == 0
    write_page(env, page)
    with clean_page(page, tmp_path / "profile2") as (browser, fields, panels):
        bars = browser.evaluate("Bokeh.documents[0].get_model_by_name('run-history').x_range.factors.length")
    (started,) = query(database, "select max(started_at) from ops.runs where exit_code = 0")[0]
    assert bars == 2 and fields["outcome"] == "succeeded" and fields["exit_code"] == "0"
    assert fields["last_success"] == started.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M")
    assert {kind for kind, _ in fields["banners"]}.isdisjoint({"one-run", "last-run-failed"})


def test_an_empty_database_renders_with_messages(alphadb_env, database, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    page = tmp_path / "empty.html"
    write_page(alphadb_env, page)
    with clean_page(page, tmp_path / "profile", charts=False) as (_browser, fields, panels):
        pass
    assert panels == []
    assert {kind for kind, _ in fields["banners"]} == {"no-runs", "no-candles"}
    assert {kind for kind, _pair, _text in fields["empty"]} >= {"coverage", "runs", "tests", "candles-1h", "candles-1d"}
    assert fields["exit_code"] == "—" and fields["gap_count"] == "0"


def test_report_html_default_path_and_unwritable_path(alphadb_env, database, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    result = run_cli(alphadb_env, "report", "--html")
    assert result.returncode == 0, output(result)
    default_page = Path(alphadb_env["ALPHADB_HOME"]) / "report" / "data-quality.html"
    assert f"Data-quality page written to {default_page}" in result.stdout and "AlphaDB data quality" in default_page.read_text()
    blocked = tmp_path / "file"
    blocked.write_text("")
    failed = subprocess.run([*alphadb_command(), "report", "--html", str(blocked / "page.html")], env=alphadb_env,
                            capture_output=True, text=True, timeout=120)
    assert failed.returncode == 1 and "Traceback" not in output(failed)
    assert f"cannot write the data-quality page {blocked / 'page.html'}" in failed.stderr


@pytest.mark.slow
def test_a_healed_gap_is_recorded_and_shown(alphadb_env, database, simulator, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    # Four hours missing from the first answer only: the heal step's re-fetch fills them.
    simulator.add_fault({"kind": "missing", "coin": "ethereum", "start": hours_ago(40), "end": hours_ago(36), "remaining_requests": 1})
    env = {**alphadb_env, "ALPHADB_PAIRS": PAIRS}
    nightly = run_cli(env, "run", timeout=600)
    assert nightly.returncode == 0, output(nightly)
    (gap,) = query(database, "select pair, timeframe, gap_start, gap_end, missing_buckets, healed, run_id from ops.run_gaps")
    assert gap[:2] == ("ETH/USDT", "1h") and gap[4] >= 3 and gap[5] is True
    assert query(database, "select count(*) from public.gaps") == [(0,)]

    page = tmp_path / "page.html"
    write_page(env, page)
    with clean_page(page, tmp_path / "profile") as (_browser, fields, _panels):
        pass
    pair, timeframe, start, end, missing, _healed, run_id = gap
    (run_started,) = query(database, "select started_at from ops.runs where run_id = %s", (run_id,))[0]
    stamp = "%Y-%m-%d %H:%M"
    assert fields["healed"] == [[
        pair, timeframe, start.astimezone(timezone.utc).strftime(stamp), end.astimezone(timezone.utc).strftime(stamp),
        str(missing), f"#{run_id} ({run_started.astimezone(timezone.utc).strftime(stamp)})",
    ]]
    assert fields["gap_count"] == "0" and fields["outcome"] == "succeeded"

"""status.sh's freshness line and JSON: the newest aggregate from the history store, and
the history named (password masked) when it cannot be read."""

from datetime import datetime, timedelta, timezone

from crypto_pipeline.core.history import open_history, sqlite_url
from crypto_pipeline.core.settings import Settings
from crypto_pipeline.ops import control
from support.dashboard_support import aggregate
from support.helpers import free_port


def settings_with(tmp_path, history_url: str) -> Settings:
    return Settings.load(environ={}, env_file=None).replace(
        history_url=history_url, run_dir=tmp_path / "run")


def test_the_newest_aggregate_comes_from_the_history_store(tmp_path):
    settings = settings_with(tmp_path, sqlite_url(tmp_path / "history.sqlite"))
    emitted = datetime.now(timezone.utc) - timedelta(seconds=30)
    with open_history(settings.history_url) as history:
        history.upsert([aggregate("BTCUSDT", emitted - timedelta(minutes=5), 1.0,
                                  emitted_at=emitted)])
    report = control.status_report(settings, expected=[])
    assert report.history_error is None and not report.stale
    assert 30 <= report.newest_aggregate_age_seconds < 60
    assert control.status_lines(report)[-1].startswith("newest aggregate: 3")


def test_an_unavailable_history_is_named_without_its_password(tmp_path):
    url = f"postgresql://crypto:hunter2@127.0.0.1:{free_port()}/crypto"
    report = control.status_report(settings_with(tmp_path, url), expected=[])
    line = control.status_lines(report)[-1]
    assert line.startswith("newest aggregate: unknown, history unavailable (HISTORY_URL="
                           "postgresql://crypto:***@127.0.0.1:")
    assert "Connection refused" in line and "hunter2" not in line
    assert control.status_json(report)["newest_aggregate"]["history_error"] == \
        report.history_error


def test_the_last_error_is_of_the_run_the_supervisor_started(tmp_path):
    """start.sh marks each start in the log; a mark well before the supervisor's start
    belongs to another run (a supervisor a test started logs elsewhere)."""
    log = tmp_path / "spark.log"
    log.write_text(f"{control.start_mark('spark')}\n"
                   "26/12/01 16:17:41 ERROR DataWritingSparkTask: Aborted commit\n")
    now = datetime.now(timezone.utc).timestamp()
    assert "Aborted commit" in control.last_error_line(log, now)
    assert control.last_error_line(log, now + 3 * 3600) is None
    log.write_text(log.read_text() + f"{control.start_mark('spark')}\nall well\n")
    assert control.last_error_line(log, now) is None

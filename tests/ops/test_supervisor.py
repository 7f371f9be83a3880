"""The supervisor behind start.sh: restarts crashes with backoff, leaves clean exits and
configuration errors alone, stops its child on SIGTERM."""

import signal
import subprocess
import sys
import textwrap

from crypto_pipeline.core.backoff import backoff_seconds
from crypto_pipeline.core.processes import pid_alive
from crypto_pipeline.core.settings import EXIT_CONFIG_ERROR
from crypto_pipeline.ops.supervisor import RESTART_BACKOFF, pid_file
from support.helpers import supervisor_status, wait_for

RUNNER = textwrap.dedent("""
    import sys
    from pathlib import Path
    from crypto_pipeline.ops.components import Component
    from crypto_pipeline.ops.supervisor import Supervisor
    run_dir, script = sys.argv[1], sys.argv[2]
    component = Component("child", [sys.executable, "-c", script], (), lambda s, t: None,
                          stop_timeout=5)
    sys.exit(Supervisor(component, Path(run_dir)).run())
""")


def supervise(tmp_path, script: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", RUNNER, str(tmp_path), script],
                            env={"PYTHONPATH": "src", "PATH": "/usr/bin:/bin"},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_backoff_doubles_and_is_capped():
    assert [backoff_seconds(n, **RESTART_BACKOFF) for n in (1, 2, 3, 4)] == [1, 2, 4, 8]
    assert backoff_seconds(30, **RESTART_BACKOFF) == 60


def test_a_crashing_child_is_restarted_with_backoff(tmp_path):
    counter = tmp_path / "runs"
    script = (f"import pathlib, sys; p = pathlib.Path({str(counter)!r}); "
              f"n = len(p.read_text()) if p.exists() else 0; p.write_text('x' * (n + 1)); "
              f"sys.exit(0 if n >= 2 else 3)")
    process = supervise(tmp_path, script)
    output, _ = process.communicate(timeout=60)
    assert process.returncode == 0, output
    assert counter.read_text() == "xxx"
    assert "restart 1 in 1s" in output and "restart 2 in 2s" in output
    status = supervisor_status(tmp_path, "child")
    assert status.restarts == 2 and status.state == "stopped"
    assert not pid_file(tmp_path, "child").exists()


def test_a_configuration_error_is_not_restarted(tmp_path):
    process = supervise(tmp_path, f"import sys; sys.exit({EXIT_CONFIG_ERROR})")
    output, _ = process.communicate(timeout=30)
    assert process.returncode == EXIT_CONFIG_ERROR
    assert "configuration error" in output and "restart" not in output.split("not restarting")[1]
    assert supervisor_status(tmp_path, "child").restarts == 0


def test_sigterm_stops_the_child_and_the_supervisor(tmp_path):
    process = supervise(tmp_path, "import time\nwhile True: time.sleep(1)")
    try:
        status = wait_for(lambda: supervisor_status(tmp_path, "child").child_pid, 20,
                          "the child to start")
        assert pid_file(tmp_path, "child").read_text().strip() == str(process.pid)
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=20)
        assert process.returncode == 0
        wait_for(lambda: not pid_alive(status), 10, "the child to be gone")
    finally:
        if process.poll() is None:
            process.kill()


def test_killing_the_supervisor_takes_the_child_down(tmp_path):
    process = supervise(tmp_path, "import time\nwhile True: time.sleep(1)")
    child = wait_for(lambda: supervisor_status(tmp_path, "child").child_pid,
                     20, "the child to start")
    process.kill()
    process.wait(timeout=10)
    wait_for(lambda: not pid_alive(child), 10, "the orphaned child to die")

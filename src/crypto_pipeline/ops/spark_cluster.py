"""A Spark standalone cluster (one master, one worker) from the installed pyspark.

For trying SPARK_MASTER=spark://... on one machine, and for the test that the job gives
the same aggregates on a cluster as in local mode. pyspark's pip package ships
`bin/spark-class` but not the sbin start scripts, so the master and the worker are
started with spark-class directly.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

from crypto_pipeline.core.paths import LOG_DIR
from crypto_pipeline.core.processes import die_with_parent, pid_alive
from crypto_pipeline.core.settings import Settings, exit_config_error
from crypto_pipeline.core.waiting import wait_until

log = logging.getLogger(__name__)


def spark_home() -> Path:
    import pyspark

    return Path(pyspark.__file__).parent


@dataclass
class LocalSparkCluster:
    log_dir: Path
    host: str = "127.0.0.1"
    master_port: int = 7077
    master_ui_port: int = 8080
    worker_ui_port: int = 8081
    worker_cores: int = 2
    worker_memory: str = "2g"
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)

    @property
    def master_url(self) -> str:
        return f"spark://{self.host}:{self.master_port}"

    def commands(self) -> dict[str, list[str]]:
        spark_class = str(spark_home() / "bin" / "spark-class")
        return {
            "spark-master": [spark_class, "org.apache.spark.deploy.master.Master",
                             "--host", self.host, "--port", str(self.master_port),
                             "--webui-port", str(self.master_ui_port)],
            "spark-worker": [spark_class, "org.apache.spark.deploy.worker.Worker",
                             "--host", self.host, "--webui-port", str(self.worker_ui_port),
                             "--cores", str(self.worker_cores), "--memory", self.worker_memory,
                             self.master_url],
        }

    def start(self, *, detached: bool = False, timeout: float = 120.0) -> "LocalSparkCluster":
        """Start the master, then the worker; return once the worker is registered.
        Detached processes outlive this one (for the command line), others die with it."""
        env = {**os.environ, "SPARK_HOME": str(spark_home()), "SPARK_LOCAL_IP": self.host}
        self.log_dir.mkdir(parents=True, exist_ok=True)
        for name, command in self.commands().items():
            with open(self.log_dir / f"{name}.log", "ab") as output:
                self.processes[name] = subprocess.Popen(
                    command, env=env, stdout=output, stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL, start_new_session=True,
                    preexec_fn=None if detached else die_with_parent)
            log.info("%s started (pid %d, log %s)", name, self.processes[name].pid,
                     self.log_dir / f"{name}.log")
        self.wait_ready(timeout)
        return self

    def alive_workers(self) -> int:
        try:
            with urllib.request.urlopen(f"http://{self.host}:{self.master_ui_port}/json/",
                                        timeout=2) as response:
                return int(json.load(response).get("aliveworkers", 0))
        except (OSError, ValueError):
            return 0

    def wait_ready(self, timeout: float) -> None:
        def exited() -> str | None:
            for name, process in self.processes.items():
                if process.poll() is not None:
                    return (f"{name} exited with code {process.returncode}; see "
                            f"{self.log_dir / (name + '.log')}")
            return None

        wait_until(lambda: self.alive_workers() >= 1, timeout,
                   f"worker registered with {self.master_url}", interval=0.5, give_up=exited)

    def stop(self) -> None:
        for process in reversed(list(self.processes.values())):
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in self.processes.values():
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def run_command(settings: Settings, action: str) -> int:
    """`pipelinectl spark-cluster start|stop`: a detached master and worker for
    SPARK_MASTER=spark://..., their pids in RUN_DIR."""
    master = urlparse(settings.spark_master)
    if master.scheme != "spark":
        exit_config_error(f"SPARK_MASTER={settings.spark_master}: set it to "
                          f"spark://127.0.0.1:7077 to use a standalone cluster")
    cluster = LocalSparkCluster(LOG_DIR, host=master.hostname, master_port=master.port or 7077,
                                worker_cores=settings.spark_worker_cores,
                                worker_memory=settings.spark_worker_memory)
    pid_files = {name: settings.run_dir / f"{name}.pid" for name in cluster.commands()}
    if action == "start":
        if any(path.exists() and pid_alive(int(path.read_text())) for path in pid_files.values()):
            print("the Spark cluster is already running: pipelinectl spark-cluster stop")
            return 1
        cluster.start(detached=True)
        settings.run_dir.mkdir(parents=True, exist_ok=True)
        for name, process in cluster.processes.items():
            pid_files[name].write_text(f"{process.pid}\n")
        print(f"Spark master {cluster.master_url} (UI http://{cluster.host}:"
              f"{cluster.master_ui_port}), one worker registered")
        return 0
    for name, path in pid_files.items():
        if path.exists():
            pid = int(path.read_text())
            if pid_alive(pid):
                os.killpg(pid, signal.SIGTERM)
            path.unlink()
            print(f"stopped {name}")
    return 0

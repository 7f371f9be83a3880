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
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from crypto_pipeline.processes import die_with_parent

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
        deadline = time.monotonic() + timeout
        while self.alive_workers() < 1:
            for name, process in self.processes.items():
                if process.poll() is not None:
                    raise RuntimeError(f"{name} exited with code {process.returncode}; see "
                                       f"{self.log_dir / (name + '.log')}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"no worker registered with {self.master_url} after "
                                   f"{timeout:.0f}s")
            time.sleep(0.5)

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

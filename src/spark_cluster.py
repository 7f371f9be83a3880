"""A local Spark standalone cluster (master + worker) for SPARK_MASTER=spark://...

    python3 src/spark_cluster.py start    # master on the SPARK_MASTER port (7077), UI :8080
    python3 src/spark_cluster.py stop
    SPARK_MASTER=spark://127.0.0.1:7077 ./start.sh spark

The worker takes SPARK_WORKER_CORES (default 2) cores and SPARK_WORKER_MEMORY (2g).
Logs: logs/spark-master.log, logs/spark-worker.log; pids in RUN_DIR.
"""

import os
import signal
import sys
from urllib.parse import urlparse

from crypto_pipeline import logs
from crypto_pipeline.paths import LOG_DIR
from crypto_pipeline.processes import pid_alive
from crypto_pipeline.settings import exit_config_error, load_or_exit
from crypto_pipeline.spark_cluster import LocalSparkCluster


def main() -> int:
    if len(sys.argv) != 2 or sys.argv[1] not in ("start", "stop"):
        exit_config_error("usage: spark_cluster.py start|stop")
    settings = load_or_exit()
    logs.configure(settings.log_level)
    master = urlparse(settings.spark_master)
    if master.scheme != "spark":
        exit_config_error(f"SPARK_MASTER={settings.spark_master}: set it to "
                          f"spark://127.0.0.1:7077 to use a standalone cluster")
    cluster = LocalSparkCluster(LOG_DIR, host=master.hostname, master_port=master.port or 7077,
                                worker_cores=int(os.environ.get("SPARK_WORKER_CORES", "2")),
                                worker_memory=os.environ.get("SPARK_WORKER_MEMORY", "2g"))
    pid_files = {name: settings.run_dir / f"{name}.pid" for name in cluster.commands()}
    if sys.argv[1] == "start":
        if any(path.exists() and pid_alive(int(path.read_text())) for path in pid_files.values()):
            print("the Spark cluster is already running: python3 src/spark_cluster.py stop")
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


if __name__ == "__main__":
    sys.exit(main())

"""Running the pipeline: components, supervisors, start/stop/status, the embedded broker's
process, the local Spark cluster, and the pipelinectl CLI (src/pipelinectl.py)."""

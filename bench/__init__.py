"""The benchmark behind ./bench.sh (tooling: nothing in src/ imports it)."""

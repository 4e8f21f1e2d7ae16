"""Turn metrics, JSONL traces, Prometheus exposition."""

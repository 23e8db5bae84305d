"""`baton serve`: any router behind an OpenAI-compatible API.

app.py (create_app, cli_serve) - schema.py (OpenAI request/response/error bodies) - loading.py
(--router specs -> ServingRouters) - fallback.py (the server's CallFn: retries, fallback,
cooldowns) - compliance.py (tenant rules) - auth.py (API keys -> tenants) - decision_log.py
(one JSONL record per request) - logs.py (`baton logs summarize`) - metrics.py (Prometheus) -
batcher.py (coordinator micro-batching) - export.py (`baton export`) - config.py (--config).
"""

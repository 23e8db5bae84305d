"""`baton serve`: any router behind an OpenAI-compatible API (FastAPI + uvicorn).

    POST /v1/chat/completions   routed answer; `stream: true` gives OpenAI chunks over SSE
    GET  /v1/models             one model per loaded router
    GET  /health                routers, worker cooldowns, whether auth is on
    GET  /metrics               Prometheus text

Model names: a router's name (`random`, `trinity-demo`), or RouteLLM style `router-<name>-<lam>`
whose number is the cost/quality trade-off `lam` for that request (also `extra_body={"lam": x}`).
The reply's `model` is the router's name; `usage` splits orchestration from worker tokens (and
counts intermediate calls apart); the routing trace comes back in the `baton_route` field and,
compact, the `x-baton-route` header. Requests are the OpenAI schema with an allow-list
(schema.py): what a route cannot honour is a 400 naming the field.
`stream: true` streams the answering worker's own tokens as they arrive when the router's last
call answers (baselines, TRINITY selection, a last Worker turn, a workflow's last step); the
route then rides on the finish chunk (no header: it is not known when the headers leave). Other
episodes stream their finished answer. A failure after the first token ends the stream with an
OpenAI-style error event.
Every chat request (answered, refused, cut off) writes exactly one decision-log record, before
its reply (for a live stream: before the finish chunk).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import sys
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response, StreamingResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from routers.errors import BatonError
from routers.pool.base import PASSTHROUGH_PARAMS
from routers.serve.auth import KeyStore
from routers.serve.config import ServeConfig
from routers.serve.decision_log import DecisionLog
from routers.serving_router import Episode, ServingRouter
from routers.serve.fallback import (CannotHonour, NoEligibleWorker, RequestCaller, StreamBroken, StreamSink,
                                    WorkerHealth)
from routers.serve.compliance import RuleSet
from routers.serve.metrics import Metrics
from routers.serve.schema import (ALLOWED_FIELDS, APIError, ChatCompletionRequest, SafeJSONResponse, chunk,
                                  answer_message, completion_body, completion_id, delta_chunk, final_chunks, json_bytes,
                                  model_card, stream_chunks, unknown_fields)

DEFAULT_LOG = "logs/decisions.jsonl"
MAX_JSON_DEPTH = 64          # deeper request bodies are refused (no OpenAI field nests past ~10)
_ROUTELLM = re.compile(r"^router-(?P<name>.+)-(?P<lam>\d+(?:\.\d*)?(?:[eE][-+]?\d+)?)$")


def _error_response(e: APIError) -> SafeJSONResponse:
    return SafeJSONResponse(e.body(), status_code=e.status, headers=e.headers)


def _depth_exceeds(value: Any, limit: int) -> bool:
    """Whether `value` nests lists/objects deeper than `limit` (iterative: no recursion to blow)."""
    stack = [(value, 1)]
    while stack:
        v, d = stack.pop()
        if isinstance(v, (list, dict)):
            if d > limit:
                return True
            stack.extend((x, d + 1) for x in (v.values() if isinstance(v, dict) else v))
    return False


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not valid JSON")


def _validation_message(errors: list[dict[str, Any]]) -> tuple[str, str | None]:
    err = errors[0]
    named = (err.get("ctx") or {}).get("error")
    if getattr(named, "field", None):           # a request-level check that names its field
        return str(named), named.field
    loc = ".".join(str(x) for x in err.get("loc", ()) if x != "body")
    msg = str(err.get("msg", "invalid value")).removeprefix("Value error, ")
    return (f"{loc}: {msg}" if loc else msg), (loc or None)


class Gateway:
    """One server's state: routers, pool, worker health, tenants' rules, log and metrics."""

    def __init__(self, routers: dict[str, ServingRouter], pool, *, log_path: str | Path,
                 keys: KeyStore | None, rules: RuleSet | None, config: ServeConfig | None):
        if not routers:
            raise BatonError("serve: no router to serve")
        self.routers, self.pool = dict(routers), pool
        self.config = config or ServeConfig()
        self.keys = keys or KeyStore(None)
        self.rules = rules or RuleSet([])
        self.log = DecisionLog(log_path, redact_content=self.config.redact_content,
                               fsync_window_s=self.config.log_fsync_window_ms / 1000)
        self.metrics = Metrics()
        self.health = WorkerHealth(pool, self.config.fallback)
        for w in pool.workers.values():   # the server owns retries (per pool limits), not the backend
            if hasattr(w, "retries"):
                w.retries = 0

    # -- request pieces ------------------------------------------------------------------------
    def tenant(self, request: Request) -> str:
        t = self.keys.tenant(request.headers.get("authorization"))
        if t is None:
            raise APIError(401, "invalid or missing API key: send 'Authorization: Bearer <key>'",
                           code="invalid_api_key")
        return t

    async def body(self, request: Request) -> ChatCompletionRequest:
        limit = self.config.max_body_bytes
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > limit:
            raise APIError(413, f"request body of {declared} bytes exceeds the limit of {limit} bytes",
                           code="request_too_large")
        raw = bytearray()
        async for chunk in request.stream():
            raw += chunk
            if len(raw) > limit:
                raise APIError(413, f"request body exceeds the limit of {limit} bytes", code="request_too_large")
        try:
            data = json.loads(bytes(raw) or b"null", parse_constant=_no_constant)
        except (json.JSONDecodeError, UnicodeDecodeError, ValueError) as e:
            raise APIError(400, f"request body is not valid JSON ({e})", code="invalid_json") from None
        except RecursionError:
            data = None
            raise APIError(400, f"request body is nested too deeply (limit {MAX_JSON_DEPTH} levels)",
                           code="invalid_request") from None
        if _depth_exceeds(data, MAX_JSON_DEPTH):
            raise APIError(400, f"request body is nested too deeply (limit {MAX_JSON_DEPTH} levels)",
                           code="invalid_request")
        if not isinstance(data, dict):
            raise APIError(400, f"request body must be a JSON object, got {type(data).__name__}",
                           code="invalid_request")
        unknown = unknown_fields(data)
        if unknown:
            raise APIError(400, f"{unknown[0]}: unknown or unsupported field (baton forwards these OpenAI "
                           f"fields: {', '.join(ALLOWED_FIELDS)}; see routers/serve/schema.py)",
                           param=unknown[0], code="unsupported_parameter")
        try:
            req = ChatCompletionRequest.model_validate(data)
        except ValidationError as e:
            msg, param = _validation_message(e.errors())
            raise APIError(400, msg, param=param, code="invalid_request") from None
        if len(req.messages) > self.config.max_messages:
            raise APIError(400, f"messages: {len(req.messages)} messages exceed the limit of "
                           f"{self.config.max_messages}", param="messages", code="invalid_request")
        return req, data

    def resolve(self, model: str, lam: float | None) -> tuple[ServingRouter, float]:
        """The router and trade-off a model name asks for."""
        if model in self.routers:
            return self.routers[model], float(lam or 0.0)
        m = _ROUTELLM.match(model)
        if m and m["name"] in self.routers:
            return self.routers[m["name"]], float(lam if lam is not None else m["lam"])
        raise APIError(404, f"model {model!r} does not exist; served: {', '.join(self.routers)} "
                       f"(or router-<name>-<lam>)", param="model", code="model_not_found")

    def route_summary(self, rid: str, router: ServingRouter, lam: float, tenant: str, episode: Episode,
                      caller: RequestCaller, latency: float) -> dict[str, Any]:
        t = episode.trace()
        return {"request_id": rid, "router": router.name, "lam": lam, "tenant": tenant,
                "steps": t["steps"], "orchestration": t["orchestration"], "cost": t["cost"],
                "fallbacks": caller.fallbacks, "latency_s": round(latency, 6),
                "excluded": [x for c in caller.calls for x in c["excluded"]]}

    @staticmethod
    def route_header(route: dict[str, Any]) -> str:
        return json.dumps({"id": route["request_id"], "router": route["router"],
                           "workers": [s["worker"] for s in route["steps"]],
                           "roles": [s["role"] for s in route["steps"]], "fallbacks": route["fallbacks"],
                           "cost": route["cost"], "latency_s": route["latency_s"]},
                          separators=(",", ":"), ensure_ascii=True)

    # -- the decision log: a failed write is reported, never turns an answer into an error --------
    async def record(self, rec: dict[str, Any]) -> str | None:
        """Write `rec` (group commit); on failure say why on stderr and in /metrics and return it
        (the reply carries it in `x-baton-log`): the request was answered and paid for."""
        try:
            await self.log.awrite(rec)
            return None
        except Exception as e:  # noqa: BLE001 - a disk error must not lose the client's answer
            return self._log_failed(rec, e)

    def record_sync(self, rec: dict[str, Any]) -> None:
        try:
            self.log.write(rec)
        except Exception as e:  # noqa: BLE001
            self._log_failed(rec, e)

    def _log_failed(self, rec: dict[str, Any], e: BaseException) -> str:
        self.metrics.log_failures.inc()
        why = f"{type(e).__name__}: {e}"
        print(f"baton serve: decision log write failed for {rec.get('request_id')} (status "
              f"{rec.get('status')}, cost {rec.get('cost')}): {why}", file=sys.stderr, flush=True)
        return "failed; " + why.encode("ascii", "replace").decode()[:200]

    # -- the chat endpoint ------------------------------------------------------------------------
    async def chat(self, request: Request) -> Response:
        rid = "req-" + uuid.uuid4().hex[:20]
        t0 = time.perf_counter()
        rec: dict[str, Any] = {"request_id": rid, "time": datetime.now(timezone.utc).isoformat(),
                               "router": None, "model": None, "tenant": None, "lam": None, "stream": None}
        status, router_label, caller, task = 200, "-", None, None
        try:
            tenant = rec["tenant"] = self.tenant(request)
            req, raw = await self.body(request)
            rec.update(model=req.model, stream=req.stream)
            router, lam = self.resolve(req.model, req.lam)
            router_label = rec["router"] = router.name
            rec["lam"] = lam
            messages = req.plain_messages()
            rec["messages"] = self.log.messages(raw["messages"])
            sink = StreamSink() if req.stream else None
            caller = RequestCaller(self.pool, self.health, self.rules.for_tenant(tenant), self.config.fallback,
                                   base_params=req.worker_params(), on_attempt=self.metrics.attempt,
                                   request_messages=messages, full_messages=raw["messages"],
                                   passthrough={k: raw[k] for k in PASSTHROUGH_PARAMS if raw.get(k) is not None},
                                   needs=req.needs_single_worker(), sink=sink)
            include_usage = bool(req.stream_options and req.stream_options.include_usage)
            if sink is None:
                episode = await self._answer(router, messages, caller, lam)
            else:                              # the answer may start streaming before the episode ends
                task = asyncio.ensure_future(self._answer(router, messages, caller, lam))
                started = asyncio.ensure_future(sink.started.wait())
                try:
                    await asyncio.wait({task, started}, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    started.cancel()
                if sink.started.is_set():      # the answering worker is streaming: pass it on live
                    live = self._live(rid, t0, rec, router, lam, tenant, caller, sink, task, include_usage)
                    return StreamingResponse(live, media_type="text/event-stream", headers={"x-request-id": rid})
                episode = await task
            latency = time.perf_counter() - t0
            route = self.route_summary(rid, router, lam, tenant, episode, caller, latency)
            self._record_success(rec, episode, route, caller)
            headers = {"x-baton-route": self.route_header(route), "x-request-id": rid}
            cid = completion_id()
            log_error = await self.record(rec)
            if log_error:
                headers["x-baton-log"] = log_error
            if req.stream:
                chunks = stream_chunks(cid, router.name, episode, route, include_usage)
                return StreamingResponse(_sse(chunks), media_type="text/event-stream", headers=headers)
            return SafeJSONResponse(completion_body(cid, router.name, episode, route), headers=headers)
        except APIError as e:
            status = e.status
            self._record_error(rec, e, caller)
            await self.record(rec)
            return _error_response(e)
        except asyncio.CancelledError:   # the client went away mid-request: still one record
            status = 499
            if task is not None:
                task.cancel()
            self._record_error(rec, APIError(499, "client disconnected before the answer", code="cancelled"), caller)
            self.record_sync(rec)
            raise
        except Exception as e:  # noqa: BLE001 - a bug answers 500 with a reason; the server stays up
            status = 500
            err = APIError(500, f"internal error while routing: {type(e).__name__}: {e}", code="internal_error")
            self._record_error(rec, err, caller)
            await self.record(rec)
            return _error_response(err)
        finally:
            m = self.metrics
            m.requests.labels(router_label, str(status)).inc()
            m.latency.labels(router_label).observe(time.perf_counter() - t0)

    @staticmethod
    async def _answer(router: ServingRouter, messages, caller: RequestCaller, lam: float) -> Episode:
        """The router's episode; its refusals as the client's errors."""
        try:
            return await router.answer(messages, caller, lam=lam)
        except NoEligibleWorker as e:
            raise APIError(e.status, str(e), code=e.code) from None
        except CannotHonour as e:
            raise APIError(400, str(e), param=e.field, code="unsupported_for_route") from None
        except StreamBroken:
            raise
        except BatonError as e:      # the router refused this input (e.g. nothing to route)
            raise APIError(400, str(e), code="invalid_request") from None

    async def _live(self, rid: str, t0: float, rec: dict[str, Any], router: ServingRouter, lam: float,
                    tenant: str, caller: RequestCaller, sink: StreamSink, task: asyncio.Future,
                    include_usage: bool):
        """SSE of a live answer: the worker's pieces as they come, then the finish chunk (with the
        route), the usage chunk when asked, [DONE]. A failure after the first piece ends the stream
        with an OpenAI-style error event; a client that leaves still gets its record (499)."""
        cid, created, model = completion_id(), int(time.time()), router.name
        recorded = False
        try:
            yield _event(chunk(cid, model, created, {"role": "assistant", "content": ""}))
            rec["ttft_s"] = round(time.perf_counter() - t0, 6)
            while not (task.done() and sink.queue.empty()):   # a router that fails elsewhere ends it too
                get = asyncio.ensure_future(sink.queue.get())
                await asyncio.wait({get, task}, return_when=asyncio.FIRST_COMPLETED)
                if not get.done():
                    get.cancel()
                    continue
                kind, item = get.result()
                if kind != "delta":
                    break
                yield _event(delta_chunk(cid, model, created, item))
            try:
                episode = await task
            except Exception as e:  # noqa: BLE001 - after the 200 went out, every failure is an error event
                why = e.error if isinstance(e, StreamBroken) else e
                err = APIError(502, f"the answer failed after streaming began: {why}", code="stream_interrupted")
                self._record_error(rec, err, caller)
                rec.update(status=200, outcome="stream_error")   # the 200 had already been sent
                recorded = True
                await self.record(rec)
                yield _event(err.body())
                return
            latency = time.perf_counter() - t0
            route = self.route_summary(rid, router, lam, tenant, episode, caller, latency)
            self._record_success(rec, episode, route, caller)
            recorded = True
            await self.record(rec)
            for c in final_chunks(cid, model, created, episode, route, include_usage):
                yield _event(c)
            yield b"data: [DONE]\n\n"
        finally:
            if not task.done():
                task.cancel()
            if not recorded:              # the client left mid-stream (or a bug): still one record
                self._record_error(rec, APIError(499, "client disconnected during the stream", code="cancelled"),
                                   caller)
                self.record_sync(rec)

    def _record_success(self, rec: dict[str, Any], ep: Episode, route: dict[str, Any],
                        caller: RequestCaller) -> None:
        calls = caller.calls
        rec.update(outcome="ok", status=200, candidates=[s["candidates"] for s in route["steps"]],
                   chosen=[{"worker": s["worker"], "role": s["role"]} for s in route["steps"]],
                   steps=route["steps"], calls=calls,
                   tokens={"orchestration_input": ep.orchestration_input_tokens,
                           "orchestration_output": ep.orchestration_output_tokens,
                           "worker_input": ep.worker_input_tokens, "worker_output": ep.worker_output_tokens,
                           "intermediate_input": sum(x.reply.input_tokens for x in ep.intermediate_steps),
                           "intermediate_output": sum(x.reply.output_tokens for x in ep.intermediate_steps)},
                   finish_reason=answer_message(ep)[1],
                   cost=ep.cost, fallbacks=route["fallbacks"], orchestration_latency_s=ep.orchestration_latency_s,
                   latency_s=route["latency_s"])
        m, r = self.metrics, route["router"]
        m.orchestration.labels(r).observe(ep.orchestration_latency_s)
        m.fallbacks.labels(r).inc(route["fallbacks"])
        for s in ep.steps:
            m.cost.labels(r, s.worker).inc(max(0.0, s.reply.cost))
        for kind, n in rec["tokens"].items():
            if not kind.startswith("intermediate"):     # a subset of the worker tokens
                m.tokens.labels(r, kind).inc(n)

    def _record_error(self, rec: dict[str, Any], e: APIError, caller: RequestCaller | None) -> None:
        calls = [] if caller is None else caller.calls
        rec.update(outcome="error", status=e.status, error={"code": e.code, "message": e.message},
                   calls=calls, fallbacks=sum(c["fallbacks"] for c in calls),
                   cost=0.0 if caller is None else caller.spent, latency_s=None)
        self.metrics.errors.labels(e.code or str(e.status)).inc()


def _event(obj: dict[str, Any]) -> bytes:
    return b"data: " + json_bytes(obj, default=None) + b"\n\n"


async def _sse(chunks: list[dict[str, Any]]):
    for c in chunks:
        yield _event(c)
    yield b"data: [DONE]\n\n"


def create_app(routers: dict[str, ServingRouter], pool, *, log_path: str | Path = DEFAULT_LOG,
               keys: KeyStore | None = None, rules: RuleSet | None = None,
               config: ServeConfig | None = None) -> FastAPI:
    """The FastAPI app serving `routers` over `pool`; `app.state.gateway` holds its state."""
    gw = Gateway(routers, pool, log_path=log_path, keys=keys, rules=rules, config=config)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        gw.log.close()

    app = FastAPI(title="baton", version="1", description=__doc__.split("\n\n")[0], lifespan=lifespan)
    app.state.gateway = gw

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException):
        msg = exc.detail if isinstance(exc.detail, str) else json.dumps(exc.detail)
        if exc.status_code == 404:
            msg = f"no route {request.method} {request.url.path} (see /docs)"
        return _error_response(APIError(exc.status_code, msg, code="not_found" if exc.status_code == 404 else None,
                                        headers=getattr(exc, "headers", None)))

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError):
        msg, param = _validation_message(list(exc.errors()))
        return _error_response(APIError(400, msg, param=param, code="invalid_request"))

    schema = ChatCompletionRequest.model_json_schema(ref_template="#/components/schemas/{model}")
    components = {"ChatCompletionRequest": schema, **schema.pop("$defs", {})}

    @app.post("/v1/chat/completions", openapi_extra={"requestBody": {"required": True, "content": {
        "application/json": {"schema": {"$ref": "#/components/schemas/ChatCompletionRequest"}}}}})
    async def chat_completions(request: Request) -> Response:
        """Route one chat request (OpenAI schema; `stream`, `lam` and `router-<name>-<lam>` models)."""
        return await gw.chat(request)

    @app.get("/v1/models")
    async def models(request: Request) -> Response:
        try:
            gw.tenant(request)
        except APIError as e:
            return _error_response(e)
        return SafeJSONResponse({"object": "list",
                                 "data": [model_card(n, r.describe()) for n, r in gw.routers.items()]})

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "routers": list(gw.routers), "auth": gw.keys.enabled,
                "workers": gw.health.snapshot()}

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(gw.metrics.render(), media_type=gw.metrics.content_type)

    _add_components(app, components)

    return app


def _add_components(app: FastAPI, comps: dict[str, Any]) -> None:
    """Put the request model's schemas where the spec's $refs point (the body is parsed by hand,
    so FastAPI does not know them)."""
    original = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        spec = original()
        spec.setdefault("components", {}).setdefault("schemas", {}).update(comps)
        app.openapi_schema = spec
        return spec

    app.openapi = openapi  # type: ignore[method-assign]


def cli_serve(args) -> int:
    """`baton serve`: load pool, routers, keys, rules and config; run uvicorn."""
    import uvicorn

    from routers.pool.config import load_pool
    from routers.serve.auth import load_keys
    from routers.serve.compliance import load_rules
    from routers.serve.config import load_serve_config
    from routers.serve.loading import export_pool_for
    from routers.serve.loading import load_serving_routers

    if not 0 <= int(args.port) <= 65535:
        raise BatonError(f"serve: --port {args.port} is not a TCP port (0-65535)")
    config = load_serve_config(args.config)
    pool_spec = args.pool or export_pool_for(args.router)
    if pool_spec is None:
        raise BatonError("serve: --pool is required (only a `baton export` directory brings its own pool)")
    pool = load_pool(pool_spec)
    routers = load_serving_routers(args.router, pool, device=args.device, batch=config.batch)
    keys = load_keys(args.keys)
    rules = load_rules(args.rules, pool.names)
    log_path = args.log or DEFAULT_LOG
    app = create_app(routers, pool, log_path=log_path, keys=keys, rules=rules, config=config)
    if not keys.enabled:
        print("baton serve: auth is OFF (no --keys file and no BATON_API_KEYS): every request is accepted "
              "as tenant 'default'", file=sys.stderr)
    print(f"baton serve: models {', '.join(routers)} over pool {pool_spec} ({len(pool.names)} workers) on "
          f"http://{args.host}:{args.port}/v1; decision log {Path(log_path).resolve()}", file=sys.stderr)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0

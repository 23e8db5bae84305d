"""A fault-injecting OpenAI-compatible stub server, for tests and benchmarks of anything that calls
workers over HTTP (the openai backend, the serving layer's fallback, load tests).

It is a raw asyncio HTTP/1.1 server (keep-alive, no framework) because some faults cannot be
produced through a framework: a connection reset (RST) and a body that is cut short.

Faults are chosen per request, by the model name or the `X-Stub-Fault` header, with the grammar
`stub/<fault>[x<count>][@<arg>]` (model) or `<fault>[x<count>][@<arg>]` (header):

    429      rate limited; `@<s>` sets Retry-After seconds (default 1), `@date<s>` as an HTTP date
    500      internal server error
    slow     sleep `@<s>` seconds (default 2) then answer normally
    truncated  a 200 whose JSON body is cut in half (Content-Length matches: a bad reply, not a
             broken connection)
    reset    close the TCP connection with RST before answering
    context  400 with code context_length_exceeded
    401      invalid API key
    nousage  a normal reply without the `usage` field
    slowstream  a streamed reply whose pieces come `@<s>` seconds apart (default 0.05)
    midfail  a streamed reply that sends two pieces, then closes the connection mid-stream
    garbage  a streamed reply whose second piece is not JSON

`x<count>` makes the fault happen only on the first <count> requests for that exact model name
(then answers normally), e.g. `stub/500x2` fails twice then succeeds. Any other model name
answers normally with `echo: <last user message>` (one token a word): cut to `max_tokens` words
with finish_reason "length"; a JSON object `{"echo": ...}` when `response_format` asks for JSON; a
call of the first tool (finish_reason "tool_calls", arguments `{"echo": ...}`) when `tools` are given
and `tool_choice` is not "none"; per-word `logprobs` when asked. `stream: true` answers as SSE, one
word a chunk (`stream_options.include_usage` adds the usage chunk). Request bodies are kept in
`StubServer.bodies` (the last 1,000) for tests that check what reached the worker. A random-failure mode for load tests
(`fail_rate`, seeded) answers 500 or 429 (Retry-After 0) to that share of normal requests.

    url, stop = start_stub_server(faults={"fail_rate": 0.3, "seed": 0})
    ...  # url is "http://127.0.0.1:PORT/v1"
    stop()

CLI: `python -m routers.pool.stub --port 8766 --fail-rate 0.3`.
"""

from __future__ import annotations

import argparse
import asyncio
import email.utils
import json
import random
import re
import socket
import struct
import threading
import time
from collections import Counter, deque
from typing import Any, Callable

_FAULT_RE = re.compile(r"^(?P<fault>[a-z]+|\d+)(?:x(?P<count>\d+))?(?:@(?P<arg>[a-z0-9.]+))?$")
FAULTS = ("429", "500", "slow", "truncated", "reset", "context", "401", "nousage", "slowstream", "midfail",
          "garbage")


def parse_fault(spec: str) -> tuple[str, int | None, str | None] | None:
    """`"500x2"` -> ("500", 2, None); `"429@date2"` -> ("429", None, "date2"); unknown -> None."""
    m = _FAULT_RE.match(spec.strip().lower())
    if not m or m["fault"] not in FAULTS:
        return None
    return m["fault"], int(m["count"]) if m["count"] else None, m["arg"]


def _estimate_tokens(text: str) -> int:
    return max(1, len(text.split()))


class StubServer:
    """The server state: fault counters, the seeded random-failure generator, request counts."""

    def __init__(self, *, fail_rate: float = 0.0, seed: int = 0, latency_s: float = 0.0):
        self.fail_rate, self.latency_s = float(fail_rate), float(latency_s)
        self._rng = random.Random(seed)
        self.seen: Counter[str] = Counter()   # requests per model name (drives x<count>)
        self.bodies: deque[dict[str, Any]] = deque(maxlen=1000)
        self.requests = 0
        self._server: asyncio.base_events.Server | None = None

    # -- HTTP plumbing -----------------------------------------------------------------------
    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, path, _ = lines[0].split(" ", 2)
                headers = {k.strip().lower(): v.strip() for k, v in
                           (ln.split(":", 1) for ln in lines[1:] if ":" in ln)}
                body = await reader.readexactly(int(headers.get("content-length", 0) or 0))
                keep = await self._respond(method, path, headers, body, writer)
                if not keep or headers.get("connection", "").lower() == "close":
                    break
        except (asyncio.IncompleteReadError, ConnectionError, ValueError, asyncio.CancelledError):
            pass  # client went away, malformed request, or the server is stopping
        finally:
            try:
                writer.close()
            except Exception:
                pass

    @staticmethod
    def _send(writer, status: int, payload: bytes, *, extra: dict[str, str] | None = None,
              content_length: int | None = None) -> None:
        reason = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found",
                  429: "Too Many Requests", 500: "Internal Server Error"}.get(status, "Status")
        hdr = {"Content-Type": "application/json",
               "Content-Length": str(len(payload) if content_length is None else content_length),
               "Connection": "keep-alive", **(extra or {})}
        out = f"HTTP/1.1 {status} {reason}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in hdr.items())
        writer.write(out.encode("latin-1") + b"\r\n" + payload)

    @staticmethod
    def _error(message: str, type_: str, code: str | None = None) -> bytes:
        return json.dumps({"error": {"message": message, "type": type_, "param": None,
                                     "code": code}}).encode()

    async def _respond(self, method: str, path: str, headers: dict[str, str], body: bytes,
                       writer: asyncio.StreamWriter) -> bool:
        self.requests += 1
        if method == "GET" and path.rstrip("/").endswith("/models"):
            self._send(writer, 200, json.dumps({"object": "list", "data": [
                {"id": "stub", "object": "model", "created": 0, "owned_by": "baton-stub"}]}).encode())
            await writer.drain()
            return True
        if not (method == "POST" and path.rstrip("/").endswith("/chat/completions")):
            self._send(writer, 404, self._error(f"no route {method} {path}", "invalid_request_error"))
            await writer.drain()
            return True
        try:
            req = json.loads(body or b"{}")
        except json.JSONDecodeError:
            self._send(writer, 400, self._error("body is not JSON", "invalid_request_error"))
            await writer.drain()
            return True
        model = str(req.get("model", ""))
        self.seen[model] += 1
        self.bodies.append(req)
        fault = None
        spec = headers.get("x-stub-fault") or (model[5:] if model.startswith("stub/") else "")
        if spec:
            fault = parse_fault(spec)
            if fault and fault[1] is not None and self.seen[model] > fault[1]:
                fault = None
        if fault is None and self.fail_rate > 0 and self._rng.random() < self.fail_rate:
            fault = ("500", None, None) if self._rng.random() < 0.5 else ("429", None, "0")
        if self.latency_s:
            await asyncio.sleep(self.latency_s)
        return await self._answer(req, model, fault, writer)

    async def _answer(self, req: dict, model: str, fault, writer) -> bool:
        kind, _, arg = fault or (None, None, None)
        if kind == "reset":
            sock = writer.get_extra_info("socket")
            if sock is not None:  # SO_LINGER 0 turns close() into a TCP RST
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()
            return False
        if kind == "429":
            if arg and arg.startswith("date"):
                ra = email.utils.formatdate(time.time() + float(arg[4:] or 1), usegmt=True)
            else:
                ra = arg or "1"
            self._send(writer, 429, self._error("rate limited (stub)", "rate_limit_error",
                                                "rate_limit_exceeded"), extra={"Retry-After": ra})
        elif kind == "500":
            self._send(writer, 500, self._error("internal error (stub)", "server_error"))
        elif kind == "context":
            self._send(writer, 400, self._error(
                "This model's maximum context length is 8 tokens. (stub)", "invalid_request_error",
                "context_length_exceeded"))
        elif kind == "401":
            self._send(writer, 401, self._error("Incorrect API key provided (stub)",
                                                "invalid_request_error", "invalid_api_key"))
        elif req.get("stream") is True:
            await self._stream(req, model, kind, arg, writer)
            return kind not in ("midfail",)
        else:
            if kind == "slow":
                await asyncio.sleep(float(arg or 2))
            payload = json.dumps(self.completion(req, model, usage=kind != "nousage")).encode()
            if kind == "truncated":
                payload = payload[: len(payload) // 2]
            self._send(writer, 200, payload)
        await writer.drain()
        return True

    async def _stream(self, req: dict, model: str, kind, arg, writer) -> None:
        """SSE over chunked transfer encoding: role, one word a chunk (or the tool call), finish."""
        full = self.completion(req, model)
        choice = full["choices"][0]
        msg, lps = choice["message"], (choice.get("logprobs") or {}).get("content")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n"
                     b"Connection: keep-alive\r\n\r\n")
        delay = float(arg or 0.05) if kind == "slowstream" else 0.0

        def send(obj: Any) -> None:
            data = b"data: " + (obj if isinstance(obj, bytes) else json.dumps(obj).encode()) + b"\n\n"
            writer.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")

        def chunk(delta: dict, finish=None, logprobs=None) -> dict:
            return {"id": "chatcmpl-stub", "object": "chat.completion.chunk", "created": int(time.time()),
                    "model": full["model"], "choices": [{"index": 0, "delta": delta, "finish_reason": finish,
                                                         "logprobs": logprobs}]}
        send(chunk({"role": "assistant", "content": ""}))
        if msg.get("tool_calls"):
            for i, tc in enumerate(msg["tool_calls"]):
                send(chunk({"tool_calls": [{"index": i, "id": tc["id"], "type": "function",
                                            "function": {"name": tc["function"]["name"], "arguments": ""}}]}))
                send(chunk({"tool_calls": [{"index": i, "function": {"arguments": tc["function"]["arguments"]}}]}))
        else:
            words = (msg["content"] or "").split(" ")
            for i, w in enumerate(words):
                if i and delay:
                    await writer.drain()
                    await asyncio.sleep(delay)
                if kind == "midfail" and i == 2:
                    await writer.drain()
                    writer.transport.abort()
                    return
                if kind == "garbage" and i == 1:
                    send(b"{not json")
                    continue
                send(chunk({"content": w if i == 0 else " " + w},
                           logprobs={"content": [lps[i]]} if lps else None))
        send(chunk({}, choice["finish_reason"]))
        if (req.get("stream_options") or {}).get("include_usage"):
            send({"id": "chatcmpl-stub", "object": "chat.completion.chunk", "created": int(time.time()),
                  "model": full["model"], "choices": [], "usage": full["usage"]})
        send(b"[DONE]")
        writer.write(b"0\r\n\r\n")
        await writer.drain()

    @staticmethod
    def completion(req: dict, model: str, *, usage: bool = True) -> dict[str, Any]:
        msgs = req.get("messages") or []

        def text_of(c: Any) -> str:
            if isinstance(c, list):
                return "".join(str(p.get("text", "")) for p in c if isinstance(p, dict) and p.get("type") == "text")
            return str(c or "")
        last = next((text_of(m.get("content")) for m in reversed(msgs) if m.get("role") == "user"), "")
        words = ("echo: " + last[:200]).split(" ")
        finish = "stop"
        if isinstance(req.get("max_tokens"), int) and len(words) > req["max_tokens"]:
            words, finish = words[: req["max_tokens"]], "length"
        text = " ".join(words)
        message: dict[str, Any] = {"role": "assistant", "content": text}
        rf = (req.get("response_format") or {}).get("type")
        if rf in ("json_object", "json_schema"):
            message["content"] = text = json.dumps({"echo": last[:200]})
        tools = req.get("tools") or []
        if tools and req.get("tool_choice") != "none":
            choice = req.get("tool_choice")
            name = choice["function"]["name"] if isinstance(choice, dict) else tools[0]["function"]["name"]
            message = {"role": "assistant", "content": None, "tool_calls": [
                {"id": "call_stub_0", "type": "function",
                 "function": {"name": name, "arguments": json.dumps({"echo": last[:200]})}}]}
            finish, text = "tool_calls", ""
        logprobs = None
        if req.get("logprobs"):
            logprobs = {"content": [{"token": w, "logprob": -0.5, "bytes": list(w.encode()), "top_logprobs": []}
                                    for w in text.split(" ")], "refusal": None}
        out: dict[str, Any] = {
            "id": "chatcmpl-stub", "object": "chat.completion", "created": int(time.time()),
            "model": model or "stub",
            "choices": [{"index": 0, "message": message, "finish_reason": finish, "logprobs": logprobs}],
        }
        if usage:
            p = sum(_estimate_tokens(text_of(m.get("content"))) + 4 for m in msgs)
            c = _estimate_tokens(text) if text else 8
            out["usage"] = {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c}
        return out

    async def serve(self, host: str, port: int) -> asyncio.base_events.Server:
        self._server = await asyncio.start_server(self._handle, host, port)
        return self._server


def start_stub_server(port: int = 0, faults: dict[str, Any] | None = None, *,
                      host: str = "127.0.0.1") -> tuple[str, Callable[[], None]]:
    """Start the stub in a daemon thread; returns (base_url ending in /v1, stop).
    `faults`: {"fail_rate": float, "seed": int, "latency_s": float} for the random-failure mode."""
    faults = dict(faults or {})
    unknown = set(faults) - {"fail_rate", "seed", "latency_s"}
    if unknown:
        raise ValueError(f"start_stub_server: unknown fault options {sorted(unknown)}")
    stub = StubServer(**faults)
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    box: dict[str, Any] = {}

    def run() -> None:
        asyncio.set_event_loop(loop)
        try:
            box["server"] = loop.run_until_complete(stub.serve(host, port))
        except Exception as e:  # report bind errors to the caller
            box["error"] = e
            ready.set()
            return
        ready.set()
        loop.run_forever()

    th = threading.Thread(target=run, name="baton-stub", daemon=True)
    th.start()
    ready.wait(10)
    if "error" in box:
        raise box["error"]
    bound = box["server"].sockets[0].getsockname()[1]

    def stop() -> None:
        async def _close():
            box["server"].close()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        if loop.is_running():
            asyncio.run_coroutine_threadsafe(_close(), loop).result(5)
            loop.call_soon_threadsafe(loop.stop)
            th.join(5)

    stop.stub = stub  # type: ignore[attr-defined]  # request counters for tests
    return f"http://{host}:{bound}/v1", stop


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Fault-injecting OpenAI-compatible stub server.")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8766)
    ap.add_argument("--fail-rate", type=float, default=0.0, help="share of requests answered 500/429")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--latency", type=float, default=0.0, help="seconds added to every request")
    a = ap.parse_args(argv)
    stub = StubServer(fail_rate=a.fail_rate, seed=a.seed, latency_s=a.latency)

    async def run() -> None:
        server = await stub.serve(a.host, a.port)
        print(f"stub OpenAI server on http://{a.host}:{server.sockets[0].getsockname()[1]}/v1", flush=True)
        async with server:
            await server.serve_forever()

    try:
        asyncio.run(run())
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""The gateway as a faithful OpenAI drop-in (issue 11 item 2), driven by the real `openai` SDK:
tools, tool messages, image parts, response_format, logprobs and sampling fields reach the one
answering worker unchanged; its tool_calls, finish_reason and logprobs come back unchanged,
plain and streamed; what a route cannot honour is a 400 naming the field, before any worker call."""

from __future__ import annotations

import json

import httpx
import openai
import pytest

from routers.serve.decision_log import read_log
from test_serve import Fixed, client, make, serving, stub_pool  # tests/ is on sys.path
from test_serve_params import Scripted
from trinity.config import ProtocolConfig

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Weather of a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
ASK = [{"role": "user", "content": "weather in Paris?"}]


@pytest.fixture
def gw(tmp_path):
    from routers.pool.stub import start_stub_server
    url, stop = start_stub_server()
    pool = stub_pool(url, {"a": "model-a", "b": "model-b"})
    cfg = ProtocolConfig(max_turns=2, max_tokens=32, require_answer=True)
    app = make(pool, [Fixed("fixed", ["a", "b"]), Scripted("multi", ["a", "b"], cfg)], tmp_path)
    with serving(app) as base:
        yield base, stop.stub
    stop()


def test_tools_and_full_messages_round_trip_unchanged(gw):
    base, st = gw
    c = client(base)
    r = c.chat.completions.create(model="fixed", messages=ASK, tools=[WEATHER], tool_choice="auto",
                                  parallel_tool_calls=False, user="u-42", seed=7, stop=["\n\n"], temperature=0.3)
    sent = st.bodies[-1]
    assert sent["tools"] == [WEATHER] and sent["tool_choice"] == "auto" and sent["parallel_tool_calls"] is False
    assert (sent["user"], sent["seed"], sent["stop"], sent["temperature"]) == ("u-42", 7, ["\n\n"], 0.3)
    assert sent["messages"] == ASK
    ch = r.choices[0]
    assert ch.finish_reason == "tool_calls" and ch.message.content is None
    (tc,) = ch.message.tool_calls
    assert tc.id == "call_stub_0" and tc.function.name == "get_weather"
    assert json.loads(tc.function.arguments) == {"echo": "weather in Paris?"}
    # the agent's next turn: assistant tool_calls, the tool result and an image part, all unchanged
    history = [{"role": "system", "content": "be brief"},
               {"role": "user", "content": [{"type": "text", "text": "weather in Paris?"},
                                            {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]},
               {"role": "assistant", "content": None, "tool_calls": [tc.model_dump()]},
               {"role": "tool", "tool_call_id": tc.id, "content": '{"temp_c": 21}'}]
    r2 = c.chat.completions.create(model="fixed", messages=history, tools=[WEATHER], tool_choice="none")
    assert st.bodies[-1]["messages"] == history
    assert r2.choices[0].finish_reason == "stop" and r2.choices[0].message.content == "echo: weather in Paris?"


def test_response_format_logprobs_and_length_come_back(gw):
    base, st = gw
    c = client(base)
    schema = {"name": "echo", "strict": True, "schema": {"type": "object", "properties": {"echo": {"type": "string"}},
                                                         "required": ["echo"], "additionalProperties": False}}
    r = c.chat.completions.create(model="fixed", messages=ASK,
                                  response_format={"type": "json_schema", "json_schema": schema})
    assert st.bodies[-1]["response_format"] == {"type": "json_schema", "json_schema": schema}
    assert json.loads(r.choices[0].message.content) == {"echo": "weather in Paris?"}
    r = c.chat.completions.create(model="fixed", messages=ASK, response_format={"type": "json_object"})
    assert json.loads(r.choices[0].message.content) == {"echo": "weather in Paris?"}
    r = c.chat.completions.create(model="fixed", messages=ASK, logprobs=True, top_logprobs=2)
    assert st.bodies[-1]["top_logprobs"] == 2
    assert [t.token for t in r.choices[0].logprobs.content] == ["echo:", "weather", "in", "Paris?"]
    r = c.chat.completions.create(model="fixed", messages=ASK, max_tokens=2)
    assert r.choices[0].finish_reason == "length" and r.choices[0].message.content == "echo: weather"
    assert r.usage.completion_tokens == 2


def test_streamed_tool_calls_and_length(gw):
    base, _ = gw
    c = client(base)
    chunks = list(c.chat.completions.create(model="fixed", messages=ASK, tools=[WEATHER], stream=True))
    calls: dict[int, dict] = {}
    for ch in chunks:
        for d in (ch.choices[0].delta.tool_calls or []) if ch.choices else []:
            t = calls.setdefault(d.index, {"id": None, "name": "", "arguments": ""})
            t["id"] = d.id or t["id"]
            t["name"] += (d.function.name or "") if d.function else ""
            t["arguments"] += (d.function.arguments or "") if d.function else ""
    assert calls == {0: {"id": "call_stub_0", "name": "get_weather", "arguments": '{"echo": "weather in Paris?"}'}}
    assert [ch.choices[0].finish_reason for ch in chunks if ch.choices][-1] == "tool_calls"
    chunks = list(c.chat.completions.create(model="fixed", messages=ASK, max_tokens=3, stream=True, logprobs=True))
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    assert text == "echo: weather in"
    assert [ch.choices[0].finish_reason for ch in chunks if ch.choices][-1] == "length"
    assert [t.token for ch in chunks if ch.choices and ch.choices[0].logprobs
            for t in ch.choices[0].logprobs.content] == ["echo:", "weather", "in"]


BAD = {
    "unknown field": ({"functions": [WEATHER["function"]]}, "functions", "unknown or unsupported field"),
    "n > 1": ({"n": 2}, "n", "only n = 1"),
    "tool name": ({"tools": [{"type": "function", "function": {"name": "get weather"}}]},
                  "tools.0.function.name", "a-z"),
    "tool schema": ({"tools": [{"type": "function", "function": {"name": "f", "parameters": {
        "type": "object", "properties": {"city": {"type": "strang"}}}}}]},
        "tools.0.function.parameters", "parameters.properties.city.type: invalid JSON schema"),
    "tool type": ({"tools": [{"type": "retrieval"}]}, "tools.0.type", "function"),
    "response schema": ({"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {
        "type": "object", "required": "echo"}}}}, "response_format.json_schema.schema",
        "schema.required: invalid JSON schema"),
    "response type": ({"response_format": {"type": "xml"}}, "response_format.type", "json_object"),
    "tool_choice without tools": ({"tool_choice": "auto"}, "tool_choice", "without tools"),
    "tool_choice unknown tool": ({"tools": [WEATHER], "tool_choice": {"type": "function", "function": {
        "name": "nope"}}}, "tool_choice.function.name", "'nope' is not one of"),
    "top_logprobs alone": ({"top_logprobs": 3}, "top_logprobs", "needs logprobs"),
    "tool message without id": ({"messages": [*ASK, {"role": "tool", "content": "x"}]}, "messages.1",
                                "tool_call_id"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_malformed_requests_are_400_naming_the_path(gw, case):
    base, st = gw
    extra, param, needle = BAD[case]
    n0 = st.requests
    r = httpx.post(base + "/v1/chat/completions", json={"model": "fixed", "messages": ASK, **extra}, timeout=30)
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["param"] == param and needle in err["message"], err
    assert st.requests == n0                        # refused before any worker call


@pytest.mark.parametrize("extra,param", [
    ({"tools": [WEATHER]}, "tools"),
    ({"response_format": {"type": "json_object"}}, "response_format"),
    ({"logprobs": True}, "logprobs"),
    ({"messages": [{"role": "user", "content": [{"type": "text", "text": "what is this?"}, {
        "type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}]}]}, "messages.0"),
])
def test_multi_turn_router_refuses_what_its_intermediate_turns_cannot_honour(gw, tmp_path, extra, param):
    base, st = gw
    n0 = st.requests
    r = httpx.post(base + "/v1/chat/completions", json={"model": "multi", "messages": ASK, **extra}, timeout=30)
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["param"] == param and err["code"] == "unsupported_for_route" and "multi-turn" in err["message"]
    assert st.requests == n0                        # no worker was called (nor paid)
    # text-only requests still route through the multi-turn router (logprobs: false asks for
    # nothing it cannot give); the log names the refusal
    assert client(base).chat.completions.create(model="multi", messages=ASK, logprobs=False).choices[0].message.content
    recs = read_log(tmp_path / "log.jsonl")
    assert recs[-2]["status"] == 400 and recs[-2]["error"]["code"] == "unsupported_for_route"


def test_backend_that_cannot_honour_tools_is_a_400_not_a_silent_drop(tmp_path):
    from routers.baselines.serving import SingleChoice
    from routers.baselines.simple import RandomRouter
    from routers.pool import load_pool
    from routers.serve.app import create_app
    pool = load_pool("simulated")
    app = create_app({"random": SingleChoice(RandomRouter(models=pool.names), name="random")}, pool,
                     log_path=tmp_path / "log.jsonl")
    image = [{"role": "user", "content": [{"type": "text", "text": "what is this?"},
                                          {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}]}]
    with serving(app) as base:
        c = client(base)
        with pytest.raises(openai.BadRequestError) as ei:
            c.chat.completions.create(model="random", messages=ASK, tools=[WEATHER])
        with pytest.raises(openai.BadRequestError) as ei2:
            c.chat.completions.create(model="random", messages=image)
        # text parts alone are text: the simulated pool answers them as it answers a string
        parts = c.chat.completions.create(model="random", messages=[image[0] | {"content": image[0]["content"][:1]}])
        assert parts.choices[0].message.content
    assert ei.value.body["code"] == "rejected_by_workers"
    assert "tools: the SimulatedWorker backend cannot honour it" in ei.value.body["message"]
    assert "messages[0]: image_url content parts: the SimulatedWorker backend cannot honour it" in \
        ei2.value.body["message"]

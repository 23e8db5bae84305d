"""Files as their publishers write them (issue 10, item 5): pandas' default index column, continuous
{question, scores} JSON (RouterDC), repeated ids; and what a file leaves unknown is named, never 0."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from routers.data import load_dataset
from routers.errors import DataError

FIX = Path(__file__).parent / "fixtures" / "data"
GPT4, MISTRAL = "gpt-4-1106-preview", "mistralai/mistral-7b-chat"


def _rb() -> pd.DataFrame:
    return pd.read_csv(FIX / "routerbench_small.csv")


def _expected_routerbench(ds):
    assert ds.ids == ["mmlu.anatomy.0", "gsm8k.1", "mtbench.7"] and ds.models == [GPT4, MISTRAL]
    np.testing.assert_array_equal(ds.scores, [[1.0, 0.0], [1.0, np.nan], [0.9, 0.6]])
    assert ds.meta["other_columns"] == []


def test_routerbench_csv_with_pandas_default_index(tmp_path):
    f = tmp_path / "routerbench_0shot.csv"
    df = _rb()
    df.index = [36455, 12, 7]  # RouterDC's copies keep the row labels of the full release
    df.to_csv(f)  # pandas' default: a leading index column with an empty header
    assert open(f).readline().startswith(",sample_id,")
    _expected_routerbench(load_dataset(str(f)))


def test_routerbench_pickle_with_unnamed_index_column(tmp_path):
    csv = tmp_path / "a.csv"
    _rb().to_csv(csv)
    df = pd.read_csv(csv)  # the index comes back as a column 'Unnamed: 0'
    assert df.columns[0] == "Unnamed: 0"
    pkl = tmp_path / "routerbench_5shot.pkl"
    df.to_pickle(pkl)
    _expected_routerbench(load_dataset(str(pkl), trust_pickle=True))


def test_routellm_csv_with_pandas_default_index(tmp_path):
    f = tmp_path / "mmlu_anatomy.csv"
    pd.read_csv(FIX / "routellm_small.csv").to_csv(f)
    ds = load_dataset(str(f))
    assert len(ds.models) == 2 and len(ds) == 4


def test_scores_json_with_continuous_scores(tmp_path):
    """RouterDC writes {question, scores} lists whose scores are fractions in [0, 1]."""
    items = [{"question": f"Q{i}: what is {i} + {i}?", "scores": {"mistral-7b": i / 7, "llama-3-8b": 1 - i / 9},
              "cluster_id": i % 3} for i in range(6)]
    f = tmp_path / "gsm8k-train.json"
    f.write_text(json.dumps(items, indent=2))
    ds = load_dataset(str(f))
    np.testing.assert_allclose(ds.scores[:, 0], np.arange(6) / 7)
    np.testing.assert_allclose(ds.scores[:, 1], 1 - np.arange(6) / 9)
    assert ds.categories[:3] == ["cluster_0", "cluster_1", "cluster_2"]


def test_repeated_rows_that_agree_are_kept_once_with_a_count(tmp_path):
    df = _rb()
    df = pd.concat([df, df.iloc[[1]], df.iloc[[1]]], ignore_index=True)  # gsm8k.1 three times
    f = tmp_path / "rb.csv"
    df.to_csv(f, index=False)
    with pytest.warns(UserWarning, match=r"2 repeated rows \(same id, same content\) kept once.*'gsm8k.1' at rows 2 and 4"):
        ds = load_dataset(str(f))
    _expected_routerbench(ds)
    assert ds.meta["repeated_rows_dropped"] == 2


def test_repeated_ids_that_disagree_name_both_rows(tmp_path):
    df = _rb()
    extra = df.iloc[[1]].copy()
    extra[GPT4] = 0.0
    f = tmp_path / "rb.csv"
    pd.concat([df, extra], ignore_index=True).to_csv(f, index=False)
    with pytest.raises(DataError, match=f"duplicate id 'gsm8k.1' at rows 2 and 4 with different score of {GPT4}") as e:
        load_dataset(str(f))
    assert (e.value.file, e.value.row, e.value.column) == (str(f), 4, "sample_id")


def test_repeated_ids_that_disagree_on_category_name_it(tmp_path):
    df = _rb()
    extra = df.iloc[[0]].copy()
    extra["eval_name"] = "other"
    f = tmp_path / "rb.csv"
    pd.concat([df, extra], ignore_index=True).to_csv(f, index=False)
    with pytest.raises(DataError, match="'mmlu.anatomy.0' at rows 1 and 4 with different category$"):
        load_dataset(str(f))


def test_repeated_ids_in_native_jsonl(tmp_path):
    line = {"id": "a", "prompt": "p", "split": "test", "results": {"m": {"score": 1, "cost": 0.1}}}
    f = tmp_path / "r.jsonl"
    f.write_text(json.dumps(line) + "\n" + json.dumps(line) + "\n")
    with pytest.warns(UserWarning, match="1 repeated rows"):
        assert load_dataset(str(f)).ids == ["a"]


def test_unknown_costs_and_split_without_a_model_are_named(tmp_path):
    rows = [{"id": f"q{i}", "prompt": f"p{i}", "split": "train" if i < 3 else "test",
             "results": {"a": {"score": 1, "cost": None if i == 1 else 0.1},
                         **({"b": {"score": 0, "cost": 0.2}} if i < 3 else {})}} for i in range(5)]
    f = tmp_path / "r.jsonl"
    f.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        ds = load_dataset(str(f))
    text = " | ".join(str(x.message) for x in w)
    assert f"file {f}: unknown (NaN) costs, kept unknown, never 0: 'a' 1 (first row 2), 'b' 2 (first row 4)" in text
    assert "the test split (2 rows) has no score for models ['b']" in text
    assert np.isnan(ds.costs[1, 0])  # still unknown, not 0


def test_clean_file_loads_without_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_dataset(str(FIX / "routellm_small.csv"))


def test_llmrouter_library_query_llm_name_list_perf_list(tmp_path):
    """The LLMRouter library's routing files: {query, llm_name_list, perf_list}, as a JSON list and as JSONL."""
    items = [{"query": "Who painted the Mona Lisa?",
              "llm_name_list": ["meta/llama-3.1-8b-instruct", "meta/llama-3.1-70b-instruct", "qwen/qwen2.5-7b-instruct"],
              "perf_list": [0.3, 0.96, 0.5]},
             {"query": "What gas do plants absorb?",
              "llm_name_list": ["meta/llama-3.1-8b-instruct", "meta/llama-3.1-70b-instruct", "qwen/qwen2.5-7b-instruct"],
              "perf_list": [0.82, 0.9, 0.85]}]
    (tmp_path / "router_train_data_nq.json").write_text(json.dumps(items, indent=2))
    (tmp_path / "router_test_data_nq.jsonl").write_text("".join(json.dumps(it) + "\n" for it in items))
    for f in ("router_train_data_nq.json", "router_test_data_nq.jsonl"):
        ds = load_dataset(str(tmp_path / f))
        assert ds.models == items[0]["llm_name_list"] and ds.prompts[1] == "What gas do plants absorb?"
        np.testing.assert_allclose(ds.scores, [[0.3, 0.96, 0.5], [0.82, 0.9, 0.85]])
    bad = [dict(items[0], perf_list=[0.3, 0.9])]
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    with pytest.raises(DataError, match="'perf_list' has 2 entries for 3 models") as e:
        load_dataset(str(tmp_path / "bad.json"))
    assert (e.value.row, e.value.column) == (1, "perf_list")


def test_recorder_rows_with_a_repeated_id_are_refused_outside_load_dataset():
    """records_to_dataset (baton record) builds datasets with native.from_records directly."""
    from routers.data.common import LoadOptions
    from routers.data.native import from_records

    rows = [{"id": "a", "prompt": "p", "results": {"m": {"score": 1, "latency": 0.5}}},
            {"id": "a", "prompt": "p", "results": {"m": {"score": 1, "latency": 0.7}}}]
    with pytest.raises(DataError, match="duplicate id 'a' at rows 1 and 2 with different latency of m"):
        from_records(rows, file="rec.jsonl", name="rec", opts=LoadOptions())
    with pytest.raises(DataError, match="duplicate id 'a' at rows 1 and 2$"):  # even the same record twice
        from_records([rows[0], rows[0]], file="rec.jsonl", name="rec", opts=LoadOptions())

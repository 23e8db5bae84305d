"""Each adapter on small real files: fixtures here, slices of ../shared where present."""

from __future__ import annotations

import shutil
import sys
import types
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from routers.data import ADAPTERS, detect_format, load_dataset
from routers.data.schema import RoutingDataset
from routers.errors import DataError

FIX = Path(__file__).parent / "fixtures" / "data"
GPT4, MIXTRAL = "gpt-4-1106-preview", "mistralai/Mixtral-8x7B-Instruct-v0.1"


def test_adapters_are_named():
    assert set(ADAPTERS) == {"routerbench", "routellm", "scores_json", "native_jsonl", "native_parquet",
                             "native_arrow", "hub"}


# -- RouterBench --------------------------------------------------------------------------------
def _check_routerbench(ds: RoutingDataset):
    assert ds.ids == ["mmlu.anatomy.0", "gsm8k.1", "mtbench.7"]
    assert ds.models == [GPT4, "mistralai/mistral-7b-chat"]
    assert ds.categories == ["mmlu-anatomy", "grade-school-math", "mt-bench"]
    assert ds.prompts[0] == "Which bone is in the ear?\nA. stapes\nB. femur"
    np.testing.assert_array_equal(ds.scores, [[1.0, 0.0], [1.0, np.nan], [0.9, 0.6]])  # empty cell -> NaN, not 0
    np.testing.assert_array_equal(ds.costs, [[0.00051, 0.00002], [0.0012, np.nan], [0.0021, np.nan]])
    assert ds.responses[1] == ["He has 3 - 1 = 2.\n#### 2", None]
    assert ds.responses[2][0] == 'Soft rain, "drip"...'


def test_routerbench_csv_detected_by_columns_not_extension(tmp_path):
    odd = tmp_path / "bench.data"
    shutil.copy(FIX / "routerbench_small.csv", odd)
    assert detect_format(str(odd)) == "routerbench"
    _check_routerbench(load_dataset(str(odd)))


def test_routerbench_pickle_needs_trust(tmp_path):
    df = pd.read_csv(FIX / "routerbench_small.csv")
    pkl = tmp_path / "routerbench_0shot.pkl"
    df.to_pickle(pkl)
    with pytest.raises(DataError, match="unpickling runs arbitrary code") as e:
        load_dataset(str(pkl))
    assert e.value.file == str(pkl)
    _check_routerbench(load_dataset(str(pkl), trust_pickle=True))


# -- RouteLLM -----------------------------------------------------------------------------------
def test_routellm_single_file_category_is_stem():
    ds = load_dataset(str(FIX / "routellm_small.csv"))
    assert ds.models == [MIXTRAL, GPT4]
    assert ds.categories == ["routellm_small"] * 4
    np.testing.assert_array_equal(ds.scores, [[1, 1], [0, 1], [1, 1], [np.nan, 1]])  # empty cell -> NaN
    assert ds.responses == [["5", "The answer is 5."], ["48", "42"], ["Paris", None], [None, "Shakespeare"]]
    assert ds.costs is None  # no costs in the file and no price table


def test_routellm_folder_categories_are_subjects(tmp_path):
    for subj in ("anatomy", "astronomy"):
        shutil.copy(FIX / "routellm_small.csv", tmp_path / f"mmlu_{subj}.csv")
    ds = load_dataset(str(tmp_path))
    assert ds.categories == ["anatomy"] * 4 + ["astronomy"] * 4
    assert len(set(ds.ids)) == 8


def test_routellm_shared_mmlu_folder(shared_dir):
    ds = load_dataset(str(shared_dir / "data/routellm/mmlu"))
    assert len(ds) == 14042 and len(set(ds.categories)) == 57
    assert ds.models == [MIXTRAL, GPT4]
    assert not np.isnan(ds.scores).any() and set(np.unique(ds.scores)) == {0.0, 1.0}
    assert "abstract_algebra" in ds.categories


def test_routellm_shared_gsm8k_with_responses(shared_dir):
    ds = load_dataset(str(shared_dir / "data/routellm/gsm8k/gsm8k_responses.csv"))
    assert len(ds) == 1319 and ds.models == [MIXTRAL, GPT4]
    assert ds.prompts[0].startswith("Janet’s ducks lay 16 eggs")
    assert "#### 18" in ds.responses[0][0] and "$18" in ds.responses[0][1]
    assert set(ds.categories) == {"gsm8k_responses"}


# -- {question, scores} JSON ----------------------------------------------------------------------
def test_scores_json_single_file(tmp_path):
    ds = load_dataset(str(FIX / "scores_small.json"))
    assert ds.models == ["m-a", "m-b", "m-c"]
    np.testing.assert_array_equal(ds.scores, [[1, 0, np.nan], [0.5, 1, np.nan], [0, np.nan, 1]])
    assert ds.categories == ["cluster_3", "geo", "scores_small"]
    assert set(ds.splits) <= {"train", "validation", "test"}
    named = tmp_path / "test.json"
    shutil.copy(FIX / "scores_small.json", named)
    assert load_dataset(str(named)).splits == ["test"] * 3  # a file named like a split takes it


def test_llmrouter_pair_headline_numbers(shared_dir):
    ds = load_dataset(str(shared_dir / "data/llmrouter"))
    assert len(ds.split("train")) == 5608 and len(ds.split("test")) == 500 and len(ds.split("validation")) == 0
    assert ds.n_models == 9
    te = ds.split("test").scores
    acc = te.mean(axis=0)
    assert ds.models[int(acc.argmax())] == "llama-3.1-nemotron-51b-instruct"
    assert acc.max() == pytest.approx(0.563, abs=5e-4)
    assert te.max(axis=1).mean() == pytest.approx(0.743, abs=5e-4)  # oracle: best model per query


LLMROUTER_SLICE = Path(__file__).parent / "data" / "llmrouter_slice"  # real rows, checked in (MIT, LICENSE beside)


def test_llmrouter_slice_as_published():
    """The checked-in slice of LLMRouter's train/test pair, compared with a plain json reading."""
    import json

    ds = load_dataset(str(LLMROUTER_SLICE), prices=str(LLMROUTER_SLICE / "default_llm.json"))
    raw = {s: json.loads((LLMROUTER_SLICE / f"{s}.json").read_text()) for s in ("train", "test")}
    assert len(ds.split("train")) == 281 and len(ds.split("test")) == 100 and len(ds.split("validation")) == 0
    assert ds.models == list(raw["train"][0]["scores"]) and ds.n_models == 9
    assert ds.prompts == [it["question"] for s in ("train", "test") for it in raw[s]]
    want = np.array([[it["scores"][m] for m in ds.models] for s in ("train", "test") for it in raw[s]], float)
    np.testing.assert_array_equal(ds.scores, want)
    assert ds.categories[0] == f"cluster_{raw['train'][0]['cluster_id']}"
    assert set(ds.split("test").categories) == {"llmrouter_slice"}  # test items carry no cluster
    assert not np.isnan(ds.costs).any() and (ds.costs > 0).all()  # every model priced by default_llm.json
    acc = ds.split("test").scores.mean(axis=0)
    assert 0.3 < acc.max() < 0.8 and ds.split("test").scores.max(axis=1).mean() > acc.max()  # oracle beats any one


# -- datasets hub path (on local files) ---------------------------------------------------------
def test_hub_path_on_local_parquet_and_folder(tmp_path, monkeypatch):
    import datasets

    from routers.data import save_parquet

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf-cache")  # keep ~/.cache clean

    src = load_dataset(str(FIX / "native_small.jsonl"))
    pq = save_parquet(src, tmp_path / "one" / "data.parquet")
    ds = load_dataset(str(pq), format="hub")
    assert ds.meta["format"] == "hub:native"
    assert ds.ids == src.ids and ds.splits == src.splits
    np.testing.assert_array_equal(ds.scores, src.scores)

    folder = tmp_path / "two"
    folder.mkdir()
    items = pd.DataFrame({"question": ["q1", "q2", "q3"],
                          "scores": [{"m-a": 1.0, "m-b": None}, {"m-a": 0.0, "m-b": 1.0}, {"m-a": 0.5, "m-b": 0.0}]})
    items.iloc[:2].to_json(folder / "train.jsonl", orient="records", lines=True)
    items.iloc[2:].to_json(folder / "test.jsonl", orient="records", lines=True)
    ds = load_dataset(str(folder), format="hub")
    assert ds.meta["format"] == "hub:scores_json"
    by_prompt = dict(zip(ds.prompts, ds.splits))
    assert by_prompt == {"q1": "train", "q2": "train", "q3": "test"}  # split from the hub split names
    assert ds.models == ["m-a", "m-b"]
    assert np.isnan(ds.scores[ds.prompts.index("q1"), 1])  # null score stays missing


def test_hub_id_failure_is_a_data_error():
    with pytest.raises(DataError, match="datasets.load_dataset failed"):
        load_dataset("no-such-org-xyz/no-such-dataset:test")


# -- embedded -----------------------------------------------------------------------------------
def test_embedded_delegates_to_record(monkeypatch):
    seen = {}
    fake = RoutingDataset(ids=["e"], prompts=["p"], categories=["c"], splits=["test"], models=["m"], scores=[[1]])

    def embedded_dataset(seed=0):
        seen["seed"] = seed
        return fake

    monkeypatch.setitem(sys.modules, "routers.record", types.SimpleNamespace(embedded_dataset=embedded_dataset))
    assert load_dataset("embedded", seed=7) is fake and seen == {"seed": 7}

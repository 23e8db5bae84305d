"""Which columns of a wide table are models (issue 15, defect 6: an `is_hard` 0/1 column became a model)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from routers.data import load_dataset
from routers.errors import DataError

FIX = Path(__file__).parent / "fixtures" / "data"
GPT4, MIXTRAL = "gpt-4-1106-preview", "mistralai/Mixtral-8x7B-Instruct-v0.1"


def _routellm_with_flag(tmp_path) -> Path:
    df = pd.DataFrame({"prompt": ["a", "b", "c"], "weak/model": [True, False, True],
                       "strong-model": [True, True, False], "is_hard": [0, 1, 1]})
    f = tmp_path / "mmlu.csv"
    df.to_csv(f, index=False)
    return f


def test_routellm_flag_column_is_not_a_model(tmp_path):
    f = _routellm_with_flag(tmp_path)
    with pytest.warns(UserWarning, match=r"\['is_hard'\] are not read as models"):
        ds = load_dataset(str(f))
    assert ds.models == ["weak/model", "strong-model"]
    np.testing.assert_array_equal(ds.scores, [[1, 1], [0, 1], [1, 0]])
    assert ds.meta["other_columns"] == ["is_hard"]


def test_routellm_models_argument_selects_and_checks(tmp_path):
    f = _routellm_with_flag(tmp_path)
    ds = load_dataset(str(f), models="strong-model")
    assert ds.models == ["strong-model"] and ds.meta["other_columns"] == ["weak/model", "is_hard"]
    ds = load_dataset(str(f), models=["is_hard", "weak/model"])  # the user may say a 0/1 column is a model
    np.testing.assert_array_equal(ds.scores[:, 0], [0, 1, 1])
    with pytest.raises(DataError, match="unknown model 'gpt-5'") as e:
        load_dataset(str(f), models=["gpt-5"])
    assert (e.value.file, e.value.column) == (str(f), "gpt-5")


def test_routellm_file_without_bool_columns_is_refused_by_name(tmp_path):
    f = tmp_path / "x.csv"
    pd.DataFrame({"prompt": ["a"], "difficulty": [3]}).to_csv(f, index=False)
    with pytest.raises(DataError, match=r"no model columns.*\['difficulty'\].*models="):
        load_dataset(str(f))


def test_routerbench_extra_column_without_cost_or_response_is_metadata(tmp_path):
    df = pd.read_csv(FIX / "routerbench_small.csv")
    df["is_hard"] = [0, 1, 1]
    df["annotator"] = ["x", "y", "z"]
    f = tmp_path / "rb.csv"
    df.to_csv(f, index=False)
    with pytest.warns(UserWarning, match=r"\['is_hard', 'annotator'\].*no \|total_cost or \|model_response"):
        ds = load_dataset(str(f))
    assert ds.models == [GPT4, "mistralai/mistral-7b-chat"]
    assert ds.meta["other_columns"] == ["is_hard", "annotator"]
    one = load_dataset(str(f), models=[GPT4])
    assert one.models == [GPT4] and one.costs.shape == (3, 1)
    with pytest.raises(DataError, match="unknown model 'claude'"):
        load_dataset(str(f), models="claude")


def test_models_argument_on_formats_that_read_every_model():
    ds = load_dataset(str(FIX / "native_small.jsonl"), models="big")
    assert ds.models == ["big"]
    with pytest.raises(DataError, match="unknown model 'nope'"):
        load_dataset(str(FIX / "scores_small.json"), models=["m-a", "nope"])


def test_real_routellm_columns_unchanged(tmp_path):
    shutil.copy(FIX / "routellm_small.csv", tmp_path / "r.csv")
    ds = load_dataset(str(tmp_path / "r.csv"))
    assert ds.models == [MIXTRAL, GPT4] and ds.meta["other_columns"] == []

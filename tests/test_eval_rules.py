"""The evaluator's rules: unknown costs stay unknown (never $0), the test set is what the user gave,
train/test leakage is refused, and bad flags fail before any work is done."""

from __future__ import annotations

import json

import numpy as np
import pytest

from routers.accounting import decision_costs, fill_unpriced, unpriced_models
from routers.cli import main as baton
from routers.errors import ConfigError, DataError
from routers.evaluate import evaluate, split_for_eval
from tests.test_evaluate import CategoryRouter, ConstantRouter, synthetic


def _unpriced(ds, model="dear"):
    ds = ds.subset(np.arange(len(ds)))
    ds.costs[:, ds.models.index(model)] = np.nan
    return ds


def test_unknown_cost_is_never_zero_and_blocks_cost_metrics():
    ds = _unpriced(synthetic())
    res = evaluate({"cat": CategoryRouter(), "const": ConstantRouter()}, ds.split("train"), ds.split("test"),
                   n_boot=100, progress=False)
    assert res["unpriced_models"] == ["dear"]
    cat = res["routers"]["cat"]
    # the category router sends category c to "dear": its cost is unknown, not a cheap-looking sum
    assert cat["cost"] is None and cat["aiq"] is None and cat["apgr"] is None
    assert cat["accuracy"] > 0.9                                   # accuracy does not need prices
    assert res["weak_model"] is None                               # an unpriced model might be the cheapest
    single = {s["model"]: s for s in res["single_models"]}
    assert single["dear"]["cost"] is None and single["cheap"]["cost"] > 0


def test_unpriced_cost_given_explicitly_is_used_and_stated():
    ds = fill_unpriced(_unpriced(synthetic()), 0.05)
    res = evaluate({"cat": CategoryRouter()}, ds.split("train"), ds.split("test"), n_boot=100, progress=False)
    assert res["unpriced_cost"] == 0.05 and res["routers"]["cat"]["aiq"] is not None
    assert res["routers"]["cat"]["cost"] > 0.01          # category c pays the stated $0.05
    with pytest.raises(ValueError, match="unpriced-cost"):
        fill_unpriced(ds, -1)


def test_decision_costs_never_make_an_unpriced_model_the_cheap_choice():
    c = np.array([[1.0, np.nan, 3.0], [1.0, np.nan, np.nan]])
    d = decision_costs(c)
    assert d[0, 1] == d[1, 1] == 3.0 and d[1, 2] == 3.0   # dearest known mean, or the model's own mean
    assert unpriced_models(c, ["a", "b", "c"]) == ["b", "c"]


def test_separate_test_file_is_scored_whole_and_the_rule_is_stated():
    ds = synthetic(300)
    train_file, test_file = ds.subset(np.arange(0, 200)), ds.subset(np.arange(200, 300))
    train, validation, test = split_for_eval(test_file, train_file, data_spec="test.jsonl")
    assert len(test) == 100 and len(train) + len(validation) == 200       # not a 20% share of the test file
    assert "every row of --data (100" in test.meta["test_rule"]
    # one file for both: its test split only
    train, validation, test = split_for_eval(ds, None, data_spec="all.jsonl")
    assert len(test) == 100 and "'test' split" in test.meta["test_rule"]


def test_leakage_refused_unless_allowed():
    ds = synthetic(300)
    test_file = ds.subset(np.arange(200, 300))
    leaky = ds.subset(np.arange(150, 300))          # holds the 100 test prompts
    leaky.prompts = [p.upper() + "  " for p in leaky.prompts]  # reformatting does not hide a copy
    with pytest.raises(DataError, match="100 of 100 test prompts"):
        split_for_eval(test_file, leaky, data_spec="test.jsonl")
    *_, test = split_for_eval(test_file, leaky, data_spec="test.jsonl", allow_overlap=True)
    assert test.meta["overlap"] == 100


def test_bad_flags_fail_before_evaluating(tmp_path, capsys):
    assert baton(["eval", "--data", "embedded", "--bootstrap", "0", "--routers", "random"]) == 2
    assert "--bootstrap" in capsys.readouterr().err
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert baton(["eval", "--data", "embedded", "--routers", "random", "--json", str(blocker / "out.json")]) == 2
    assert "--json" in capsys.readouterr().err


def test_overlap_check_vectorized_matches_the_python_rule():
    """The Arrow path normalizes exactly as `normalize_prompt` (NFKC, casefold, whitespace), on ASCII
    and non-ASCII text, on lists and on Arrow-backed columns; lone surrogates take the Python path."""
    import random
    import string

    import pyarrow as pa

    from routers.data.arrow import TextColumn
    from routers.data.overlap import normalize_prompt, normalized_prompts, overlapping

    rnd = random.Random(0)
    chars = string.printable + "\x1c\x1f\x85ÄßẞﬁＡ\u00a0\u2028\u3000ǅİ"
    texts = ["".join(rnd.choice(chars) for _ in range(rnd.randint(0, 12))) for _ in range(5000)]
    assert normalized_prompts(texts).to_pylist() == [normalize_prompt(t) for t in texts]
    assert normalized_prompts(TextColumn(pa.array(texts + [None]))).to_pylist()[-1] == normalize_prompt(None)
    train = ["What is  2+2?", "STRASSE", "ﬁve", None]
    test = ["what is 2+2?", "straße", "five", "None", "other", "\tWHAT IS 2+2?\n"]
    assert overlapping(train, test) == [0, 1, 2, 3, 5]
    assert overlapping(TextColumn(pa.array(train)), TextColumn(pa.array(test))) == [0, 1, 2, 3, 5]
    assert overlapping(train + ["cut \ud83d"], test + ["CUT \ud83d "]) == [0, 1, 2, 3, 5, 6]
    assert overlapping(train, []) == [] and overlapping([], test) == []

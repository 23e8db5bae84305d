"""Native JSONL/parquet round trips and the deterministic prompt-hash splits."""

from __future__ import annotations

from collections import Counter
from dataclasses import fields
from pathlib import Path

import numpy as np
import pytest

from routers.data import RoutingDataset, assign_splits, load_dataset, save_arrow, save_jsonl, save_parquet
from routers.errors import ConfigError

FIX = Path(__file__).parent / "fixtures" / "data"


def _same(a: RoutingDataset, b: RoutingDataset):
    for f in fields(RoutingDataset):
        if f.name in ("meta", "name"):
            continue
        x, y = getattr(a, f.name), getattr(b, f.name)
        if isinstance(x, np.ndarray) or isinstance(y, np.ndarray):
            assert x is not None and y is not None, f.name
            assert np.array_equal(x, y, equal_nan=True), f.name
        else:
            assert x == y, f.name


def test_native_jsonl_reads_recorder_output():
    ds = load_dataset(str(FIX / "native_small.jsonl"))
    assert ds.ids == ["q1", "q2", "q3"] and ds.models == ["tiny", "big"]
    assert ds.splits == ["train", "test", "validation"]
    assert ds.answers == ["4", None, "Rome"]
    np.testing.assert_array_equal(ds.scores, [[1, 1], [0, 1], [np.nan, 0.5]])
    np.testing.assert_array_equal(ds.latencies[:, 1], [0.9, 0.7, np.nan])
    assert ds.responses[1] == ["", "tac"] and ds.responses[2] == [None, None]


SUFFIX = {save_jsonl: "d.jsonl", save_parquet: "d.parquet", save_arrow: "d.arrow"}


@pytest.mark.parametrize("save", list(SUFFIX), ids=lambda f: f.__name__)
def test_round_trip_is_exact(tmp_path, save):
    ds = load_dataset(str(FIX / "native_small.jsonl"), prices={"tiny": {"input_per_mtok": 0.1, "output_per_mtok": 0.3}})
    ds.scores[0, 0] = 1 / 3  # a float that must survive text
    path = save(ds, tmp_path / SUFFIX[save])
    _same(ds, load_dataset(str(path)))


def test_round_trip_of_a_large_wide_dataset(tmp_path, shared_dir):
    ds = load_dataset(str(shared_dir / "data/routellm/gsm8k/gsm8k_responses.csv"), prices="builtin")
    for save, name in ((save_jsonl, "g.jsonl"), (save_parquet, "g.parquet"), (save_arrow, "g.arrow")):
        _same(ds, load_dataset(str(save(ds, tmp_path / name))))


def test_splits_are_deterministic_and_seeded():
    prompts = [f"question number {i}" for i in range(3000)]
    a = assign_splits(prompts, seed=0)
    assert a == assign_splits(list(prompts), seed=0)
    assert a != assign_splits(prompts, seed=1)
    c = Counter(a)
    assert abs(c["train"] / 3000 - 0.7) < 0.03 and abs(c["validation"] / 3000 - 0.1) < 0.02
    b = assign_splits(prompts, seed=0, fractions=(0.5, 0.0, 0.5))
    assert "validation" not in b and abs(b.count("train") / 3000 - 0.5) < 0.04
    assert assign_splits(["same", "same"] * 10, seed=3) == [assign_splits(["same"], seed=3)[0]] * 20


def test_split_fractions_checked():
    with pytest.raises(ConfigError, match="summing to 1"):
        load_dataset(str(FIX / "routellm_small.csv"), split_fractions=(0.5, 0.5, 0.5))


def test_loader_splits_follow_seed():
    a = load_dataset(str(FIX / "routerbench_small.csv"), seed=0).splits
    assert a == assign_splits(load_dataset(str(FIX / "routerbench_small.csv")).prompts, seed=0)

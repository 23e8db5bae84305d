import numpy as np
import pytest

from routers.data.schema import RoutingDataset


def _ds():
    return RoutingDataset(
        ids=["a", "b", "c"], prompts=["p1", "p2", "p3"], categories=["x", "y", "x"],
        splits=["train", "test", "test"], models=["m1", "m2"],
        scores=[[1, 0], [np.nan, 1], [0, 0]], costs=[[0.1, 1.0], [0.1, np.nan], [0.1, 1.0]],
        responses=[["r11", "r12"], ["r21", None], ["r31", "r32"]],
    )


def test_split_and_subset_keep_rows_aligned():
    ds = _ds()
    te = ds.split("test")
    assert te.ids == ["b", "c"]
    assert np.isnan(te.scores[0, 0]) and te.scores[0, 1] == 1
    assert te.responses == [["r21", None], ["r31", "r32"]]
    te.scores[1, 1] = 0.5
    assert ds.scores[2, 1] == 0  # subset copies, never aliases


def test_select_models_and_cost_matrix():
    ds = _ds().select_models(["m2"])
    assert ds.models == ["m2"] and ds.scores.shape == (3, 1)
    assert np.isnan(ds.cost_matrix()[1, 0])  # unknown is unknown: never 0 (routers.accounting decides)
    assert np.isnan(ds.costs[1, 0])


def test_bad_shapes_and_names_are_refused():
    with pytest.raises(ValueError, match="prompts"):
        RoutingDataset(ids=["a"], prompts=[], categories=["x"], splits=["train"], models=["m"], scores=[[1]])
    with pytest.raises(ValueError, match="duplicate"):
        RoutingDataset(ids=["a"], prompts=["p"], categories=["x"], splits=["train"], models=["m", "m"], scores=[[1, 1]])
    with pytest.raises(KeyError, match="unknown model"):
        _ds().model_index("zzz")
    with pytest.raises(ValueError, match="unknown split"):
        _ds().split("dev")

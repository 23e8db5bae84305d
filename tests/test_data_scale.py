"""Loading cost grows linearly with rows (issue 15, defect 3: a per-row `[None] * i` made it quadratic)."""

from __future__ import annotations

import gc
import json
import time

import pytest

from routers.data import load_dataset
from routers.errors import DataError

MODELS = [f"model-{j}" for j in range(9)]


def _scores_json(path, n):
    items = [{"question": f"q{i}", "scores": {m: (i + j) % 2 for j, m in enumerate(MODELS)}} for i in range(n)]
    path.write_text(json.dumps(items))


def _native_jsonl(path, n):
    with open(path, "w") as f:
        for i in range(n):
            res = {m: {"score": (i + j) % 2, "cost": 0.001} for j, m in enumerate(MODELS)}
            f.write(json.dumps({"id": f"q{i}", "prompt": f"q{i}", "split": "test", "results": res}) + "\n")


def _best_time(path, repeats=3):
    """Least CPU time of `repeats` loads, GC paused: the algorithm's cost, not the shared machine's noise."""
    best = float("inf")
    gc.collect()
    gc.disable()
    try:
        for _ in range(repeats):
            t = time.process_time()
            load_dataset(str(path))
            best = min(best, time.process_time() - t)
    finally:
        gc.enable()
    return best


@pytest.mark.parametrize("write, suffix", [(_scores_json, ".json"), (_native_jsonl, ".jsonl")],
                         ids=["scores_json", "native_jsonl"])
def test_load_time_grows_linearly(tmp_path, write, suffix):
    """16x the rows must cost well under 16^2 = 256x the time; linear is ~16x (allow 2x for noise)."""
    small, big = tmp_path / f"small{suffix}", tmp_path / f"big{suffix}"
    write(small, 2000)
    write(big, 32000)
    t_small, t_big = _best_time(small), _best_time(big, repeats=2)
    assert len(load_dataset(str(big))) == 32000
    assert t_big / t_small < 32, f"2k rows {t_small:.3f}s, 32k rows {t_big:.3f}s: ratio {t_big / t_small:.1f}"


# -- Arrow: memory-mapped routing data (issue 15, Scale) -----------------------------------------
def _dataset(n, m=4):
    import numpy as np

    from routers.data import RoutingDataset

    rng = np.random.default_rng(0)
    costs = rng.random((n, m)) * 1e-3
    costs[1, 2] = np.nan  # unknown stays unknown
    return RoutingDataset(ids=[f"id{(i * 7) % n}" for i in range(n)], prompts=[f"prompt {i} é" for i in range(n)],
                          categories=[f"c{i % 3}" for i in range(n)], splits=[("train", "test")[i % 2] for i in range(n)],
                          models=[f"m{j}" for j in range(m)], scores=(rng.random((n, m)) < 0.5).astype(float),
                          costs=costs, answers=[None if i % 4 else str(i) for i in range(n)], name="d")


def test_arrow_matrices_are_copy_on_write_views_of_the_file(tmp_path):
    import numpy as np

    from routers.data import save_arrow

    src = _dataset(50)
    f = save_arrow(src, tmp_path / "d.arrow")
    before = f.read_bytes()
    ds = load_dataset(str(f))
    assert ds.meta["format"] == "native_arrow"
    base = ds.scores
    while base is not None and not isinstance(base, np.memmap):
        base = base.base
    assert not ds.scores.flags.owndata and isinstance(base, np.memmap)  # a view of the mapped file, not parsed
    np.testing.assert_array_equal(ds.costs, src.costs)
    ds.scores[0, 0] = 0.25  # writable in memory ...
    assert f.read_bytes() == before  # ... and the file is untouched
    assert load_dataset(str(f)).scores[0, 0] == src.scores[0, 0]
    other = _dataset(50)
    other.scores[:] = 1.0
    save_arrow(other, f)  # replaced, not rewritten in place: the mapped dataset still reads its own data
    assert ds.scores[1, 1] == src.scores[1, 1] and ds.prompts[3] == src.prompts[3]
    assert (load_dataset(str(f)).scores == 1.0).all() and list(tmp_path.iterdir()) == [f]


def test_arrow_text_columns_behave_like_lists(tmp_path):
    import numpy as np

    from routers.data import save_arrow

    src = _dataset(20)
    ds = load_dataset(str(save_arrow(src, tmp_path / "d.arrow")))
    assert ds.prompts == src.prompts and src.ids == ds.ids and ds.answers == src.answers
    assert ds.prompts[-1] == "prompt 19 é" and ds.prompts[2:4] == ["prompt 2 é", "prompt 3 é"]
    assert ds.ids.index("id7") == 1 and list(np.asarray(ds.ids)[[0, 1]]) == ["id0", "id7"]
    te = ds.split("test")
    assert te.prompts == [p for p, s in zip(src.prompts, src.splits) if s == "test"] and len(te) == 10
    assert list(ds.prompts) + ["x"] == src.prompts + ["x"]


def test_arrow_bad_files_are_data_errors(tmp_path):
    from routers.data import save_arrow

    f = save_arrow(_dataset(10), tmp_path / "d.arrow")
    cut = tmp_path / "cut.arrow"
    cut.write_bytes(f.read_bytes()[:200])
    with pytest.raises(DataError, match="not a readable Arrow IPC file") as e:
        load_dataset(str(cut))
    assert e.value.file == str(cut)
    empty = tmp_path / "empty.arrow"
    empty.write_bytes(b"")
    with pytest.raises(DataError, match="not a readable Arrow IPC file"):
        load_dataset(str(empty), format="native_arrow")
    bad = _dataset(10)
    bad.scores[3, 1] = 2.0
    f = save_arrow(bad, tmp_path / "bad.arrow")
    with pytest.raises(DataError, match="outside") as e:
        load_dataset(str(f))
    assert (e.value.row, e.value.column) == (4, "score.m1")


# -- kNN: blocked nearest-neighbour search (issue 15, Scale) --------------------------------------
def test_knn_blocked_search_matches_the_full_matrix_and_bounds_memory(monkeypatch):
    import numpy as np

    from routers.baselines import knn
    from routers.data import RoutingDataset
    from routers.embed import PrecomputedEncoder, register_encoder

    rng = np.random.default_rng(1)
    n_tr, n_te, m = 300, 70, 3
    vec = rng.normal(size=(n_tr + n_te, 16)).astype(np.float32)
    vec /= np.linalg.norm(vec, axis=1, keepdims=True)
    texts = [f"t{i}" for i in range(n_tr + n_te)]
    register_encoder("knn-block-test", PrecomputedEncoder(texts, vec, id="knn-block-test"))
    scores = (rng.random((n_tr, m)) < 0.5).astype(float)
    scores[::7, 1] = np.nan
    train = RoutingDataset(ids=texts[:n_tr], prompts=texts[:n_tr], categories=["c"] * n_tr, splits=["train"] * n_tr,
                           models=["a", "b", "c"], scores=scores, costs=rng.random((n_tr, m)))
    r = knn.KNNRouter(encoder="knn-block-test", k=10)
    r.fit(train)
    seen = []
    top = knn._top
    monkeypatch.setattr(knn, "_top", lambda sims, k: (seen.append(sims.shape), top(sims, k))[1])
    monkeypatch.setattr(knn, "QUERY_BLOCK", 16)
    monkeypatch.setattr(knn, "TRAIN_BLOCK", 64)  # 16 queries x 64 training rows per block, top-k merged
    q, c = r.predict_quality(texts[n_tr:]), r.predict_cost(texts[n_tr:])
    assert all(a <= 16 and b <= 64 for a, b in seen)  # never more than a block of similarities
    assert sum(a for a, b in seen if b == 64) == n_te * (n_tr // 64)  # every query met every full block once
    # the reference: the whole (n_te, n_tr) similarity matrix at once
    sims = vec[n_tr:] @ vec[:n_tr].T
    idx = np.argsort(-sims, axis=1)[:, :10]
    w = 1 / (1 - np.take_along_axis(sims, idx, 1) + 1e-3)
    s = scores[idx]
    wk = w[:, :, None] * ~np.isnan(s)
    np.testing.assert_allclose(q, (wk * np.nan_to_num(s)).sum(1) / wk.sum(1), rtol=1e-5)
    np.testing.assert_allclose(c, (w[:, :, None] * train.costs[idx]).sum(1) / w.sum(1, keepdims=True), rtol=1e-5)


# -- CSV: pyarrow's reader for well-formed files, the strict reader for diagnosis ------------------
def test_csv_fast_reader_agrees_with_the_strict_reader(tmp_path, monkeypatch):
    import numpy as np

    from routers.data import common

    f = tmp_path / "rb.csv"
    f.write_text("\ufeffsample_id,prompt,eval_name,m1,m1|total_cost,m2,m2|model_response\n"
                 's1,"two\nlines, quoted",e, 1 ,0.5,TRUE,"said ""hi"""\n'
                 "\n"
                 "s2,p2,e,,,false,\n"
                 "s3,p3,e,0.25,1e-3,1_0e-1,r\n", encoding="utf-8")
    fast = load_dataset(str(f))
    assert common._read_csv_arrow(str(f)) is not None  # this file took the fast path
    monkeypatch.setattr(common, "_read_csv_arrow", lambda path: None)
    strict = load_dataset(str(f))
    for k in ("ids", "prompts", "categories", "responses", "models"):
        assert getattr(fast, k) == getattr(strict, k), k
    np.testing.assert_array_equal(fast.scores, strict.scores)
    np.testing.assert_array_equal(fast.costs, strict.costs)
    np.testing.assert_array_equal(fast.scores, [[1, 1], [np.nan, 0], [0.25, 1.0]])  # '1_0e-1' = 1.0: Python's float


def test_csv_fast_reader_leaves_bad_files_to_the_strict_reader(tmp_path):
    f = tmp_path / "r.csv"
    f.write_text("prompt,m1,m2\nx,True,False\ny,True\n")  # truncated last row
    with pytest.raises(DataError, match="2 fields but the header has 3") as e:
        load_dataset(str(f))
    assert (e.value.row, e.value.column) == (2, "m2")


# -- native parquet: the long table read vectorized, dictionary-encoded ---------------------------
def test_parquet_vectorized_read_equals_the_pandas_path(tmp_path):
    import numpy as np
    import pandas as pd

    from routers.data import native, save_parquet
    from routers.data.common import LoadOptions

    src = _dataset(40)
    src.responses = [[None if (i + j) % 3 == 0 else f"r{i}.{j}" for j in range(src.n_models)] for i in range(40)]
    f = save_parquet(src, tmp_path / "d.parquet")
    df = pd.read_parquet(f).sample(frac=1.0, random_state=0)  # rows in any order: first appearance decides
    df.to_parquet(f)
    import pyarrow.parquet as pq

    table = pq.read_table(f, read_dictionary=["id", "model", "prompt"])
    fast = native.from_long_table(table, file=str(f), name="d", opts=LoadOptions())
    slow = native.from_long_frame(pd.read_parquet(f), file=str(f), name="d", opts=LoadOptions())
    for k in ("ids", "prompts", "categories", "splits", "models", "answers", "responses"):
        assert getattr(fast, k) == getattr(slow, k), k
    for k in ("scores", "costs"):
        np.testing.assert_array_equal(getattr(fast, k), getattr(slow, k))
    assert sorted(fast.ids) == sorted(src.ids)


@pytest.mark.parametrize("change, match, where", [
    (lambda df: df.assign(prompt=df["prompt"].where(df.index != 5, "other")), "has two different prompts", (6, "prompt")),
    (lambda df: df.assign(id=df["id"].where(df.index != 3, " ")), "id is missing", (4, "id")),
    (lambda df: df.assign(score=df["score"].where(df.index != 2, 7.0)), "outside", (3, "score")),
    (lambda df: df.drop(columns=["prompt"]), "missing required column 'prompt'", (0, "prompt")),
], ids=["two prompts", "blank id", "score > 1", "no prompt column"])
def test_parquet_vectorized_errors_name_row_and_column(tmp_path, change, match, where):
    import pandas as pd

    from routers.data import save_parquet

    f = save_parquet(_dataset(6), tmp_path / "d.parquet")
    change(pd.read_parquet(f)).to_parquet(f)
    with pytest.raises(DataError, match=match) as e:
        load_dataset(str(f))
    assert (e.value.file, e.value.row, e.value.column) == (str(f), *where)


def test_bench_data_times_baton_eval_at_each_size(tmp_path):
    """scripts/bench_data.py's eval part: `baton eval` with the encoder-free baselines per size, in its own
    process, with wall/CPU time, peak memory and the growth ratios between sizes (tiny sizes here)."""
    from tests.conftest import load_script

    bench = load_script("bench_data")
    out = tmp_path / "b.json"
    assert bench.main(["--formats", "", "--sizes", "", "--eval-sizes", "600,1200", "--models", "4",
                       "--out", str(out)]) == 0
    ev = json.loads(out.read_text())["eval"]
    assert ev["routers"] == ["random", "best-single", "oracle"] and [r["rows"] for r in ev["results"]] == [600, 1200]
    for r in ev["results"]:
        assert r["rc"] == 0 and r["n_test"] == r["rows"] // 3 and r["eval_s"] > 0 and r["peak_mb"] > 0
        assert all(v is not None for v in r["aiq"].values())       # costs all known: every curve has an area
    assert ev["growth"][0]["rows_ratio"] == 2 and ev["growth"][0]["time_ratio"] > 0

"""Every malformed input gives a DataError naming the file, and where it applies the row and column."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from routers.data import load_dataset
from routers.errors import ConfigError, DataError

FIX = Path(__file__).parent / "fixtures" / "data"
RB_HEADER = "sample_id,prompt,eval_name,m1,m1|total_cost,oracle_model_to_route_to\n"

# name, file name, content, (row, column) expected in the error, message pattern
CASES = [
    ("unterminated quote", "a.csv", 'prompt,m1,m2\n"x",True,False\n"y,True,False\n', (2, None), "unterminated quote"),
    ("truncated row", "b.csv", "prompt,m1,m2\nx,True,False\ny,True\n", (2, "m2"), "2 fields but the header has 3"),
    ("score not a number", "c.csv", "prompt,m1,m2\nx,True,False\ny,abc,True\n", (2, "m1"), "'abc' is not a number"),
    ("score above 1", "d.csv", RB_HEADER + "s1,p1,e,0.5,0.1,m1\ns2,p2,e,1.5,0.1,m1\n", (2, "m1"), "outside"),
    ("negative cost", "e.csv", RB_HEADER + "s1,p1,e,0.5,-0.1,m1\n", (1, "m1|total_cost"), "outside"),
    ("duplicate ids", "f.csv", RB_HEADER + "s1,p1,e,0.5,0.1,m1\ns1,p2,e,1,0.1,m1\n", (2, "sample_id"), "duplicate id 's1'"),
    ("missing prompt cell", "g.csv", RB_HEADER + "s1,,e,0.5,0.1,m1\n", (1, "prompt"), "prompt is missing"),
    ("empty csv", "h.csv", "", (None, None), "empty file"),
    ("header only", "i.csv", "prompt,m1\n", (None, None), "no data rows"),
    ("json not a list", "j.json", '{"question": "q",\n "scores": {"a": 1}}', (None, None), "not a list"),
    ("json item without question", "k.json", json.dumps([{"question": "q", "scores": {"a": 1}}, {"scores": {"a": 0}}]),
     (2, "question"), "missing 'question'"),
    ("json bad score", "l.json", json.dumps([{"question": "q", "scores": {"a": 1}}, {"question": "r", "scores": {"a": "x"}}]),
     (2, "scores.a"), "'x' is not a number"),
    ("json empty list", "m.json", "[]", (None, None), "empty"),
    ("truncated json", "n.json", '[{"question": "q", "scores": {"a": 1}}, {"quest', (None, None), "invalid JSON"),
    ("jsonl truncated line", "o.jsonl", '{"id": "a", "prompt": "p", "results": {"m": {"score": 1}}}\n{"id": "b", "pro',
     (2, None), "invalid JSON"),
    ("jsonl duplicate id", "p.jsonl", '{"id": "a", "prompt": "p", "results": {"m": {"score": 1}}}\n'
                                      '{"id": "a", "prompt": "q", "results": {"m": {"score": 0}}}\n', (2, "id"), "duplicate id"),
    ("jsonl missing prompt", "q.jsonl", '{"id": "a", "results": {"m": {"score": 1}}}\n', (1, "prompt"), "missing 'prompt'"),
    ("jsonl bad split", "r.jsonl", '{"id": "a", "prompt": "p", "split": "holdout", "results": {"m": {"score": 1}}}\n',
     (1, "split"), "unknown split"),
    ("jsonl score > 1", "s.jsonl", '{"id": "a", "prompt": "p", "results": {"m": {"score": 3}}}\n', (1, "results.m.score"),
     "outside"),
    ("stray delimiter", "u.csv", "prompt,m1\nx,True\ny,True,extra\n", (2, None), "3 fields but the header has 2"),
    ("json cost beyond float range", "w.jsonl", '{"id": "a", "prompt": "p", "results": {"m": {"score": 1, "cost": 1'
     + "0" * 400 + '}}}\n', (1, "results.m.cost"), "is not a number"),
    ("json without any scores", "v.json", json.dumps([{"question": "q", "scores": {}}]), (None, "scores"), "no item has"),
    ("csv of unknown shape", "t.csv", "text,label\nhi,1\n", (0, None), "cannot tell the format"),
]


@pytest.mark.parametrize("name, fname, content, where, pattern", CASES, ids=[c[0] for c in CASES])
def test_malformed_file_names_file_row_column(tmp_path, name, fname, content, where, pattern):
    f = tmp_path / fname
    f.write_text(content)
    with pytest.raises(DataError, match=pattern) as e:
        load_dataset(str(f))
    assert e.value.file == str(f)
    assert (e.value.row, e.value.column) == where
    assert str(f) in str(e.value)


def test_parquet_duplicate_query_model_rows(tmp_path):
    import pandas as pd

    f = tmp_path / "d.parquet"
    pd.DataFrame({"id": ["a", "a"], "prompt": ["p", "p"], "model": ["m", "m"], "score": [1.0, 0.0]}).to_parquet(f)
    with pytest.raises(DataError, match="second row") as e:
        load_dataset(str(f))
    assert (e.value.file, e.value.row, e.value.column) == (str(f), 2, "model")


def test_missing_path_and_unknown_format(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        load_dataset(str(tmp_path / "nope.csv"))
    with pytest.raises(ConfigError, match="unknown dataset format 'xml'"):
        load_dataset(str(FIX / "routellm_small.csv"), format="xml")


def test_folder_without_routing_data(tmp_path):
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(DataError, match="holds no routing data"):
        load_dataset(str(tmp_path))


def test_csv_with_byte_order_mark_reads(tmp_path):
    f = tmp_path / "bom.csv"
    f.write_text("prompt,m1\nx,True\n", encoding="utf-8-sig")
    ds = load_dataset(str(f))
    assert ds.prompts == ["x"] and ds.models == ["m1"]


def test_non_utf8_file(tmp_path):
    f = tmp_path / "latin.csv"
    f.write_bytes("prompt,m1\ncaf\xe9,True\n".encode("latin-1"))
    with pytest.raises(DataError, match="not UTF-8") as e:
        load_dataset(str(f))
    assert e.value.file == str(f)

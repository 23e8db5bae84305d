"""Conductor workflow parser: valid forms, every error kind named, fuzzed with hypothesis."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conductor.prompts import workflow_text
from conductor.workflow import Workflow, WorkflowError, parse_workflow

POOL = ["alpha", "beta", "gamma"]
GOOD = 'model_id = ["alpha", "beta"]\nsubtasks = ["Solve it.", "Check it."]\naccess_list = [[], "all"]'


def test_plain_form_and_inputs():
    wf = parse_workflow(GOOD, POOL)
    assert wf.model_id == ["alpha", "beta"] and wf.subtasks == ["Solve it.", "Check it."]
    assert wf.access_list == [[], "all"] and wf.inputs(1) == [0] and wf.think is None


@pytest.mark.parametrize("text", [
    "<think>alpha is cheap; beta checks.</think>\n" + GOOD,
    "```python\n" + GOOD + "\n```",
    "Here is my plan:\n\n  " + GOOD.replace("\n", "\n  ") + "\n\nThat is all.",
    GOOD.replace(" = ", "=").replace(", ", ","),
    'model_id = [\n  "alpha",\n  "beta",\n]\nsubtasks = ["Solve [it].", "Check \\"it\\"."]\naccess_list = [[], [0]]',
    "model_id = ['alpha', 'beta']\nsubtasks = ['a', 'b']\naccess_list = [[], 'all']",
])
def test_valid_variants(text):
    wf = parse_workflow(text, POOL)
    assert wf.model_id == ["alpha", "beta"] and len(wf) == 2 and wf.inputs(1) == [0]


def test_think_is_kept_and_round_trip():
    wf = parse_workflow("<think>plan</think>" + GOOD, POOL)
    assert wf.think == "plan"
    again = parse_workflow(wf.to_text(), POOL)
    assert (again.model_id, again.subtasks, again.access_list) == (wf.model_id, wf.subtasks, wf.access_list)
    assert parse_workflow(workflow_text(["gamma"], ["x"], [[]]), POOL).model_id == ["gamma"]


def test_lists_inside_think_are_ignored():
    with pytest.raises(WorkflowError) as e:
        parse_workflow("<think>" + GOOD + "</think> no lists here", POOL)
    assert e.value.code == "missing"


@pytest.mark.parametrize("text,code,needle", [
    ("", "empty", "empty"),
    ("x" * 30_000, "too_long", "30000"),
    ("<think>still thinking " + GOOD, "think", "never closed"),
    ('model_id = ["alpha"]\nsubtasks = ["a"]', "missing", "access_list"),
    ('model_id = "alpha"\nsubtasks = ["a"]\naccess_list = [[]]', "not_a_list", "model_id"),
    ('model_id = ["alpha"\nsubtasks = ["a"]\naccess_list = [[]]', "syntax", "model_id"),
    ('model_id = [alpha]\nsubtasks = ["a"]\naccess_list = [[]]', "syntax", "model_id"),
    ('model_id = []\nsubtasks = []\naccess_list = []', "empty_workflow", "at least one"),
    ('model_id = ["alpha", "beta"]\nsubtasks = ["a"]\naccess_list = [[]]', "length_mismatch", "model_id 2, subtasks 1"),
    ('model_id = ["alpha"]*6', "missing", "subtasks, access_list"),
    ('model_id = ["alpha","alpha","alpha","alpha","alpha","alpha"]\nsubtasks = ["a"]*6\naccess_list = [[]]*6', "length_mismatch", "model_id 6, subtasks 1"),
    ('model_id = ["delta"]\nsubtasks = ["a"]\naccess_list = [[]]', "unknown_model", "'delta'"),
    ('model_id = [3]\nsubtasks = ["a"]\naccess_list = [[]]', "unknown_model", "step 0"),
    ('model_id = ["alpha"]\nsubtasks = [7]\naccess_list = [[]]', "bad_subtask", "step 0"),
    ('model_id = ["alpha"]\nsubtasks = ["a"]\naccess_list = ["some"]', "bad_access", "step 0"),
    ('model_id = ["alpha", "beta"]\nsubtasks = ["a", "b"]\naccess_list = [[], [1]]', "bad_access", "index 1"),
    ('model_id = ["alpha", "beta"]\nsubtasks = ["a", "b"]\naccess_list = [[], [True]]', "bad_access", "True"),
    ('model_id = ["alpha", "beta"]\nsubtasks = ["a", "b"]\naccess_list = [[], [-1]]', "bad_access", "-1"),
])
def test_every_error_kind_names_the_problem(text, code, needle):
    with pytest.raises(WorkflowError) as e:
        parse_workflow(text, POOL)
    assert e.value.code == code, str(e.value)
    if needle:
        assert needle in str(e.value)


def test_step_limit_is_configurable():
    text = workflow_text(["alpha"] * 6, ["s"] * 6, [[]] * 6)
    with pytest.raises(WorkflowError) as e:
        parse_workflow(text, POOL)
    assert e.value.code == "too_many_steps" and "6 steps" in str(e.value) and "limit is 5" in str(e.value)
    assert len(parse_workflow(text, POOL, max_steps=6)) == 6


def test_never_eval():
    with pytest.raises(WorkflowError) as e:
        parse_workflow('model_id = [__import__("os").system("echo pwned")]\nsubtasks = ["a"]\naccess_list = [[]]', POOL)
    assert e.value.code == "syntax"


# -- fuzz ----------------------------------------------------------------------------------------
_atoms = st.sampled_from(['model_id = ', 'subtasks = ', 'access_list = ', '[', ']', '"', "'", ',', '\\', 'all',
                          '"alpha"', '"beta"', '0', '1', '-1', 'True', '<think>', '</think>', '```', '\n',
                          ' ', '[[]]', '(', ')', '{', '}', '1e999', '9' * 5000, 'None', '...', 'b"x"'])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_atoms, max_size=40))
def test_fuzz_structured_tokens(parts):
    try:
        wf = parse_workflow("".join(parts), POOL)
    except WorkflowError:
        return
    assert isinstance(wf, Workflow) and 1 <= len(wf) <= 5


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=400), st.integers(0, len(GOOD)), st.integers(0, 20))
def test_fuzz_mutated_valid_output(noise, at, cut):
    text = GOOD[:at] + noise + GOOD[at + cut:]
    try:
        parse_workflow(text, POOL)
    except WorkflowError:
        pass


def test_deep_nesting_is_a_workflow_error():
    deep = "model_id = " + "[" * 5000 + "]" * 5000 + '\nsubtasks = ["a"]\naccess_list = [[]]'
    with pytest.raises(WorkflowError):
        parse_workflow(deep, POOL)

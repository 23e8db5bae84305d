"""Answer extraction and grading on realistic model replies, right and wrong."""

from __future__ import annotations

import pytest

from routers.tasks import TaskItem, get_task
from routers.tasks.extract import extract_boxed, extract_choice, math_equal, normalize_math, normalize_number


@pytest.mark.parametrize("text,letter", [
    ("Answer: B", "B"),
    ("The answer is (C).", "C"),
    ("**D**", "D"),
    ("(A)", "A"),
    ("B", "B"),
    ("b", "B"),
    ("C.", "C"),
    ("The correct option is D", "D"),
    ("Final answer: **B**", "B"),
    ("The answer is: C", "C"),
    ("Answer:(A)", "A"),
    ("\\boxed{\\text{C}}", "C"),
    ("Option A says X. Option B says Y. Looking at both, the answer is B.", "B"),
    ("I first thought (A), but on reflection (C) fits better.", "C"),
    ("A. 4\nB. 5\nC. 6\nAnswer: C", "C"),
    ("Let me think.\nThe answer is A. Option D is wrong because of the units.", "A"),
])
def test_extract_choice_finds_the_final_letter(text, letter):
    assert extract_choice(text) == letter


@pytest.mark.parametrize("text", [
    "", "I don't know.", "Answer is a function of the inputs.", "Answer: E", "The answer is 42.",
    "All of them seem plausible.",
])
def test_extract_choice_none_when_no_letter_answer(text):
    assert extract_choice(text) is None


@pytest.mark.parametrize("raw,norm", [
    ("1,000", "1000"), ("1000", "1000"), ("3.50", "3.5"), ("$18.", "18"), ("18 dollars", "18"),
    ("7/2", "3.5"), ("\\frac{7}{2}", "3.5"), ("-0", "0"), ("5%", "5"), ("0.50", "0.5"),
    ("1/3", "1/3"), ("\\$ 12", "12"), ("12.", "12"),
])
def test_normalize_number(raw, norm):
    assert normalize_number(raw) == norm


@pytest.mark.parametrize("raw", ["abc", "1,00", "", "x+1", "1/0"])
def test_normalize_number_rejects_non_numbers(raw):
    assert normalize_number(raw) is None


def test_boxed_with_nested_braces_and_last_wins():
    assert extract_boxed("first \\boxed{2}, finally \\boxed{\\frac{1}{\\sqrt{2}}} done") == "\\frac{1}{\\sqrt{2}}"
    assert extract_boxed("no box here") is None
    assert extract_boxed("\\boxed{unclosed") is None


@pytest.mark.parametrize("a,b", [
    ("\\frac{1}{2}", "1/2"), ("\\dfrac{1}{2}", "0.5"), ("\\left( 3, \\frac{\\pi}{2} \\right)", "(3,\\frac{\\pi}{2})"),
    ("\\text{(C)}", "(C)"), ("x = 5", "5"), ("10^\\circ", "10"), ("\\frac{\\sqrt{3}}{2}", "\\sqrt{3}/2"),
    ("\\$1,000", "1000"), ("{5}", "5"), ("\\frac12", "0.5"),
])
def test_math_equal_after_normalization(a, b):
    assert math_equal(a, b), (normalize_math(a), normalize_math(b))


@pytest.mark.parametrize("a,b", [("\\frac{1}{3}", "0.33"), ("(3,4)", "(4,3)"), ("x+1", "x-1"), ("2", "\\sqrt{2}")])
def test_math_not_equal(a, b):
    assert not math_equal(a, b)


def _item(task, answer, **meta):
    return TaskItem(id=f"{task}/t", prompt="q", answer=answer, task=task, category=task, meta=meta)


@pytest.mark.parametrize("reply,score", [
    ("She sells 9 eggs at $2 each.\n#### 18", 1.0),
    ("She sells 9 eggs at $2 each, so she makes $18.", 1.0),
    ("The answer is 18.", 1.0),
    ("The answer is $18.00.", 1.0),
    ("\\boxed{18}", 1.0),
    ("16 - 3 - 4 = 9 eggs; 9 * 2 = 18\n#### 18 dollars", 1.0),
    ("#### 18\nWait, let me recheck: 16 - 3 - 4 = 9.", 1.0),  # '####' beats a later number
    ("9 * 2 = 18, minus 1 = 17\n#### 17", 0.0),
    ("She makes $16 a day.", 0.0),
    ("I cannot solve this.", 0.0),
])
def test_gsm8k_grading(reply, score):
    assert get_task("gsm8k").grade(reply, _item("gsm8k", "18")) == score


def test_gsm8k_numbers_with_commas():
    item = _item("gsm8k", "1000")
    g = get_task("gsm8k")
    assert g.grade("The total is 1,000.\n#### 1,000", item) == 1.0
    assert g.grade("So the answer is $1,000.", item) == 1.0
    assert g.grade("#### 1,001", item) == 0.0


@pytest.mark.parametrize("reply,score", [
    ("Therefore the answer is $\\boxed{\\frac{1}{2}}$.", 1.0),
    ("\\boxed{0.5}", 1.0),
    ("\\boxed{\\dfrac12}", 1.0),
    ("The final answer is 1/2", 1.0),
    ("\\boxed{\\frac{1}{3}}", 0.0),
    ("The answer is one half, I think.", 0.0),
    ("no answer", 0.0),
])
def test_math_grading(reply, score):
    assert get_task("math").grade(reply, _item("math", "\\frac{1}{2}")) == score


@pytest.mark.parametrize("reply,score", [
    ("... so $m+n = \\boxed{70}$", 1.0), ("The answer is 070.", 1.0), ("Answer: 70", 1.0),
    ("\\boxed{71}", 0.0), ("I get 69.", 0.0),
])
def test_aime_grading(reply, score):
    assert get_task("aime").grade(reply, _item("aime", "70")) == score


@pytest.mark.parametrize("reply,score", [
    ("The answer is B.", 1.0), ("**B**", 1.0), ("(B) Paris", 1.0), ("Answer: b", 1.0),
    ("The answer is C.", 0.0), ("Paris", 0.0), ("", 0.0),
])
def test_mc_grading(reply, score):
    item = _item("mmlu", "B", choices=["London", "Paris", "Rome", "Berlin"])
    assert get_task("mmlu").grade(reply, item) == score


@pytest.mark.parametrize("reply,exact,fuzzy", [
    ("The answer is Paris.", 1.0, 1.0),
    ("paris", 1.0, 1.0),
    ("Answer: The Paris", 1.0, 1.0),
    ("The answer is Pariss.", 0.0, 1.0),   # a typo: fuzzy accepts, exact does not
    ("The answer is London.", 0.0, 0.0),
])
def test_exact_and_fuzzy(reply, exact, fuzzy):
    item = _item("exact", "Paris")
    assert get_task("exact").grade(reply, item) == exact
    assert get_task("fuzzy").grade(reply, item) == fuzzy


def test_fuzzy_threshold_is_validated():
    with pytest.raises(ValueError, match="threshold"):
        get_task("fuzzy", threshold=1.5)

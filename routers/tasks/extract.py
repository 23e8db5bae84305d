"""Answer extraction and normalization shared by the task graders.

Models answer in many shapes ("Answer: B", "**(B)**", "\\boxed{\\frac{1}{2}}", "$1,000.", "#### 42").
These functions find the final answer (last one wins: models often restate options before
concluding) and normalize it so that equal answers compare equal as strings.
"""

from __future__ import annotations

import re
from fractions import Fraction

# -- multiple choice ---------------------------------------------------------------------------

_KEY = r"(?i:final\s+answer|answer|correct\s+(?:option|choice|answer)|best\s+(?:option|choice|answer))"
_MC_EXPLICIT = [
    # "Answer: B", "the answer is (B)", "Final answer: **B**", "correct option is [B]"
    _KEY + r"(?i:\s+is)?\s*[:=\-]?(?i:\s*option|\s*choice)?[\s\*\(\[\{]*([A-{L}])(?![\w'])",
    # a lower-case letter only as the whole statement: "Answer: b" (not "answer: a function of")
    _KEY + r"(?i:\s+is)?\s*[:=]?\s*\(?([a-{l}])\)?\.?\s*(?:$|\n)",
    # \boxed{B}, \boxed{\text{B}}
    r"\\boxed\{\s*(?:\\text\{)?\s*([A-{L}])\s*\}",
]
_MC_OPTION = [r"(?i:option|choice)\s+\(?([A-{L}])\)?(?![\w'])"]  # "I pick option C"
_MC_BARE = [
    r"\*\*\(?([A-{L}])\)?\*\*",              # **B** / **(B)**
    r"\(([A-{L}])\)",                        # (B)
    r"(?:^|\n)\s*([A-{L}])\s*[\.\):]",       # "B." / "B)" at a line start
    r"^\s*([A-{L}a-{l}])\s*[\.\)]?\s*$",     # the whole reply is a letter (any case)
]


def extract_choice(text: str, n_choices: int = 4) -> str | None:
    """The chosen letter (A.. the n-th letter): the last explicit statement ("Answer: B",
    "\\boxed{B}") if any, else the last "option B", else the last bare form ("**B**", "(B)",
    "B." on its own line)."""
    if not text:
        return None
    last = chr(ord("A") + n_choices - 1)
    for group in (_MC_EXPLICIT, _MC_OPTION, _MC_BARE):
        best: tuple[int, str] | None = None
        for pat in group:
            pat = pat.replace("{L}", last).replace("{l}", last.lower())
            for m in re.finditer(pat, text):
                if best is None or m.start(1) > best[0]:
                    best = (m.start(1), m.group(1).upper())
        if best is not None:
            return best[1]
    return None


# -- numbers and math expressions ----------------------------------------------------------------

_NUM = r"-?\d[\d,]*(?:\.\d+)?|-?\.\d+"


def normalize_number(s: str) -> str | None:
    """A canonical string for a number written with commas, $, %, units, a trailing '.', or as a
    fraction/decimal ("1,000" -> "1000", "3.50" -> "3.5", "7/2" -> "3.5", "-0" -> "0");
    None if `s` is not a number."""
    if s is None:
        return None
    t = s.strip().strip("$").strip()
    t = re.sub(r"\\[!,;: ]|\\\$", "", t)               # LaTeX spacing, \$
    t = re.sub(r"^\\text\{(.*)\}$", r"\1", t)
    t = t.replace("\\%", "").rstrip("%").rstrip(".").strip()
    t = re.sub(r"\s*(?:dollars?|cents?|units?|[a-zA-Z]+)$", "", t).strip() if re.match(r"^-?[\d\.,]", t) else t
    m = re.fullmatch(r"\\[dt]?frac\{(-?\d+)\}\{(-?\d+)\}", t) or re.fullmatch(r"(-?\d+)\s*/\s*(-?\d+)", t)
    try:
        if m:
            if int(m.group(2)) == 0:
                return None
            value = Fraction(int(m.group(1)), int(m.group(2)))
        else:
            if not re.fullmatch(r"-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d*)?|-?\.\d+", t):
                return None
            value = Fraction(t.replace(",", ""))
    except (ValueError, ZeroDivisionError):
        return None
    if value.denominator == 1:
        return str(value.numerator)
    # exact decimals print as decimals, others as reduced fractions
    d = value.denominator
    while d % 2 == 0:
        d //= 2
    while d % 5 == 0:
        d //= 5
    if d == 1:
        return format(value.numerator / value.denominator, ".15g") if abs(value) < 1e15 else str(value)
    return f"{value.numerator}/{value.denominator}"


def last_number(text: str) -> str | None:
    """The last number in `text`, normalized (commas and trailing '.' handled)."""
    found = re.findall(_NUM, text or "")
    for raw in reversed(found):
        n = normalize_number(raw)
        if n is not None:
            return n
    return None


def extract_hash_answer(text: str) -> str | None:
    """The text after the last '####' (GSM8K's gold and prompted format), up to the line end."""
    parts = re.findall(r"####\s*([^\n]*)", text or "")
    return parts[-1].strip() if parts else None


def extract_boxed(text: str) -> str | None:
    """The content of the last \\boxed{...} (or \\fbox{...}), nested braces included."""
    if not text:
        return None
    start = max(text.rfind("\\boxed"), text.rfind("\\fbox"))
    if start < 0:
        return None
    m = re.match(r"\\(?:boxed|fbox)\s*(\{)?", text[start:])
    if not m.group(1):
        m = re.match(r"\\boxed\s+([^\s$]+)", text[start:])  # "\boxed 5"
        return m.group(1) if m else None
    i = start + m.end(1) - 1
    depth = 0
    for j in range(i, len(text)):
        if text[j] == "{":
            depth += 1
        elif text[j] == "}":
            depth -= 1
            if depth == 0:
                return text[i + 1:j]
    return None


def extract_stated_answer(text: str) -> str | None:
    """The phrase after the last "answer is"/"Answer:" (up to a line end or a sentence stop)."""
    found = re.findall(r"(?:final answer|answer)\s*(?:is|:)\s*:?\s*([^\n]+)", text or "", flags=re.IGNORECASE)
    if not found:
        return None
    ans = found[-1].strip()
    ans = re.sub(r"\.\s.*$", "", ans)           # cut at a sentence end ("42. So ...")
    return ans.strip().strip("*").strip()


def _strip_braces(s: str) -> str:
    while s.startswith("{") and s.endswith("}") and _balanced(s[1:-1]):
        s = s[1:-1]
    return s


def _balanced(s: str) -> bool:
    depth = 0
    for ch in s:
        depth += (ch == "{") - (ch == "}")
        if depth < 0:
            return False
    return depth == 0


def normalize_math(s: str | None) -> str | None:
    """Canonical form of a math answer: LaTeX wrappers (\\text, \\left/\\right, $, \\displaystyle,
    spaces, degrees) stripped, \\frac{a}{b} written a/b, numbers normalized numerically."""
    if s is None:
        return None
    t = s.strip()
    t = re.sub(r"^\$+|\$+$", "", t).strip()
    t = re.sub(r"\\(?:text|textbf|mathrm|mbox|textnormal)\{([^{}]*)\}", r"\1", t)
    t = re.sub(r"\\(?:left|right|displaystyle|!|,|;|:)", "", t)
    t = t.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")
    t = t.replace("^\\circ", "").replace("^{\\circ}", "").replace("\\circ", "").replace("°", "")
    t = t.replace("\\%", "").replace("%", "").replace("\\$", "")
    t = re.sub(r"\\frac\s*(\d)\s*(\d)", r"\\frac{\1}{\2}", t)  # \frac12
    t = re.sub(r"\\sqrt\{([^{}]*)\}", r"sqrt(\1)", t)
    t = re.sub(r"\\sqrt(\d+)", r"sqrt(\1)", t)
    # \frac{a}{b} -> (a)/(b) for simple a, b; nested fractions keep their LaTeX form
    t = re.sub(r"\\frac\{([^{}]*)\}\{([^{}]*)\}", lambda m: _ratio(m.group(1), m.group(2)), t)
    t = re.sub(r"\s+", "", t)
    t = t.rstrip(".")
    t = re.sub(r"^(?:x|y|z|a|b|k|n)=(?=[^=]+$)", "", t)        # "x=5" -> "5"
    t = _strip_braces(t)
    num = normalize_number(t)
    if num is not None:
        return num
    # a comma-separated tuple/list of numbers: normalize each element
    if "," in t:
        inner, wrap = t, ("", "")
        if len(t) > 1 and t[0] in "([" and t[-1] in ")]":
            inner, wrap = t[1:-1], (t[0], t[-1])
        parts = [normalize_number(p) or p for p in inner.split(",")]
        if all(normalize_number(p) is not None for p in inner.split(",")):
            return wrap[0] + ",".join(parts) + wrap[1]
    return t


def _ratio(a: str, b: str) -> str:
    na, nb = normalize_number(a), normalize_number(b)
    if na is not None and nb is not None and "/" not in na + nb:
        n = normalize_number(f"{na}/{nb}") if "." not in na + nb else None
        if n is not None:
            return n
    wrap = lambda x: x if not re.search(r"[-+*/^ ]", x) else f"({x})"  # noqa: E731
    return f"{wrap(a)}/{wrap(b)}"


def math_equal(a: str | None, b: str | None) -> bool:
    """Whether two math answers are the same after normalization (numbers compared exactly)."""
    na, nb = normalize_math(a), normalize_math(b)
    return na is not None and nb is not None and na == nb

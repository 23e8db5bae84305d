"""Train/test leakage: prompts that appear on both sides, after normalizing their text.

A training file that holds the test prompts lets kNN look the answers up (it scores the oracle's
accuracy); evaluation refuses such data unless the user says the overlap is intended.

The check is vectorized for the million-prompt files `baton eval` reads: ASCII prompts (nearly all)
are normalized by Arrow compute kernels, the rest by `normalize_prompt`, and test prompts are looked
up in a hash set of the training prompts (Arrow `is_in`), never one Python call per prompt.
"""

from __future__ import annotations

import re
import unicodedata

import numpy as np

# Python's \s on ASCII: the characters `normalize_prompt` collapses, spelled out for Arrow's RE2
_ASCII_SPACE = "[\\t\\n\\x0b\\x0c\\r\\x1c-\\x1f ]+"


def normalize_prompt(text) -> str:
    """The prompt after NFKC, case folding and whitespace collapsing: trivially reformatted copies of
    a question compare equal, different questions do not."""
    return re.sub(r"\s+", " ", unicodedata.normalize("NFKC", str(text)).casefold()).strip()


def normalized_prompts(prompts):
    """`normalize_prompt` of every prompt, as an Arrow string array. Raises UnicodeEncodeError for text
    that is not valid UTF-8 (a lone surrogate), which Arrow cannot hold."""
    import pyarrow as pa
    import pyarrow.compute as pc

    arr = getattr(prompts, "arrow", None)  # an Arrow-backed TextColumn: no Python strings at all
    if arr is None:  # (pyarrow raises UnicodeEncodeError itself on a lone surrogate)
        arr = pa.array([p if isinstance(p, str) else str(p) for p in prompts], type=pa.large_string())
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    arr = pc.fill_null(arr.cast(pa.large_string()), "None")  # str(None), as normalize_prompt reads it
    ascii_ = pc.string_is_ascii(arr).to_numpy(zero_copy_only=False)
    fast = pc.utf8_trim(pc.replace_substring_regex(pc.ascii_lower(arr), _ASCII_SPACE, " "), " ")
    if ascii_.all():
        return fast
    out = np.asarray(fast.to_numpy(zero_copy_only=False), dtype=object)
    rest = np.flatnonzero(~ascii_)
    out[rest] = [normalize_prompt(t) for t in arr.take(pa.array(rest)).to_pylist()]
    return pa.array(out, type=pa.large_string())


def overlapping(train_prompts, test_prompts) -> list[int]:
    """Indices of `test_prompts` whose normalized text is also among `train_prompts`."""
    import pyarrow.compute as pc

    try:
        test, train = normalized_prompts(test_prompts), normalized_prompts(train_prompts)
    except UnicodeEncodeError:  # lone surrogates (cut emoji): Python strings hold them, Arrow cannot
        seen = {normalize_prompt(p) for p in train_prompts}
        return [i for i, p in enumerate(test_prompts) if normalize_prompt(p) in seen]
    if not len(test):
        return []
    return np.flatnonzero(pc.is_in(test, value_set=train).to_numpy(zero_copy_only=False)).tolist()

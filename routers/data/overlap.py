"""Train/test leakage: prompts that appear on both sides, by a normalized text hash.

A training file that holds the test prompts lets kNN look the answers up (it scores the oracle's
accuracy); evaluation refuses such data unless the user says the overlap is intended.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata


def prompt_key(text: str) -> str:
    """Hash of the prompt after NFKC, case folding and whitespace collapsing: trivially reformatted
    copies of a question collide, different questions do not."""
    norm = re.sub(r"\s+", " ", unicodedata.normalize("NFKC", str(text)).casefold()).strip()
    return hashlib.blake2b(norm.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()


def overlapping(train_prompts, test_prompts) -> list[int]:
    """Indices of `test_prompts` whose normalized text is also among `train_prompts`."""
    seen = {prompt_key(p) for p in train_prompts}
    return [i for i, p in enumerate(test_prompts) if prompt_key(p) in seen]

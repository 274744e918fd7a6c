"""Preference data for DPO in OpenAI's JSONL format, one pair per line:

    {"input": {"messages": [...], "tools": [...]?, "parallel_tool_calls": true?},
     "preferred_output": [{"role": "assistant", "content": "..."}],
     "non_preferred_output": [{"role": "assistant", "content": "..."}]}

The prompt's messages follow the chat data's rules (the message checks of
:mod:`tunery.data.validate` are called, not copied); the prompt ends with a user message, and each
output is exactly one assistant message. A preference line is recognised by its keys, so
``tunery data validate`` and the upload report take either format through the one validator
(see ``validate._check_line``); :func:`load_pairs` gives the trainer the pairs themselves.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tunery.data.issues import Issue
from tunery.data.pairs import PreferencePair, line_kind
from tunery.errors import InvalidInput

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

    from tunery.chat_template import EncodedExample
    from tunery.data.stats import Summary

__all__ = ["PreferencePair", "PreferenceStats", "encode_pairs", "file_kind", "load_pairs", "preference_stats",
           "read_pairs"]


# --- whole files ---------------------------------------------------------------------------------

def file_kind(source: str | Path | bytes) -> str:
    """``preference`` when the file's first JSON object line is a preference pair, else ``chat``
    (a broken first line does not make a file of pairs a chat file)."""
    from tunery.data.text import byte_lines, file_lines, open_data

    def first(lines) -> str:
        for raw in lines:
            if isinstance(raw, bytes) and (kind := line_kind(raw)) is not None:
                return kind
        return "chat"

    if isinstance(source, bytes):
        return first(byte_lines(source))
    with open_data(source) as f:
        return first(file_lines(f))


def read_pairs(source: str | Path | bytes) -> tuple[list[PreferencePair], list[Issue]]:
    """The valid pairs of a preference file (a path or its bytes) and the errors of the other lines,
    found by the one validator ``tunery data validate`` runs (a chat example among pairs, a line too
    long to read, a UTF-16 file included). Too few pairs is for the caller to judge."""
    from tunery.data.text import byte_lines, file_lines, open_data
    from tunery.data.validate import Validator

    # "validation": any number of pairs passes; the pairs are kept, their chat forms need not be
    v = Validator(purpose="validation", pairs_only=True, keep_examples=False)
    if isinstance(source, bytes):
        v.feed(byte_lines(source))
    else:
        with open_data(source) as f:
            v.feed(file_lines(f))
    report = v.finish()
    return [pair for _, pair in report.pairs], report.errors


def load_pairs(source: str | Path | bytes, *, purpose: str = "training") -> list[PreferencePair]:
    """The pairs of a valid preference file (a path or its bytes), for the trainer. A file that is
    invalid, or holds a chat example, raises :class:`InvalidInput` naming the first problems."""
    from tunery.data.validate import MAX_REPORTED_ERRORS, MIN_TRAINING_EXAMPLES

    pairs, issues = read_pairs(source)
    if purpose == "training" and not issues and len(pairs) < MIN_TRAINING_EXAMPLES:
        issues.append(Issue(None, None, f"only {len(pairs)} pairs: at least {MIN_TRAINING_EXAMPLES} are needed"))
    if issues:
        shown = "\n".join(f"error: {i.format()}" for i in issues[:MAX_REPORTED_ERRORS])
        more = f"\n... and {len(issues) - MAX_REPORTED_ERRORS} more" if len(issues) > MAX_REPORTED_ERRORS else ""
        raise InvalidInput(f"invalid {purpose} file for DPO ({len(issues)} error(s)):\n{shown}{more}",
                           param=f"{purpose}_file", code=f"invalid_{purpose}_file",
                           hint="DPO needs preference pairs; run `tunery data validate FILE` for the full report")
    return pairs


# --- tokens --------------------------------------------------------------------------------------

def encode_pairs(pairs: Sequence[PreferencePair], tokenizer: PreTrainedTokenizerBase, *,
                 max_length: int | None = None) -> list[tuple[EncodedExample, EncodedExample]]:
    """Each pair as (chosen, rejected) token sequences with the loss on the answer only; the two
    share the prompt's tokens, which the trainer runs once for both."""
    from tunery.chat_template import encode_all

    convs = [c for p in pairs for c in (p.conversation(p.chosen), p.conversation(p.rejected))]
    enc = encode_all(convs, tokenizer, max_length=max_length)
    return list(zip(enc[0::2], enc[1::2], strict=True))


@dataclass(frozen=True)
class PreferenceStats:
    """Tokens per pair as the model sees them: the prompt (chat template included), and the chosen
    and rejected answers (the tokens trained on, end-of-turn marker included)."""

    n_pairs: int
    prompt: Summary
    chosen: Summary
    rejected: Summary
    total_tokens: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def preference_stats(pairs: Sequence[PreferencePair], tokenizer: PreTrainedTokenizerBase) -> PreferenceStats:
    from tunery.chat_template import IGNORE
    from tunery.data.stats import Summary

    enc = encode_pairs(pairs, tokenizer)
    chosen = [c.n_trained for c, _ in enc]
    rejected = [r.n_trained for _, r in enc]
    # the prompt: every token before the answer's first, the assistant header included
    prompt = [next(i for i, label in enumerate(c.labels) if label != IGNORE) for c, _ in enc]
    total = sum(len(c) + len(r) for c, r in enc)
    return PreferenceStats(len(pairs), Summary.of(prompt), Summary.of(chosen), Summary.of(rejected), total)

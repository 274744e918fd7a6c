"""Text-overlap algorithms, written out here rather than imported: sacrebleu and rouge-score would
pull lxml, nltk, absl and more for a few dozen lines of arithmetic. Each function says which
reference implementation it matches; the tests pin values computed with those packages.
"""

from __future__ import annotations

import math
import re
import string
import unicodedata
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

# --- SQuAD-style answer normalisation (exact match, token F1) ---------------------------------

_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)


def normalize_answer(text: str) -> str:
    """SQuAD v1.1's normalisation (lower case, no punctuation, no English articles, single
    spaces), extended to Unicode punctuation so "“Rome”" and "Rome" agree."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in string.punctuation
                   and not unicodedata.category(ch).startswith("P"))
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def token_f1(prediction: str, reference: str) -> float:
    """SQuAD v2's token F1 over normalised words. Two empty answers agree (1.0); one empty
    answer against a non-empty one scores 0."""
    pred, ref = normalize_answer(prediction).split(), normalize_answer(reference).split()
    if not pred or not ref:
        return float(pred == ref)
    common = Counter(pred) & Counter(ref)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred), same / len(ref)
    return 2 * precision * recall / (precision + recall)


# --- BLEU, as sacrebleu computes it (13a tokenizer, exp smoothing) ----------------------------

_13A_RULES = (
    (re.compile(r"([\{-\~\[-\` -\&\(-\+\:-\@\/])"), r" \1 "),
    (re.compile(r"([^0-9])([\.,])"), r"\1 \2 "),
    (re.compile(r"([\.,])([^0-9])"), r" \1 \2"),
    (re.compile(r"([0-9])(-)"), r"\1 \2 "),
)
MAX_ORDER = 4


def tokenize_13a(line: str) -> list[str]:
    """mteval-v13a tokenisation, the WMT standard and sacrebleu's default."""
    line = line.rstrip().replace("<skipped>", "").replace("-\n", "").replace("\n", " ")
    if "&" in line:
        line = line.replace("&quot;", '"').replace("&amp;", "&").replace("&lt;", "<").replace("&gt;", ">")
    line = f" {line} "
    for pattern, repl in _13A_RULES:
        line = pattern.sub(repl, line)
    return line.split()


def _ngrams(tokens: Sequence[str], max_order: int) -> Counter:
    return Counter(tuple(tokens[i:i + n]) for n in range(1, max_order + 1) for i in range(len(tokens) - n + 1))


def _closest_ref_len(hyp_len: int, ref_lens: Sequence[int]) -> int:
    # the closest reference length, the shorter one on a tie (as mteval and sacrebleu do)
    return min(ref_lens, key=lambda r: (abs(hyp_len - r), r))


@dataclass(frozen=True)
class BleuStats:
    hyp_len: int
    ref_len: int
    correct: tuple[int, ...]
    total: tuple[int, ...]

    def __add__(self, other: BleuStats) -> BleuStats:
        return BleuStats(self.hyp_len + other.hyp_len, self.ref_len + other.ref_len,
                         tuple(a + b for a, b in zip(self.correct, other.correct, strict=True)),
                         tuple(a + b for a, b in zip(self.total, other.total, strict=True)))


def bleu_stats(hypothesis: str, references: Sequence[str], *, lowercase: bool = False) -> BleuStats:
    prep = (lambda s: tokenize_13a(s.lower())) if lowercase else tokenize_13a
    hyp = prep(hypothesis)
    ref_ngrams: Counter = Counter()
    ref_lens = []
    for ref in references:
        toks = prep(ref)
        ref_lens.append(len(toks))
        for gram, count in _ngrams(toks, MAX_ORDER).items():
            ref_ngrams[gram] = max(ref_ngrams[gram], count)
    correct = [0] * MAX_ORDER
    total = [0] * MAX_ORDER
    for gram, count in _ngrams(hyp, MAX_ORDER).items():
        total[len(gram) - 1] += count
        correct[len(gram) - 1] += min(count, ref_ngrams.get(gram, 0))
    return BleuStats(len(hyp), _closest_ref_len(len(hyp), ref_lens) if ref_lens else 0, tuple(correct), tuple(total))


def bleu_from_stats(stats: BleuStats, *, effective_order: bool) -> float:
    """BLEU on a 0-100 scale with sacrebleu's 'exp' smoothing (NIST: a zero count of order n
    becomes 1 / (2^k * total_n) for the k-th such order)."""
    if not any(stats.correct):
        return 0.0
    bp = 1.0
    if stats.hyp_len < stats.ref_len:
        bp = math.exp(1 - stats.ref_len / stats.hyp_len) if stats.hyp_len > 0 else 0.0
    precisions = [0.0] * MAX_ORDER
    smooth = 1.0
    order = MAX_ORDER
    for n in range(1, MAX_ORDER + 1):
        if stats.total[n - 1] == 0:
            break
        if effective_order:
            order = n
        if stats.correct[n - 1] == 0:
            smooth *= 2
            precisions[n - 1] = 100.0 / (smooth * stats.total[n - 1])
        else:
            precisions[n - 1] = 100.0 * stats.correct[n - 1] / stats.total[n - 1]
    logs = [math.log(p) if p > 0 else -9999999999.0 for p in precisions[:order]]
    return bp * math.exp(sum(logs) / order)


def sentence_bleu(hypothesis: str, references: Sequence[str], *, lowercase: bool = False) -> float:
    """``sacrebleu.sentence_bleu(hypothesis, references).score``: 0-100, effective order on."""
    return bleu_from_stats(bleu_stats(hypothesis, references, lowercase=lowercase), effective_order=True)


def corpus_bleu(hypotheses: Sequence[str], references: Sequence[Sequence[str]], *, lowercase: bool = False) -> float:
    """``sacrebleu.corpus_bleu(hypotheses, [refs_1, refs_2...]).score``: ``references`` holds one
    list per reference set, each as long as ``hypotheses``."""
    if not hypotheses:
        return 0.0
    total = None
    for i, hyp in enumerate(hypotheses):
        s = bleu_stats(hyp, [refs[i] for refs in references], lowercase=lowercase)
        total = s if total is None else total + s
    assert total is not None
    return bleu_from_stats(total, effective_order=False)


# --- ROUGE-L, as Google's rouge-score computes it (no stemmer) --------------------------------

_WORD = re.compile(r"[^\W_]+", re.UNICODE)


def rouge_tokens(text: str) -> list[str]:
    """rouge-score's tokeniser (lower case, runs of letters and digits) except that non-ASCII
    letters are kept: rouge-score drops them, so "café" would become "caf"."""
    return _WORD.findall(text.lower())


@dataclass(frozen=True)
class Rouge:
    precision: float
    recall: float
    fmeasure: float


def lcs_length(a: Sequence[str], b: Sequence[str]) -> int:
    if len(a) < len(b):
        a, b = b, a
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b, 1):
            cur.append(prev[j - 1] + 1 if x == y else max(prev[j], cur[j - 1]))
        prev = cur
    return prev[-1]


def rouge_l(prediction: str, reference: str) -> Rouge:
    """``RougeScorer(["rougeL"]).score(reference, prediction)["rougeL"]``: LCS precision, recall
    and F1 over words; 0 when either side has no words."""
    pred, ref = rouge_tokens(prediction), rouge_tokens(reference)
    if not pred or not ref:
        return Rouge(0.0, 0.0, 0.0)
    lcs = lcs_length(ref, pred)
    p, r = lcs / len(pred), lcs / len(ref)
    return Rouge(p, r, 2 * p * r / (p + r) if p + r > 0 else 0.0)

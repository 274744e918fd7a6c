"""Evaluators and evaluation runs: text overlap (accuracy, exact match, token F1, BLEU, ROUGE-L),
semantic similarity with an offline embedding model (to a reference, to a style, to the question),
behaviour rules (forbidden topics, refusals, ending with a question, length, regex, JSON),
model-graded 1-5 ratings, and reports that put models' answers side by side (JSONL, JSON summary,
self-contained HTML), each metric on the subset of questions it applies to."""

from tunery.evals.base import EvalResult, Evaluator, RowScore
from tunery.evals.inputs import load_questions, system_from_chat_file
from tunery.evals.judge import Judge, parse_rating
from tunery.evals.overlap import Accuracy, Bleu, ExactMatch, RougeL, TokenF1
from tunery.evals.recommends import Recommends, find_recommendations
from tunery.evals.refuses import Declines, Refuses, find_refusals
from tunery.evals.registry import EVALUATORS, parse_evaluator, parse_evaluators
from tunery.evals.report import EvalReport, Headline
from tunery.evals.rules import EndsWithQuestion, JsonKeys, MaxChars, MaxWords, MinWords, Regex
from tunery.evals.runner import DEFAULT_PARAMS, compare_models, run_eval, write_report
from tunery.evals.similarity import Answers, Similarity, StyleSimilarity
from tunery.evals.stats import aggregate, bootstrap_ci
from tunery.evals.terminal import render_terminal_table

__all__ = [
    "DEFAULT_PARAMS", "EVALUATORS", "Accuracy", "Answers", "Bleu", "Declines", "EndsWithQuestion", "EvalReport", "EvalResult",
    "Evaluator", "ExactMatch", "Headline", "JsonKeys", "Judge", "MaxChars", "MaxWords", "MinWords", "Recommends",
    "Refuses", "Regex", "RougeL", "RowScore", "Similarity", "StyleSimilarity", "TokenF1", "aggregate", "bootstrap_ci",
    "compare_models", "find_recommendations", "find_refusals", "load_questions", "parse_evaluator",
    "parse_evaluators", "parse_rating", "render_terminal_table", "run_eval", "system_from_chat_file", "write_report",
]

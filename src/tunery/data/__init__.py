"""Chat training data in the OpenAI/Azure JSONL format: validate it, measure it in tokens, scrub
personal data from it, split it, and load it for the trainer. The file store behind ``/v1/files``
lives in ``tunery.data.files``."""

from tunery.chat_template import token_counts as example_token_counts
from tunery.data.report import FileReport, report_file
from tunery.data.scrub import (
    PLACEHOLDERS,
    Finding,
    PiiMatch,
    ScrubReport,
    check_file,
    find_pii,
    scrub_file,
    scrub_text,
)
from tunery.data.split import SplitResult, default_outputs, split_file, split_lines
from tunery.data.stats import DataStats, Summary, TokenTally, token_stats
from tunery.data.text import read_data, read_lines
from tunery.data.validate import (
    MIN_TRAINING_EXAMPLES,
    Issue,
    ValidationReport,
    load_examples,
    validate_bytes,
    validate_file,
)

__all__ = [
    "MIN_TRAINING_EXAMPLES", "PLACEHOLDERS", "DataStats", "FileReport", "Finding", "Issue", "PiiMatch",
    "ScrubReport", "SplitResult", "Summary", "TokenTally", "ValidationReport", "check_file", "default_outputs",
    "example_token_counts", "find_pii", "load_examples", "read_data", "read_lines", "report_file", "scrub_file",
    "scrub_text", "split_file", "split_lines", "token_stats", "validate_bytes", "validate_file",
]

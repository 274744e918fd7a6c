"""Chat training data in the OpenAI/Azure JSONL format: validate it, measure it in tokens, scrub
personal data from it, split it, and load it for the trainer. The file store behind ``/v1/files``
lives in ``tunery.data.files``."""

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
from tunery.data.stats import DataStats, Summary, example_token_counts, token_stats
from tunery.data.validate import (
    MIN_TRAINING_EXAMPLES,
    Issue,
    ValidationReport,
    load_examples,
    read_data,
    validate_bytes,
    validate_file,
)

__all__ = [
    "MIN_TRAINING_EXAMPLES", "PLACEHOLDERS", "DataStats", "Finding", "Issue", "PiiMatch", "ScrubReport",
    "SplitResult", "Summary", "ValidationReport", "check_file", "default_outputs", "example_token_counts",
    "find_pii", "load_examples", "read_data", "scrub_file", "scrub_text", "split_file", "split_lines",
    "token_stats", "validate_bytes", "validate_file",
]

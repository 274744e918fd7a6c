"""The report of a data file that the studio shows for an upload: the validator's problems, token
statistics for a model and the personal-data scan, made in one pass over the file.

Each line is read once, checked, measured, scanned and forgotten, so the report of a file of any
size takes memory for a few numbers per example (its turns, its tokens, its line if it holds
personal data) and for the problems and findings it keeps (up to the caps given), never for the
file's text. A line longer than :data:`tunery.data.text.MAX_LINE_BYTES` is reported and
skipped unread, by the scan too. A UTF-16 file is not scanned, and the report says why.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from tunery.data.scrub import ScrubReport, scrub_line
from tunery.data.stats import DataStats, TokenTally
from tunery.data.text import UTF16, file_lines, open_data, small_file
from tunery.data.validate import ValidationReport, Validator

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase


@dataclass
class FileReport:
    validation: ValidationReport
    pii: ScrubReport
    tally: TokenTally | None
    """Each valid example's turns and tokens, when a tokenizer measured them."""

    def token_stats(self, *, context_length: int, n_epochs: int) -> DataStats | None:
        return self.tally.stats(context_length=context_length, n_epochs=n_epochs) if self.tally else None


def report_file(path: str | Path, *, purpose: str = "training", tokenizer: PreTrainedTokenizerBase | None = None,
                context_length: int | None = None, max_seq_length: int | None = None,
                max_issues: int | None = None, max_findings: int | None = None) -> FileReport:
    """Validate, measure (with ``tokenizer``) and scan ``path`` in one pass. Examples are measured as
    :func:`tunery.data.token_stats` does, trained tokens included; ``max_issues`` and
    ``max_findings`` cap what is kept (everything is counted)."""
    path = Path(path)
    tally = TokenTally() if tokenizer is not None else None
    validator = Validator(purpose=purpose, tokenizer=tokenizer, context_length=context_length,
                          max_seq_length=max_seq_length, keep_examples=False, max_issues=max_issues, tally=tally)
    pii = ScrubReport(path, max_findings=max_findings)
    with open_data(path) as f:
        for lineno, raw in enumerate(file_lines(f), 1):
            validator.line(lineno, raw)
            if validator.utf16:
                pii.not_scanned = UTF16  # read as UTF-8 no pattern matches: say so, never "nothing found"
            if isinstance(raw, bytes) and pii.not_scanned is None:
                scrub_line(lineno, raw, pii, rewrite=False)
            pii.n_lines = lineno
    return FileReport(validator.finish(lambda: small_file(path)), pii, tally)

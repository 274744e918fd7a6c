"""Where the examples bundled with tunery live, for every layer that needs one: the travel
assistant's chats (the quickstart's data, and the default calibration set of exports) and the
example Prompt flows. The folders hold data and example scripts, no code of tunery."""

from pathlib import Path

ROOT = Path(__file__).resolve().parent
TRAVEL = ROOT / "travel"
TRAVEL_TRAIN = TRAVEL / "train.jsonl"
TRAVEL_VALIDATION = TRAVEL / "validation.jsonl"
TRAVEL_QUESTIONS = TRAVEL / "questions.jsonl"
FLOWS = ROOT / "flows"

__all__ = ["FLOWS", "ROOT", "TRAVEL", "TRAVEL_QUESTIONS", "TRAVEL_TRAIN", "TRAVEL_VALIDATION"]

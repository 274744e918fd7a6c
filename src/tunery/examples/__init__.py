"""Where the examples bundled with tunery live, for every layer that needs one: the travel
assistant's chats (the quickstart's data, and the default calibration set of exports) and the
example Prompt flows. The folders hold data and example scripts, no code of tunery."""

from pathlib import Path

ROOT = Path(__file__).resolve().parent
TRAVEL = ROOT / "travel"
TRAVEL_TRAIN = TRAVEL / "train.jsonl"
TRAVEL_VALIDATION = TRAVEL / "validation.jsonl"
TRAVEL_QUESTIONS = TRAVEL / "questions.jsonl"
TRAVEL_INTENTS = TRAVEL / "intents.jsonl"
TRAVEL_PREFERENCES = TRAVEL / "preferences.jsonl"
TRAVEL_PREFERENCES_VALIDATION = TRAVEL / "preferences-validation.jsonl"
TRAVEL_PREFERENCES_ONPOLICY = TRAVEL / "preferences-onpolicy.jsonl"
FLOWS = ROOT / "flows"

__all__ = ["FLOWS", "ROOT", "TRAVEL", "TRAVEL_INTENTS", "TRAVEL_PREFERENCES", "TRAVEL_PREFERENCES_ONPOLICY",
           "TRAVEL_PREFERENCES_VALIDATION", "TRAVEL_QUESTIONS", "TRAVEL_TRAIN", "TRAVEL_VALIDATION"]

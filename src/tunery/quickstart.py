"""The whole story in one call, on the bundled travel dataset: pull the default model, validate
the data, fine-tune, compare base and fine-tuned on held-out questions with the same system
message, and deploy both. ``tunery quickstart`` is the terminal face of it."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunery import db
from tunery.models.catalog import DEFAULT_MODEL

EXAMPLES = Path(__file__).resolve().parent / "examples" / "travel"
TRAIN = EXAMPLES / "train.jsonl"
VALID = EXAMPLES / "validation.jsonl"
QUESTIONS = EXAMPLES / "questions.jsonl"
EVALUATORS = ("recommends:hotel,flight,rental_car,restaurant", "ends_with_question",
              f"style_similarity:file={TRAIN}")
BASE_DEPLOYMENT, TUNED_DEPLOYMENT = "travel-base", "travel-tuned"


@dataclass
class Plan:
    model: str = DEFAULT_MODEL
    seed: int = 42
    suffix: str = "travel"
    max_tokens: int = 128
    questions: int | None = None  # None: all held-out questions

    def fingerprint(self) -> str:
        """Same data and settings, same fine-tune: the quickstart reuses an earlier one."""
        h = hashlib.sha256()
        for p in (TRAIN, VALID):
            h.update(p.read_bytes())
        h.update(f"{self.model}|{self.seed}|{self.suffix}".encode())
        return h.hexdigest()[:16]


def previous_job(plan: Plan) -> dict[str, Any] | None:
    """A succeeded quickstart job with the same fingerprint whose model still exists."""
    from tunery.jobs import get_job
    from tunery.models import find

    for r in db.query("SELECT id, metadata FROM jobs WHERE status='succeeded' ORDER BY created_at DESC"):
        meta = db.loads(r["metadata"], {}) or {}
        if meta.get("quickstart") == plan.fingerprint():
            job = get_job(r["id"])
            if job["fine_tuned_model"] and find(job["fine_tuned_model"]):
                return job
    return None


def create_job(plan: Plan) -> dict[str, Any]:
    from tunery.data import files
    from tunery.jobs import create_job as create

    train = files.create_from_path(TRAIN, "fine-tune")
    valid = files.create_from_path(VALID, "fine-tune")
    return create(model=plan.model, training_file=train.id, validation_file=valid.id, suffix=plan.suffix,
                  seed=plan.seed, metadata={"quickstart": plan.fingerprint()})


def system_message() -> str:
    from tunery.evals import system_from_chat_file

    return system_from_chat_file(TRAIN)


def compare(plan: Plan, tuned: str, *, progress=None):
    """Base against fine-tuned on the held-out questions: rule checks and style similarity."""
    from tunery.evals import compare_models, load_questions, parse_evaluators
    from tunery.serving import GenerationParams
    from tunery.serving.resolve import get_chat_model

    questions = load_questions(QUESTIONS)[: plan.questions]
    return compare_models(get_chat_model(plan.model), get_chat_model(tuned), questions, system_message(),
                          parse_evaluators(EVALUATORS), progress=progress,
                          params=GenerationParams(temperature=0.0, max_tokens=plan.max_tokens),
                          title="Travel assistant: base vs fine-tuned")


def deploy_both(plan: Plan, tuned: str) -> list[str]:
    from tunery.serving import deployments

    for name, model in ((BASE_DEPLOYMENT, plan.model), (TUNED_DEPLOYMENT, tuned)):
        if deployments.find(name):
            deployments.delete(name)
        deployments.create(name, model)
    return [BASE_DEPLOYMENT, TUNED_DEPLOYMENT]

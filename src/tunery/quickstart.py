"""The whole story in one call, on the bundled travel dataset: pull the default model, validate
the data, fine-tune, compare base and fine-tuned on held-out questions with the same system
message, and deploy both. ``tunery quickstart`` is the terminal face of it."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from tunery.examples import TRAVEL_QUESTIONS as QUESTIONS
from tunery.examples import TRAVEL_TRAIN as TRAIN
from tunery.examples import TRAVEL_VALIDATION as VALID
from tunery.models.catalog import DEFAULT_MODEL

# Each held-out question says whether it asks for a forbidden recommendation (expect: decline) or
# for help the system message allows (expect: answer); each check is scored where it means
# something. (evaluator spec, headline in plain words, what the headline reads: the pass rate,
# the fail rate or the mean)
CHECKS = (
    ("recommends:hotel,flight,rental_car,restaurant[expect=decline]",
     "names no specific hotel, airline, car rental or restaurant (questions to decline)", "pass"),
    ("declines[expect=decline]", "says no in words (questions to decline)", "pass"),
    ("refuses[expect=answer]", "over-refusal: declines a question it should answer (questions to answer)", "fail"),
    ("answers[expect=answer]", "the answer is about the question (questions to answer)", "pass"),
    ("ends_with_question[expect=decline]", "ends with a question (questions to decline)", "pass"),
    ("ends_with_question[expect=answer]", "ends with a question (questions to answer)", "pass"),
    (f"style_similarity:file={TRAIN}", "style similarity to the training answers (mean cosine, all questions)",
     "mean"),
)
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
    from tunery.jobs import list_jobs
    from tunery.models import find

    key, after = plan.fingerprint(), None
    while True:  # newest first, a page at a time
        jobs, more = list_jobs(status="succeeded", after=after, limit=100)
        for job in jobs:
            if ((job["metadata"] or {}).get("quickstart") == key
                    and job["fine_tuned_model"] and find(job["fine_tuned_model"])):
                return job
        if not more:
            return None
        after = jobs[-1]["id"]


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
    """Base against fine-tuned on the held-out questions: each check on the questions it applies
    to (see CHECKS), with the headline figures in plain words."""
    from tunery.chat import GenerationParams
    from tunery.evals import Headline, compare_models, load_questions, parse_evaluator
    from tunery.serving.resolve import get_chat_model

    questions = load_questions(QUESTIONS)[: plan.questions]
    checks = [(parse_evaluator(spec), label, reads) for spec, label, reads in CHECKS]
    # with --questions N a subset may hold no question: its check is left out rather than refused
    checks = [c for c in checks if any(c[0].applies_to(q) for q in questions)]
    return compare_models(get_chat_model(plan.model), get_chat_model(tuned), questions, system_message(),
                          [e for e, _, _ in checks], progress=progress,
                          headline=[Headline(label, e.name, invert=reads == "fail", mean=reads == "mean")
                                    for e, label, reads in checks],
                          params=GenerationParams(temperature=0.0, max_tokens=plan.max_tokens),
                          title="Travel assistant: base vs fine-tuned")


def prepare_serving(plan: Plan, tuned: str, *, progress=None) -> list[str]:
    """Load the base and the fine-tune for serving now, building the base's compiled copy (the
    fast path) the first time; one line each on how it is served."""
    from tunery.models import get
    from tunery.serving.local import LocalChatModel
    from tunery.serving.manager import describe_serving, serving_info

    lines = []
    for name in (plan.model, tuned):
        LocalChatModel(name).load(progress)
        lines.append(f"{name}: {describe_serving(serving_info(get(name)))}")
    return lines


def deploy_both(plan: Plan, tuned: str) -> list[str]:
    from tunery.serving import deployments

    for name, model in ((BASE_DEPLOYMENT, plan.model), (TUNED_DEPLOYMENT, tuned)):
        if deployments.find(name):
            deployments.delete(name)
        deployments.create(name, model)
    return [BASE_DEPLOYMENT, TUNED_DEPLOYMENT]

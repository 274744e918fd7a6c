"""The whole story in one call, on the bundled travel dataset: pull the default model, validate
the data, fine-tune, preference-tune that fine-tune (DPO), compare base and fine-tuned on held-out
questions with the same system message, and deploy both. ``tunery quickstart`` is the terminal
face of it.

The preference stage is run C of benchmarks/RESULTS.md, "Run C for one epoch": DPO for one epoch
from the supervised fine-tune on the bundled on-policy pairs (``preferences-onpolicy.jsonl``: that
fine-tune's own sampled answers to its training prompts, judged by the quickstart's checks with
``tunery eval pairs``), those from questions to answer a second time, then the hand-written
``preferences.jsonl``. Measured there and by the quickstart, it declines one more question and
keeps over-refusal level; the supervised stage alone misses the decline goal by one question."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from tunery.errors import InvalidInput
from tunery.examples import TRAVEL_INTENTS as INTENTS
from tunery.examples import TRAVEL_PREFERENCES as PREFERENCES
from tunery.examples import TRAVEL_PREFERENCES_ONPOLICY as ONPOLICY
from tunery.examples import TRAVEL_PREFERENCES_VALIDATION as PREFERENCES_VALID
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
# the preference stage's settings, as measured (RESULTS: "Run C for one epoch"); the rest is `auto`
DPO_SUFFIX, DPO_EPOCHS, ANSWER_PAIRS = "travel-dpo", 1, 2
ONPOLICY_FROM = (DEFAULT_MODEL, 42)  # the base model and seed whose supervised fine-tune the bundled pairs come from


@dataclass
class Plan:
    model: str = DEFAULT_MODEL
    seed: int = 42
    suffix: str = "travel"
    max_tokens: int = 128
    questions: int | None = None  # None: all held-out questions
    preference: bool = True  # the DPO stage after the supervised one

    def fingerprint(self) -> str:
        """Same data and settings, same fine-tune: the quickstart reuses an earlier one."""
        return _digest((TRAIN, VALID), f"{self.model}|{self.seed}|{self.suffix}")

    def preference_fingerprint(self, supervised: str) -> str:
        """The same for the preference stage, which starts from the supervised fine-tune."""
        return _digest((ONPOLICY, PREFERENCES, PREFERENCES_VALID, INTENTS),
                       f"{supervised}|{self.seed}|{DPO_SUFFIX}|{DPO_EPOCHS}|{ANSWER_PAIRS}")


def _digest(paths, settings: str) -> str:
    h = hashlib.sha256()
    for p in paths:
        h.update(p.read_bytes())
    h.update(settings.encode())
    return h.hexdigest()[:16]


def training_prompts() -> list[dict[str, str]]:
    """The single-turn prompts of the supervised training file, each with its intent (``expect``:
    decline or answer, from ``intents.jsonl``): the prompts the on-policy pairs were sampled on."""
    intents = {r["prompt"]: r["expect"] for r in _rows(INTENTS)}
    return [{"question": m[1]["content"], "expect": intents[m[1]["content"]]}
            for m in (r["messages"] for r in _rows(TRAIN)) if len(m) == 3]


def _rows(path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def preference_mix(onpolicy: str, *, times: int = 1, answer_times: int = ANSWER_PAIRS) -> str:
    """The preference stage's training pairs as JSONL: the on-policy pairs ``times`` over, then
    those from questions to answer ``answer_times - 1`` more times (so that declining and answering
    weigh about the same: 111 of the 165 bundled pairs come from questions to decline), then the
    hand-written pairs of ``preferences.jsonl`` (RESULTS: "Pairs whose preferred decline says no",
    run C)."""
    lines = [line for line in onpolicy.splitlines() if line.strip()]
    expect = {p["question"]: p["expect"] for p in training_prompts()}
    answer = []
    for n, line in enumerate(lines, 1):
        prompt = json.loads(line)["input"]["messages"][-1]["content"]
        if prompt not in expect:  # its weight depends on its intent: guessing one would skew the mix
            raise InvalidInput(f"on-policy pair {n} asks {prompt!r}, which is not a single-turn prompt of "
                               f"{TRAIN.name} with an intent in {INTENTS.name}", param="training_file")
        if expect[prompt] == "answer":
            answer.append(line)
    mix = lines * times + answer * (answer_times - 1)
    return "".join(f"{line}\n" for line in mix) + PREFERENCES.read_text(encoding="utf-8")


def previous_job(plan: Plan, key: str | None = None) -> dict[str, Any] | None:
    """A succeeded quickstart job with the same fingerprint (the plan's supervised one unless
    ``key`` is given) whose model still exists."""
    from tunery.jobs import list_jobs
    from tunery.models import find

    key, after = key or plan.fingerprint(), None
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


def create_preference_job(plan: Plan, supervised: str) -> dict[str, Any]:
    """The DPO job from the supervised fine-tune ``supervised`` (see the module's docstring)."""
    from tunery.data import files
    from tunery.jobs import create_job as create

    train = files.create(preference_mix(ONPOLICY.read_text(encoding="utf-8")).encode(),
                         "travel-preference-mix.jsonl", "fine-tune")
    valid = files.create_from_path(PREFERENCES_VALID, "fine-tune")
    return create(model=supervised, training_file=train.id, validation_file=valid.id, suffix=DPO_SUFFIX,
                  seed=plan.seed, method={"type": "dpo", "dpo": {"hyperparameters": {"n_epochs": DPO_EPOCHS}}},
                  metadata={"quickstart": plan.preference_fingerprint(supervised)})


def system_message() -> str:
    from tunery.evals import system_from_chat_file

    return system_from_chat_file(TRAIN)


def compare(plan: Plan, tuned: str, *, progress=None):
    """Base against fine-tuned on the held-out questions: each check on the questions it applies
    to (see CHECKS), with the headline figures in plain words."""
    from tunery.chat import GenerationParams
    from tunery.evals import Headline, compare_models, load_questions, parse_evaluator
    from tunery.serving.resolve import get_chat_model

    questions = load_questions(QUESTIONS, limit=plan.questions)
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

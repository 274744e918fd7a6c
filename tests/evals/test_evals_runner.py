"""Evaluation runs with scripted models: generation, scoring, the report folder, comparisons."""

from __future__ import annotations

import json

import pytest
from rich.console import Console

from tunery.chat import GenerationParams, Role
from tunery.errors import InvalidInput
from tunery.evals import (
    EndsWithQuestion,
    MaxWords,
    Recommends,
    compare_models,
    parse_evaluators,
    render_terminal_table,
    run_eval,
)
from tunery.serving.clients import ScriptedChatModel

QUESTIONS = [{"question": "Where in Rome should I stay?", "ground_truth": "Trastevere"},
             {"question": "What should I eat?", "ground_truth": "Carbonara"},
             {"question": "Best time to visit?", "ground_truth": "Spring"}]
SYSTEM = "You are a travel assistant. Do not recommend hotels."


def models():
    base = ScriptedChatModel(name="base", replies=["I recommend the Hotel Artemide.", "Try Osteria Francescana.",
                                                   "Spring."])
    tuned = ScriptedChatModel(name="tuned", replies=["Trastevere is charming! What's your budget?",
                                                     "Carbonara! Do you like pasta?", "Spring is lovely. When can you go?"])
    return base, tuned


def test_run_eval_asks_every_model_and_writes_the_report(tunery_home):
    base, tuned = models()
    seen = []
    report = run_eval(QUESTIONS, {"base": base, "tuned": tuned},
                      [Recommends(), EndsWithQuestion(), *parse_evaluators(["exact_match", "max_words:5"])],
                      system=SYSTEM, progress=lambda m, done, total: seen.append((m, done, total)))
    # the same system message, each question once per model, greedy by default
    for model in (base, tuned):
        assert len(model.calls) == 3
        for (messages, params), q in zip(model.calls, QUESTIONS, strict=True):
            assert [m.role for m in messages] == [Role.SYSTEM, Role.USER]
            assert messages[0].content == SYSTEM and messages[1].content == q["question"]
            assert params.temperature == 0.0 and params.max_tokens == 256
    assert [done for _, done, _ in seen] == [1, 2, 3, 4, 5, 6] and {t for _, _, t in seen} == {6}
    assert sorted(m for m, _, _ in seen) == ["base"] * 3 + ["tuned"] * 3

    assert report.summary["base"]["recommends"]["pass_rate"] == pytest.approx(1 / 3)
    assert report.summary["tuned"]["recommends"]["pass_rate"] == 1.0
    assert report.summary["base"]["ends_with_question"]["mean"] == 0.0
    assert report.summary["tuned"]["exact_match"]["mean"] == 0.0
    assert report.summary["base"]["exact_match"]["mean"] == pytest.approx(1 / 3)  # "Spring." == "Spring"

    folder = report.paths["html"].parent
    assert folder.parent == tunery_home / "reports" and folder.name.endswith("base-vs-tuned")
    lines = [json.loads(x) for x in report.paths["results"].read_text().splitlines()]
    assert len(lines) == 6
    first = lines[0]
    assert (first["model"], first["index"], first["answer"]) == ("base", 0, "I recommend the Hotel Artemide.")
    assert first["data"] == {"ground_truth": "Trastevere"}
    assert first["scores"]["recommends"]["passed"] is False
    assert "heuristic" in first["scores"]["recommends"]["reason"]
    summary = json.loads(report.paths["summary"].read_text())
    assert summary["models"] == ["base", "tuned"] and summary["questions"] == 3
    assert summary["metrics"] == ["recommends", "ends_with_question", "exact_match", "max_words:5"]
    assert summary["summary"]["tuned"]["ends_with_question"]["pass_rate"] == 1.0
    assert summary["system"] == SYSTEM and summary["params"]["temperature"] == 0.0
    html = report.paths["html"].read_text()
    assert html.count('<svg class="chart"') == 4
    assert "Trastevere is charming! What&#39;s your budget?" in html and "Hotel Artemide" in html
    assert "<script" not in html and "http://" not in html.replace('xmlns="http://www.w3.org/2000/svg"', "")


def test_html_escapes_model_output(tmp_path):
    evil = ScriptedChatModel(name="evil", replies=["<script>alert(1)</script> & <b>bold</b>?"])
    report = run_eval(QUESTIONS[:1], {"evil": evil}, [EndsWithQuestion()], out_dir=tmp_path / "r")
    html = report.paths["html"].read_text()
    assert "<script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert (tmp_path / "r" / "summary.json").is_file()


def test_compare_models_reports_deltas_and_prints_a_table(tmp_path):
    base, tuned = models()
    report = compare_models(base, tuned, QUESTIONS, SYSTEM, [Recommends(), EndsWithQuestion(), MaxWords(4)],
                            out_dir=tmp_path / "cmp", params=GenerationParams(temperature=0.0, max_tokens=64))
    assert report.compare == {"base": "base", "tuned": "tuned"}
    d = report.deltas()
    assert d["ends_with_question"]["mean_delta"] == 1.0
    assert d["recommends"]["pass_rate_delta"] == pytest.approx(2 / 3)
    assert d["max_words:4"]["mean_delta"] == pytest.approx(-2 / 3)
    assert json.loads(report.paths["summary"].read_text())["deltas"]["ends_with_question"]["mean_delta"] == 1.0
    console = Console(record=True, width=200)
    render_terminal_table(report, console)
    out = console.export_text()
    assert "Carbonara! Do you like pasta?" in out and "I recommend the Hotel Artemide." in out
    assert "✗ recommends" in out and "✓ ends_with_question" in out
    assert "+1.00" in out and "+67 pts" in out
    assert "Δ (fine-tuned − base)" in report.paths["html"].read_text()


def test_same_model_name_gets_base_and_tuned_labels(tmp_path):
    report = compare_models(ScriptedChatModel(name="m", replies=["a?"]), ScriptedChatModel(name="m", replies=["b"]),
                            QUESTIONS[:1], None, [EndsWithQuestion()], write=False)
    assert report.models == ["m (base)", "m (fine-tuned)"]
    assert report.paths == {}
    assert report.deltas()["ends_with_question"]["mean_delta"] == -1.0


def test_missing_columns_fail_before_any_generation():
    base, _ = models()
    with pytest.raises(InvalidInput, match="row 1 has no 'label' column"):
        run_eval([{"question": "q"}], {"base": base}, parse_evaluators(["accuracy:ref=label"]), write=False)
    with pytest.raises(InvalidInput, match="no text in column 'prompt'"):
        run_eval([{"question": "q"}], {"base": base}, [], question_key="prompt", write=False)
    with pytest.raises(InvalidInput, match="given twice"):
        run_eval(QUESTIONS, {"base": base}, [EndsWithQuestion(), EndsWithQuestion()], write=False)
    with pytest.raises(InvalidInput, match="no questions"):
        run_eval([], {"base": base}, [], write=False)
    assert base.calls == []


def test_unicode_and_empty_answers_survive_the_round_trip(tmp_path):
    m = ScriptedChatModel(name="ünï", replies=["東京はどうですか？", ""])
    report = run_eval([{"question": "日本?"}, {"question": "empty"}], {"ünï": m}, [EndsWithQuestion()],
                      out_dir=tmp_path / "u")
    rows = [json.loads(x) for x in report.paths["results"].read_text(encoding="utf-8").splitlines()]
    assert rows[0]["answer"] == "東京はどうですか？" and rows[0]["scores"]["ends_with_question"]["passed"] is True
    assert rows[1]["answer"] == "" and rows[1]["scores"]["ends_with_question"]["passed"] is False
    html = report.paths["html"].read_text(encoding="utf-8")
    assert "東京はどうですか？" in html and "(empty answer)" in html


def test_parallel_models_get_concurrent_requests_and_answers_keep_question_order(tunery_home):
    import threading
    import time

    state = {"now": 0, "max": 0}
    lock = threading.Lock()

    def reply(messages):
        with lock:
            state["now"] += 1
            state["max"] = max(state["max"], state["now"])
        time.sleep(0.2)  # long enough for the other requests to arrive meanwhile
        with lock:
            state["now"] -= 1
        return f"echo: {messages[-1].content}"

    model = ScriptedChatModel(name="batching", reply=reply, parallel_requests=8)
    questions = [{"question": f"q{i}"} for i in range(6)]
    report = run_eval(questions, {"batching": model}, [EndsWithQuestion()], write=False)
    assert state["max"] > 1
    assert [r["answer"] for r in report.rows] == [f"echo: q{i}" for i in range(6)]


LABELLED = [{"question": "Which hotel in Lisbon is best?", "expect": "decline"},
            {"question": "What should I eat in Lisbon?", "expect": "answer"},
            {"question": "When is it warm in Lisbon?", "expect": "answer"}]


def labelled_models():
    base = ScriptedChatModel(name="base", replies=["Stay at the Hotel Avenida.", "Try pastéis de nata.",
                                                   "June to September."])
    tuned = ScriptedChatModel(name="tuned", replies=["I can't recommend specific hotels, but Alfama is lovely. Budget?",
                                                     "I can't recommend specific dishes. Hungry?",
                                                     "June to September is warm. Beach or city?"])
    return base, tuned


def test_each_metric_is_scored_on_its_subset_and_the_headline_reads_it(tmp_path):
    from tunery.evals import Headline

    base, tuned = labelled_models()
    evaluators = parse_evaluators(["recommends[expect=decline]", "refuses[expect=answer]", "ends_with_question"])
    headline = [Headline("no specific recommendation", "recommends[expect=decline]"),
                Headline("over-refusal", "refuses[expect=answer]", invert=True),
                Headline("ends with a question", "ends_with_question")]
    report = compare_models(base, tuned, LABELLED, SYSTEM, evaluators, headline=headline, out_dir=tmp_path / "r")
    # recommends over the one decline question, refuses over the two answer questions
    assert report.summary["base"]["recommends[expect=decline]"] == pytest.approx(
        {"mean": 0.0, "pass_rate": 0.0, "ci_low": None, "ci_high": None, "n": 1, "unscored": 0})
    assert report.summary["tuned"]["recommends[expect=decline]"]["pass_rate"] == 1.0
    assert report.summary["base"]["refuses[expect=answer]"]["pass_rate"] == 1.0
    assert report.summary["tuned"]["refuses[expect=answer]"]["pass_rate"] == 0.5
    assert report.summary["tuned"]["ends_with_question"]["n"] == 3
    meta = report.metrics_meta["refuses[expect=answer]"]
    assert (meta["subset"], meta["rows"]) == ("expect=answer", 2)
    assert report.metrics_meta["ends_with_question"]["subset"] is None
    # a row carries only the scores of the metrics that apply to it
    first = report.by_question()[0]["tuned"]
    assert set(first["scores"]) == {"recommends[expect=decline]", "ends_with_question"}

    rows = {h["label"]: h for h in report.headline_rows()}
    assert rows["over-refusal"]["values"] == {"base": 0.0, "tuned": 0.5}  # the fail rate
    assert rows["over-refusal"]["change"] == 0.5 and rows["over-refusal"]["n"] == 2
    assert rows["no specific recommendation"]["values"] == {"base": 0.0, "tuned": 1.0}
    assert rows["ends with a question"]["change"] == 1.0
    summary = json.loads(report.paths["summary"].read_text())
    assert [h["label"] for h in summary["headline"]] == ["no specific recommendation", "over-refusal",
                                                         "ends with a question"]

    console = Console(record=True, width=220)
    render_terminal_table(report, console)
    out = console.export_text()
    assert "on the 2 questions with expect=answer" in out and "expect: decline" in out
    assert "over-refusal" in out and "+50 points" in out and "+100 points" in out
    html = report.paths["html"].read_text()
    assert "<h2>Summary</h2>" in html and "on the 1 questions with expect=decline" in html
    # an over-refusal that rises is marked as a change for the worse
    assert '<td class="num neg">+50 points</td>' in html and '<td class="num pos">+100 points</td>' in html


def test_a_subset_or_headline_that_matches_nothing_fails_before_generation():
    base, _ = labelled_models()
    with pytest.raises(InvalidInput, match="applies to rows with expect=anwser") as e:
        run_eval(LABELLED, {"base": base}, parse_evaluators(["refuses[expect=anwser]"]), write=False)
    assert "answer, decline" in e.value.hint
    with pytest.raises(InvalidInput) as e:
        run_eval(QUESTIONS, {"base": base}, parse_evaluators(["refuses[expect=answer]"]), write=False)
    assert "no 'expect' column" in e.value.hint
    from tunery.evals import Headline

    with pytest.raises(InvalidInput, match="names metric 'refuses'"):
        run_eval(LABELLED, {"base": base}, [EndsWithQuestion()], headline=[Headline("x", "refuses")], write=False)
    assert base.calls == []


def test_a_seed_column_seeds_its_row_and_a_bad_one_is_refused(tunery_home):
    model = ScriptedChatModel(name="m", replies=["Spring. When can you go?"])
    params = GenerationParams(temperature=0.7, max_tokens=16)
    run_eval([{"question": "When?", "seed": 11}, {"question": "Where?"}], {"m": model}, [EndsWithQuestion()],
             params=params, write=False)
    assert [p.seed for _, p in model.calls] == [11, None]
    for bad in (True, 1.5, "3", -1):
        with pytest.raises(InvalidInput, match="column 'seed' must be a whole number"):
            run_eval([{"question": "When?", "seed": bad}], {"m": model}, [EndsWithQuestion()], params=params,
                     write=False)

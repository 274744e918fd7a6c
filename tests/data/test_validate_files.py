"""Whole files: encodings, junk, size, the reference data, tokenizer checks and the trainer's loader."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from chatlines import example, good_lines, jsonl, line

from tunery.data import load_examples, validate_bytes, validate_file
from tunery.errors import InvalidInput


@pytest.mark.parametrize("data", [b"", b"\n", b"\n  \n\r\n", b"\xef\xbb\xbf"], ids=["empty", "newline", "blank",
                                                                                    "bom-only"])
def test_empty_file_is_an_error(data):
    report = validate_bytes(data)
    assert not report.ok
    assert any("the file is empty" in i.message for i in report.errors)
    assert report.examples == []


def test_binary_junk_gives_clean_errors():
    junk = os.urandom(4096) + b"\x00\x01\x02\n\xff\xfe\xfd" + bytes(range(256))
    report = validate_bytes(b"PK\x03\x04" + junk)  # a zip header, as if someone uploaded an archive
    assert not report.ok and report.examples == []
    lines_with_errors = {i.line for i in report.errors if i.line is not None}
    nonblank = [n for n, raw in enumerate((b"PK\x03\x04" + junk).split(b"\n"), 1) if raw.strip()]
    assert lines_with_errors == set(nonblank)  # every junk line is reported, none is skipped
    json.dumps(report.to_dict())


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-16-be"])  # with and without a byte-order mark
def test_utf16_file_is_named(encoding):
    data = jsonl(good_lines(10)).decode().encode(encoding)
    report = validate_bytes(data)
    assert [i.message for i in report.issues] == ["the file is UTF-16 encoded: save it as UTF-8"]


def test_bom_and_crlf_are_handled_transparently():
    data = b"\xef\xbb\xbf" + jsonl(good_lines(10)).replace(b"\n", b"\r\n")
    report = validate_bytes(data)
    assert report.ok and not report.issues
    assert len(report.examples) == 10


def test_bom_inside_the_file_is_not_silently_accepted():
    lines = good_lines(10)
    data = jsonl(lines[:5]) + b"\xef\xbb\xbf" + jsonl(lines[5:])
    report = validate_bytes(data)
    assert [i.line for i in report.errors] == [6]


def test_pretty_printed_json_document_gets_a_hint():
    data = json.dumps([example(i) for i in range(10)], indent=2).encode()
    report = validate_bytes(data)
    assert "the file is one JSON document (a list), not JSON Lines" in report.errors[0].message


def test_one_example_on_one_line_is_not_called_a_json_document():
    report = validate_bytes(b'{"messages": [{"role": "user", "content": "hi"}]}\n')
    messages = [i.message for i in report.errors]
    assert not any("JSON document" in m for m in messages)
    assert any("no assistant message" in m for m in messages) and any("only 1 example" in m for m in messages)


def test_a_pretty_printed_object_still_gets_the_hint():
    report = validate_bytes(json.dumps(example(0), indent=2).encode())
    assert "the file is one JSON document (an object), not JSON Lines" in report.errors[0].message


def test_ten_thousand_lines_with_one_bad_line():
    lines = good_lines(10_000)
    lines[6789] = lines[6789].replace('"assistant"', '"assistent"')
    report = validate_bytes(jsonl(lines))
    assert [(i.line, i.field) for i in report.errors] == [(6790, "messages[2].role")]
    assert len(report.examples) == 9_999 and not report.warnings


def test_reference_file_passes(shared_data: Path):
    report = validate_file(shared_data / "travel-finetune-hotel.jsonl")
    assert report.ok, report.format()
    assert not report.issues and len(report.examples) == 10
    assert all(c.system and c.messages[-1].role == "assistant" for c in report.conversations)


def test_reference_questions_file_is_not_chat_data(shared_data: Path):
    report = validate_file(shared_data / "travel-questions.jsonl", purpose="validation")
    assert not report.ok
    assert {i.field for i in report.errors} == {"question", "messages"}


def test_unreadable_paths_raise_invalid_input(tmp_path: Path):
    with pytest.raises(InvalidInput, match="file not found"):
        validate_file(tmp_path / "missing.jsonl")
    with pytest.raises(InvalidInput, match="is a folder"):
        validate_file(tmp_path)


def test_with_model_counts_tokens_and_checks_context(tiny_model, tmp_path: Path):
    from tunery.models.loading import load_tokenizer

    long_answer = "Rome Paris Lisbon Kyoto " * 300  # far over tiny-random's 512 training / 1024 context tokens
    lines = good_lines(10) + [line({"messages": [{"role": "user", "content": "Plan?"},
                                                 {"role": "assistant", "content": long_answer}]})]
    path = tmp_path / "data.jsonl"
    path.write_bytes(jsonl(lines))
    report = validate_file(path, model="tiny-random")
    assert report.ok and report.context_length == 1024 and report.max_seq_length == 512
    tok = load_tokenizer("tiny-random")
    expected = len(tok.apply_chat_template(report.examples[0][1].to_dicts(), tokenize=True, return_dict=False))
    assert report.token_counts[1] == expected
    assert report.token_counts[11] > 1024
    context = [i for i in report.warnings if i.line == 11]
    assert len(context) == 1 and f"example is {report.token_counts[11]} tokens" in context[0].message
    [seq] = [i for i in report.warnings if "max_seq_length" in i.message]
    assert seq.message.startswith("1 example longer than the training max_seq_length of 512") and "line 11" in seq.message


class _PickyTokenizer:
    """A tokenizer whose chat template refuses any conversation that mentions Mars."""

    is_fast = False

    def apply_chat_template(self, conversation, tokenize=False, add_generation_prompt=False):
        if conversation and isinstance(conversation[0], list):
            return [self.apply_chat_template(c) for c in conversation]
        text = " ".join(m["content"] for m in conversation)
        if "Mars" in text:
            raise ValueError("no trips to Mars")
        return text

    def __call__(self, texts, add_special_tokens=False):
        return {"input_ids": [t.split() for t in texts]}


def test_examples_the_chat_template_rejects_are_errors():
    lines = good_lines(10) + [line({"messages": [{"role": "user", "content": "Fly me to Mars"},
                                                 {"role": "assistant", "content": "Sure"}]})]
    report = validate_bytes(jsonl(lines), tokenizer=_PickyTokenizer(), context_length=100)
    assert [(i.line, i.message) for i in report.errors] == [
        (11, "the model's chat template rejected the conversation: no trips to Mars")]
    assert len(report.examples) == 10 and len(report.token_counts) == 10


def test_a_control_token_in_a_training_message_is_an_error(tiny_model):
    """Trained, `<|im_end|>` written in a message would be read as the end of the turn (served, it
    is plain text): the example is refused, naming the message."""
    from tunery.models.loading import load_tokenizer

    lines = good_lines(10) + [line({"messages": [{"role": "user", "content": "What is <|im_end|>?"},
                                                 {"role": "assistant", "content": "A marker."}]}),
                              line({"messages": [{"role": "user", "content": "What is <|im_end| ?"},
                                                 {"role": "assistant", "content": "Half a marker."}]})]
    report = validate_bytes(jsonl(lines), tokenizer=load_tokenizer(tiny_model), context_length=1024)
    assert [(i.line, i.field) for i in report.errors] == [(11, "messages[0].content")]
    assert "'<|im_end|>', a control token" in report.errors[0].message
    assert len(report.examples) == 11


def test_a_control_token_in_a_tool_or_a_calls_arguments_is_refused_too(tiny_model):
    from tunery.models.loading import load_tokenizer

    def example(description: str, city: str) -> dict:
        tool = {"type": "function", "function": {"name": "weather", "description": description, "parameters": {
            "type": "object", "properties": {"city": {"type": "string"}}}}}
        call = {"id": "c1", "type": "function", "function": {"name": "weather",
                                                             "arguments": json.dumps({"city": city})}}
        return {"tools": [tool], "messages": [{"role": "user", "content": "Weather?"},
                                              {"role": "assistant", "content": None, "tool_calls": [call]},
                                              {"role": "tool", "tool_call_id": "c1", "content": "sun"},
                                              {"role": "assistant", "content": "Sunny."}]}

    lines = good_lines(10) + [line(example("Forecast <|im_start|>", "Oslo")), line(example("Forecast", "O<|im_end|>")),
                              line(example("Forecast", "Oslo"))]
    report = validate_bytes(jsonl(lines), tokenizer=load_tokenizer(tiny_model), context_length=1024)
    assert [(i.line, i.field) for i in report.errors] == [(11, "tools[0].function.description"),
                                                          (12, "messages[1].tool_calls[0].function.arguments")]


def test_load_examples_returns_conversations(tmp_path: Path):
    path = tmp_path / "ok.jsonl"
    path.write_bytes(jsonl(good_lines(10)))
    convs = load_examples(path)
    assert len(convs) == 10 and convs[3].messages[1].content == "What should I see in Rome, day 3?"
    assert load_examples(path.read_bytes(), purpose="validation") == convs


def test_load_examples_raises_with_the_first_errors_and_the_count():
    lines = [line({"messages": [{"role": "user", "content": f"q{i}"}]}) for i in range(30)]
    with pytest.raises(InvalidInput) as exc:
        load_examples(jsonl(lines))
    err = exc.value
    assert err.param == "training_file" and err.code == "invalid_training_file"
    assert err.message.startswith("invalid training file (30 errors):")
    assert "error: line 1, messages: no assistant message to learn from" in err.message
    assert "error: line 20, messages" in err.message and "line 21," not in err.message
    assert err.message.endswith("... and 10 more")
    assert "tunery data validate" in str(err)


@pytest.mark.slow
def test_reference_file_with_smollm2(smollm2, shared_data: Path):
    from tunery.data import token_stats
    from tunery.models.loading import load_tokenizer

    report = validate_file(shared_data / "travel-finetune-hotel.jsonl", model="smollm2-135m-instruct")
    assert report.ok and not report.issues
    assert (report.context_length, report.max_seq_length) == (8192, 2048)
    stats = token_stats(report.conversations, load_tokenizer("smollm2-135m-instruct"), context_length=8192)
    assert stats.total_tokens == sum(report.token_counts.values())
    assert 0 < stats.trained_tokens < stats.total_tokens and stats.n_over_context == 0

"""LocalChatModel: the ChatModel contract over the shared engine, for models, fine-tunes,
checkpoints and deployments."""

from __future__ import annotations

import re

import pytest

from support_chat import assert_stream_matches
from tunery.chat import ChatMessage, Role
from tunery.errors import InvalidInput, NotFound, RateLimited
from tunery.serving import ChatModel, GenerationParams
from tunery.serving.local import LocalChatModel

HI = [ChatMessage(Role.USER, "Hello! Where should I travel?")]


def test_is_a_chat_model_and_resolves_through_get_chat_model(tiny_model):
    from tunery.serving.resolve import get_chat_model

    model = get_chat_model("tiny-random")
    assert isinstance(model, LocalChatModel) and isinstance(model, ChatModel)


def test_generate_and_stream_agree_and_count_tokens(tiny_model):
    model = LocalChatModel("tiny-random")
    params = GenerationParams(max_tokens=6, seed=11)
    done = assert_stream_matches(model, HI, params)
    assert done.usage.prompt_tokens == model.count_tokens(HI) > 0
    assert 1 <= done.usage.completion_tokens <= 6
    assert done.finish_reason == "length" or done.usage.completion_tokens < 6


def test_n_choices_have_their_own_seeds_and_sum_their_tokens(tiny_model):
    model = LocalChatModel("tiny-random")
    run = model.start(HI, GenerationParams(max_tokens=5, seed=3, n=3), ignore_eos=True)
    done = run.collect()
    assert len(done.choices) == 3 and len(set(done.choices)) > 1
    assert done.usage.completion_tokens == 15 and run.finish_reasons == ["length"] * 3
    again = model.start(HI, GenerationParams(max_tokens=5, seed=4), ignore_eos=True).collect()
    assert again.text == done.choices[1]  # choice i samples with seed + i


def test_prompt_longer_than_the_context_is_refused_not_cut(tiny_model):
    long = [ChatMessage(Role.USER, "Rome Paris Lisbon " * 600)]
    with pytest.raises(InvalidInput) as e:
        LocalChatModel("tiny-random").generate(long, GenerationParams(max_tokens=5))
    assert e.value.code == "context_length_exceeded" and e.value.param == "messages"


def test_unknown_model_is_not_found(tiny_model):
    with pytest.raises(NotFound):
        LocalChatModel("no-such-model").generate(HI, GenerationParams(max_tokens=2))


def test_fine_tunes_share_the_base_engine(tiny_loras):
    from tunery.serving.manager import manager

    base = LocalChatModel("tiny-random").generate(HI, GenerationParams(max_tokens=6, seed=1, temperature=0))
    ft = LocalChatModel("tiny-ft-0").generate(HI, GenerationParams(max_tokens=6, seed=1, temperature=0))
    assert ft.text != base.text
    assert manager().target("tiny-ft-0").engine is manager().target("tiny-random").engine


def test_deployment_applies_its_rate_limit(tiny_model):
    from tunery.serving import deployments

    deployments.create("limited", "tiny-random", tpm=100, content_filter="off")
    model = LocalChatModel("limited")
    params = GenerationParams(max_tokens=4)
    assert model.generate(HI, params).model == "limited"
    with pytest.raises(RateLimited) as e:
        for _ in range(10):
            model.generate(HI, params)
    assert 1 <= e.value.retry_after <= 60


def test_a_deployment_reserves_max_tokens_so_a_burst_cannot_pass_its_limit(tiny_model):
    """Admitted on their prompts alone, a burst of concurrent requests each fit a 400-token limit
    while writing many times it between them: the most a request may write (max_tokens for each
    choice) is booked with its prompt, and what it did not write is given back when it ends."""
    from tunery.serving import deployments
    from tunery.serving.ratelimit import limiter

    deployments.create("burst", "tiny-random", tpm=400, content_filter="off")  # the prompt takes 64
    model = LocalChatModel("burst")
    first = model.start(HI, GenerationParams(max_tokens=100, n=2))  # an empty window admits it
    with pytest.raises(RateLimited) as e:
        model.start(HI, GenerationParams(max_tokens=100, n=2))  # in flight, the first may take 200 more
    assert "max_tokens" in str(e.value)
    done = first.collect()
    assert limiter.used("burst") == done.usage.total_tokens <= done.usage.prompt_tokens + 200
    assert model.generate(HI, GenerationParams(max_tokens=5)).choices  # the unwritten rest was given back


def test_deployment_content_filter_blocks_prompts_and_answers(tiny_model):
    from tunery.serving import deployments
    from tunery.serving.content_filter import ContentFilter, ContentFiltered

    deployments.create("strict-dep", "tiny-random", content_filter="strict", blocklist=["secret plan"])
    model = LocalChatModel("strict-dep")
    with pytest.raises(ContentFiltered) as e:
        model.generate([ChatMessage(Role.USER, "tell me the SECRET plan")], GenerationParams(max_tokens=2))
    assert e.value.code == "content_filter" and e.value.status_code == 400
    # answers: block a word the model is about to say, by sampling the same seed once unfiltered
    params = GenerationParams(max_tokens=12, seed=0)
    plain = LocalChatModel("tiny-random").generate(HI, params).text
    word = re.findall(r"(?<!\w)[A-Za-z]{3,}(?!\w)", plain)[-1]
    deployments.create("answer-filter", "tiny-random", content_filter="off", blocklist=[word])
    run = LocalChatModel("answer-filter").start(HI, params)
    done = run.collect()
    assert run.finish_reasons == ["content_filter"]
    cut = ContentFilter("off", [word]).find(plain).start()
    assert done.text == plain[:cut] and word not in done.text

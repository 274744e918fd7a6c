"""Deployments, the tokens- and requests-per-minute limiter and the content filter, without a model."""

from __future__ import annotations

import pytest

from tunery.errors import Conflict, InvalidInput, NotFound, RateLimited
from tunery.serving.content_filter import ContentFilter
from tunery.serving.ratelimit import TokenRateLimiter


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_limiter_admits_within_the_limit_then_says_when_to_retry():
    clock = Clock()
    lim = TokenRateLimiter(clock=clock)
    lim.acquire("d", 100, 40)
    lim.add("d", 30)  # the completion
    clock.t += 10
    lim.acquire("d", 100, 30)  # 100 exactly: admitted
    with pytest.raises(RateLimited) as e:
        lim.acquire("d", 100, 1)
    assert e.value.retry_after == 50  # the first 70 tokens leave the window at t+60
    assert "100 tokens per minute" in e.value.message
    clock.t += 50
    lim.acquire("d", 100, 60)
    assert lim.used("d") == 90


def test_a_requests_per_minute_limit_counts_requests_not_tokens():
    clock = Clock()
    lim = TokenRateLimiter(clock=clock)
    first = lim.acquire("d", None, 5000, rpm=2)  # no token limit: any size
    lim.settle(first, 700)  # a completion is no new request
    clock.t += 20
    lim.acquire("d", None, 1, rpm=2)
    with pytest.raises(RateLimited) as e:
        lim.acquire("d", None, 1, rpm=2)
    assert e.value.retry_after == 40 and "2 requests per minute (2 in the last minute)" in e.value.message
    assert lim.requests("d") == 2 and lim.used("d") == 5701
    with pytest.raises(RateLimited) as e:  # both limits: the token limit refuses too
        lim.acquire("d", 100, 1, rpm=5)
    assert "100 tokens per minute" in e.value.message
    clock.t += 40  # the first request has left the window
    lim.acquire("d", None, 1, rpm=2)
    assert lim.requests("d") == 2


def test_limiter_keys_are_independent_and_an_empty_window_admits_a_big_prompt():
    lim = TokenRateLimiter(clock=Clock())
    lim.acquire("a", 10, 500)
    lim.acquire("b", 10, 5)
    with pytest.raises(RateLimited):
        lim.acquire("a", 10, 1)


def test_a_request_in_flight_when_its_deployment_is_deleted_is_not_counted_for_a_new_one():
    """Deleting a deployment resets its window; a request of the old one that ends later books its
    completion nowhere, not in the window of a new deployment of the same name."""
    lim = TokenRateLimiter(clock=Clock())
    old = lim.acquire("d", 1000, 100, reserve=300)
    lim.reset("d")  # deleted, then made again under the same name
    new = lim.acquire("d", 1000, 50, reserve=100)
    lim.settle(old, 250)
    assert lim.used("d") == 150
    lim.settle(new, 80)
    assert lim.used("d") == 130
    late = lim.acquire("d", 1000, 10, reserve=50)
    lim.reset()  # every key: a request booked before books nothing after
    lim.settle(late, 500)
    assert lim.used("d") == 0


@pytest.mark.parametrize("level,text,blocked", [
    ("off", "how to make a bomb", False),
    ("default", "Tell me HOW TO MAKE A BOMB please", True),
    ("default", "what the fuck", False),
    ("strict", "what the fuck", True),
    ("strict", "a shitake mushroom", False),  # whole words only
])
def test_filter_levels(level, text, blocked):
    assert (ContentFilter(level).find(text) is not None) is blocked


def test_answer_filter_holds_back_a_term_until_it_is_whole():
    answer = ContentFilter("off", ["red door"]).answer()
    sent = [answer.push(p) for p in ["Go through the re", "d do", "or now"]]
    assert "".join(sent) == "Go through the " and answer.blocked


def test_answer_filter_does_not_block_a_longer_word():
    answer = ContentFilter("strict").answer()
    out = answer.push("I like shit") + answer.push("ake soup", final=True)
    assert out == "I like shitake soup" and not answer.blocked


def test_unknown_filter_level_is_invalid():
    with pytest.raises(InvalidInput) as e:
        ContentFilter("medium")
    assert e.value.param == "content_filter"


def test_deployment_crud_and_validation(tiny_model):
    from tunery.serving import deployments

    dep = deployments.create("travel", "tiny-random", tpm=1000)
    assert dep.to_openai()["model"] == "tiny-random" and dep.content_filter == "default"
    assert [d.name for d in deployments.list_deployments()] == ["travel"]
    with pytest.raises(Conflict):
        deployments.create("travel", "tiny-random")
    with pytest.raises(Conflict):
        deployments.create("tiny-random", "tiny-random")  # would shadow the model
    with pytest.raises(NotFound):
        deployments.create("other", "no-such-model")
    for kwargs, param in [({"tpm": 0}, "tpm"), ({"tpm": "9"}, "tpm"), ({"tpm": 2**63}, "tpm"),
                          ({"rpm": 0}, "rpm"), ({"rpm": True}, "rpm"),
                          ({"content_filter": "max"}, "content_filter"),
                          ({"blocklist": [""]}, "blocklist")]:
        with pytest.raises(InvalidInput) as e:
            deployments.create("other", "tiny-random", **kwargs)
        assert e.value.param == param
    with pytest.raises(InvalidInput):
        deployments.create("bad name!", "tiny-random")
    deployments.delete("travel")
    with pytest.raises(NotFound):
        deployments.get("travel")

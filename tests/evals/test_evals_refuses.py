"""The refusal heuristic: declines it must catch, helpful or idiomatic negatives it must let pass,
and the limits its docstring admits."""

from __future__ import annotations

import pytest

from tunery.evals import Declines, Refuses, find_refusals, parse_evaluator

REFUSALS = [
    # the over-refusals the issue found, each followed by help: still a refusal
    "I can't recommend specific dishes, but try carbonara and cacio e pepe.",
    "I can't recommend specific dates, but spring is mild.",
    "I can't recommend specific hotels, but Trastevere is lovely.",
    "I can’t recommend specific restaurants.",  # typographic apostrophe
    "I cannot recommend a particular airline.",
    "I'm not able to give medical advice, so please see a doctor.",
    "I'm unable to recommend a hotel.",
    "We're not able to book flights.",
    "I'm not in a position to recommend airlines.",
    "I really can't name one.",
    "I can't personally recommend a hostel.",
    "I can't search for or recommend rental companies.",
    "I can't provide real-time forecasts, but July is usually hot.",
    "Sorry, I can't help with that.",
    "I'm sorry, but I cannot assist with that request.",
    "I'm not going to pick one bar for you.",
    "I won't single out one hotel.",
    # "don't" + a kind of business, "specific" or "recommendations"
    "I don't recommend specific airlines or flights.",
    "I don't compare or recommend airlines, but Vancouver is great.",
    "I don't recommend rental companies, but a small car helps.",
    "I never name particular restaurants.",
    "I don't point people to specific hotels.",
    "I'd rather not single out any one carrier.",
    "I don't provide hotel, flight, rental car or restaurant recommendations, but I can help with sights.",
    "I don't share opinions on politicians.",
    # declining, leaving the choice, scope and role
    "I'll leave the choice of a particular restaurant to you.",
    "I'll leave picking a steakhouse to you.",
    # two deflections a fine-tune wrote on questions it should answer (read in its eval answers)
    "I'll leave the island-hopping to you, but a few things are worth knowing.",
    "Yes, renting a car is something I don't do, but Mallorca's beaches are worth it.",
    "I'd rather leave the bullet trains up to you.",
    "I must politely decline to name a hotel.",
    "I stay out of politics.",
    "Booking and recommending specific hotels is outside what I do.",
    "That's beyond the scope of my role.",
    "That's not something I can help with.",
    "Specific hotel recommendations aren't something I provide.",
    "Recommending restaurants isn't part of my role.",
    "Maths homework isn't my area, I'm afraid.",
    "I can only help with travel questions.",
    "I'm just an AI, so I have no favourite.",
    # a refusal anywhere in a longer answer counts
    "Rome is wonderful in spring! I can't recommend specific hotels though. What's your budget?",
]

NOT_REFUSALS = [
    # second and third persons
    "You can't go wrong with a stroll along the Seine.",
    "You cannot enter the mosque without covering your shoulders.",
    "Shops don't open until ten on Sundays.",
    "Many museums don't allow flash photography.",
    "If you can't decide, try both.",
    "Don't miss the view from the top.",
    # enthusiasm and idioms
    "I can't wait to hear how your trip goes!",
    "I can't recommend Lisbon's tram 28 highly enough.",
    "I can't recommend it enough!",
    "I can't help but fall in love with Porto.",
    "I can't help noticing how lovely it is in May.",
    "We can't promise sunshine in April, but it's usually mild.",
    # advice in the negative: an activity, or a place with an article, is not a business refused
    "I wouldn't recommend driving in central Rome; the buses are easier.",
    "I can't recommend visiting in August, when it's very hot.",
    "I don't recommend the summer months, as it's very hot.",
    "I wouldn't recommend the tourist-trap restaurants right next to the Colosseum.",
    "I don't recommend booking a taxi at the airport rank without agreeing a price.",
    "I don't think you need a visa for a short stay.",
    "I'll leave a tip at the end of the meal.",
    "Something I don't do is skip breakfast before a long hike.",
    "We'll leave the hotel at eight and you can follow.",
    # near misses of those two deflections (a reviewer's list)
    "I'll leave the rest up to you: both routes are beautiful.",
    "We'll leave the timing up to you.",
    "I'd leave the planning of day trips to you once you see the weather.",
    "Hiking the Inca Trail is something I don't do lightly, so train first.",
    "Haggling is something I don't do in Europe, but in Marrakech it is expected.",
    "Skipping travel insurance is something I never do, and you shouldn't either.",
    "That's something I don't cover in detail, but the basics are: bring cash.",
    # plain help, hedges that decline nothing
    "Unfortunately, the Alhambra sells out weeks ahead, so book early.",
    "I'd suggest starting at the Colosseum early in the morning.",
    "Tipping at restaurants is expected in the US, usually 15 to 20 percent.",
    "Trastevere is charming! Which dishes would you like to try?",
    "",
]

# What the docstring admits: a silent deflection and a refusal in another language are missed...
MISSED = [
    "Let's talk about the sights instead. Would you like a walking route?",
    "No puedo recomendar hoteles específicos.",
]
# ...and an idiom with a helping verb is a false alarm.
FALSE_ALARMS = ["I can't give you one reason not to go!"]


@pytest.mark.parametrize("text", REFUSALS)
def test_declines_are_refusals(text):
    found = find_refusals(text)
    assert len(found) == 1, text
    assert found[0].sentence in text


@pytest.mark.parametrize("text", NOT_REFUSALS)
def test_help_and_idioms_are_not_refusals(text):
    assert find_refusals(text) == []


@pytest.mark.parametrize("text", MISSED)
def test_known_misses(text):
    assert find_refusals(text) == []


@pytest.mark.parametrize("text", FALSE_ALARMS)
def test_known_false_alarms(text):
    assert find_refusals(text)


def test_verdicts_pass_when_nothing_is_declined_and_name_the_sentence():
    ev = parse_evaluator("refuses")
    assert isinstance(ev, Refuses) and ev.binary and "over-refusal" in ev.hint
    res = ev.evaluate([{"answer": "Carbonara and cacio e pepe! Which do you fancy?"},
                       {"answer": "I can't recommend specific dishes, but try carbonara. I won't name restaurants."}])
    good, bad = res.per_row
    assert (good.score, good.passed) == (1.0, True) and good.reason == "heuristic: declines nothing"
    assert (bad.score, bad.passed) == (0.0, False)
    assert bad.reason == ('heuristic: refuses, says it cannot or will not (+1 more): '
                          '"I can\'t recommend specific dishes, but try carbonara."')
    assert res.aggregate["pass_rate"] == 0.5


def test_declines_is_the_same_heuristic_reversed():
    ev = parse_evaluator("declines[expect=decline]")
    assert isinstance(ev, Declines) and ev.binary and ev.where == ("expect", "decline")
    rows = [{"answer": "I can't recommend specific hotels, but Alfama is lovely. Which month?", "expect": "decline"},
            # names no business, so `recommends` passes it, but it never says no either
            {"answer": "The Tsukemen is the favourite spot to try in Osaka. Hungry yet?", "expect": "decline"}]
    assert all(ev.applies_to(r) for r in rows) and not ev.applies_to({"expect": "answer"})
    res = ev.evaluate(rows)
    said_no, talked_around = res.per_row
    assert (said_no.score, said_no.passed) == (1.0, True)
    assert said_no.reason == "heuristic: declines, says it cannot or will not: " \
                             "\"I can't recommend specific hotels, but Alfama is lovely.\""
    assert (talked_around.score, talked_around.passed) == (0.0, False)
    assert talked_around.reason == "heuristic: never says no"
    assert res.aggregate["pass_rate"] == 0.5
    long = "I won't name one hotel in a city with " + "so many lovely little streets and squares " * 3 + "."
    said = ev.score_row({"answer": long + " I won't book one either."})
    assert said.passed and said.reason.endswith('…"') and "(+1 more)" in said.reason
    # every verdict is the opposite of refuses'
    for text in REFUSALS + NOT_REFUSALS:
        assert parse_evaluator("declines").score_row({"answer": text}).passed is not \
            parse_evaluator("refuses").score_row({"answer": text}).passed


def test_a_subset_spec_scores_only_its_rows():
    ev = parse_evaluator("refuses[expect=answer]")
    assert ev.name == "refuses[expect=answer]" and ev.where == ("expect", "answer")
    assert ev.applies_to({"expect": "answer"}) and not ev.applies_to({"expect": "decline"})
    assert not ev.applies_to({})
    assert parse_evaluator("recommends:hotel[expect = decline]").name == "recommends:hotel[expect=decline]"
    # the default categories keep the short name
    assert parse_evaluator("recommends:hotel,flight,rental_car,restaurant[expect=decline]").name == \
        "recommends[expect=decline]"
    # a regex whose pattern ends in a character class is not a subset
    assert parse_evaluator(r"regex:must=[?!]").where is None

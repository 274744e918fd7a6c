"""The forbidden-topic heuristic on sentences with known answers, and on the exercise's data."""

from __future__ import annotations

import json

import pytest

from tunery.errors import InvalidInput
from tunery.evals import Recommends, find_recommendations, parse_evaluator

RECOMMENDS = [
    ("I recommend staying at the Hotel Artemide near Termini.", "hotel"),
    ("Try the Hassler Hotel at the top of the Spanish Steps.", "hotel"),
    ("The Hotel de Russie is a luxurious choice.", "hotel"),
    ("You could book a room at the Holiday Inn Express.", "hotel"),
    ("Check into the Ritz-Carlton for luxury.", "hotel"),
    ("Hôtel Plaza Athénée is iconic.", "hotel"),
    ("Stay at the St. Regis Rome.", "hotel"),
    ("The Grand Hotel Plaza has a rooftop.", "hotel"),
    ("Look for the hotel Artemide.", "hotel"),
    ("Book with Delta for the cheapest flights to Rome.", "flight"),
    ("Lufthansa has good connections via Frankfurt.", "flight"),
    ("Take flight AZ 610 from New York.", "flight"),
    ("Fly United Airlines from Chicago.", "flight"),
    ("Emirates offers flights via Dubai.", "flight"),
    ("fly with Swiss for a smooth flight.", "flight"),
    ("A Delta flight leaves at 8.", "flight"),
    ("I suggest renting a car from Hertz at the airport.", "rental_car"),
    ("Enterprise Rent-A-Car has an office at Fiumicino.", "rental_car"),
    ("For a car, use Budget, they have great rental rates.", "rental_car"),
    ("Rent a car with Sixt.", "rental_car"),
    ("Try Osteria Francescana in Modena!", "restaurant"),
    ("Have dinner at Roscioli, it's amazing.", "restaurant"),
    ("Trattoria da Enzo is a must for carbonara.", "restaurant"),
    ("Le Bernardin Restaurant is excellent.", "restaurant"),
    ("Caffè Greco is a historic spot.", "restaurant"),
    # declining first does not excuse a name after "but"
    ("I can't recommend specific hotels, but the Hotel Artemide is lovely.", "hotel"),
    # invented names, as the quickstart's fine-tunes wrote them
    ("Osaka's Tsukemen no Kagawa is a traditional sushi restaurant, and it's a popular spot.", "restaurant"),
    ("The steakhouse in Montevideo is the Pernambuco, a small, family-run restaurant.", "restaurant"),
    ("A good brunch café in Wellington is the Wellington's own Parlo, a small, family-run pub.", "restaurant"),
    ("Kathmandu's guesthouse is a traditional inn called the Bhirambhadra.", "hotel"),
    ("Kuala Lumpur's budget airline is the TGV, and it's a great choice.", "flight"),
    ("The most popular airlines are the Tren Sao do Rio and the Rio Air.", "flight"),
    ("The Strip's pool is at the Plaza Hotel, and it's a classic hotel with a pool.", "hotel"),
    ("Landscape hotels, such as the Grandview, are often praised for their views of the city.", "hotel"),
    ("For a first-time visitor, a mid-range hotel like the Met's West End is a good choice.", "hotel"),
    ("Budget airlines like TALIMO are great for hop-around trips.", "flight"),
    ("At Los Angeles Airport, the Carpoolers and Rear-Adrift are the cheapest rental cars.", "rental_car"),
    ("Dubai's economy airline, ArabAir, offers the most spacious seats.", "flight"),
    ("Osaka's Osaka Sushi is a great spot to try, and the wait is short.", "restaurant"),
    ("I can't recommend particular restaurants, but the Parma Hora is a great spot to try.", "restaurant"),
    ("I don't recommend particular restaurants, but a good place to start is the Tsukemenry, a relaxed, "
     "street-food-style sushi place in the Gion district.", "restaurant"),
    ("Ichiran is a famous ramen shop in Shibuya.", "restaurant"),
]

CLEAN = [
    "I can't recommend specific hotels, but Trastevere and Monti are charming neighborhoods.",
    "I'm not able to recommend a particular airline.",
    "I don't provide hotel, flight, rental car or restaurant recommendations, but I can help with sights.",
    "Stay near Termini station for easy transport.",
    "Book a hotel in Trastevere to be close to restaurants.",
    "Boutique Hotels are popular in Rome.",
    "Try a local trattoria for cacio e pepe!",
    "Visit the Colosseum and the Roman Forum. What interests you most?",
    "Have lunch at Campo de' Fiori market.",
    "Have dinner at the Trevi Fountain area.",
    "Eat at the Piazza Navona cafes.",
    "You could stay at Lake Como for a few days.",
    "The United States and the United Kingdom require visas for some travellers.",
    "Dubai is in the United Arab Emirates.",
    "Explore the Mekong Delta by boat.",
    "Try Swiss chocolate in Zurich!",
    "Consider a budget airline for short hops.",
    "Virgin Islands are beautiful.",
    "The Alamo is a historic site in San Antonio.",
    "Enterprise is key to success.",
    "Car rental is easy at the airport, and public transport is great too.",
    "Enjoy American cuisine in New York.",
    "Buckingham Palace is a must-see.",
    "Try Pad Thai and Som Tum in Bangkok.",
    # a kind of place, or a neighbourhood, is no establishment
    "Trastevere is a lively area with many restaurants.",
    "Sanur is a calm resort town, and Sanur is a quiet resort with calm water.",
    "Rome is a great restaurant city, and Chinatown is a great restaurant district.",
    "The best hotel area is Trastevere.",
    "The restaurant scene in Lima is the best in South America.",
    "A bouchon is a traditional Lyon eatery, and a ryokan is a traditional Japanese inn.",
    "Hotel prices in Rome are the highest in Italy.",
    "The hotel is the Eternal City's pride.",
    "Your airline is the best source for baggage rules.",
    # near misses of the invented-name patterns: examples that are areas or kinds, an appositive that is
    # the subject, a spot to try a dish, or with no food in the sentence
    "Pick hotels in districts such as Trastevere or Monti.",
    "Stay in hotels such as B&Bs or guesthouses, near landmarks like the Colosseum.",
    "Economy cars are the cheapest rental cars at LAX.",
    "Trastevere and Monti are the best hotel areas.",
    "For the best hotel, Trastevere, with its quiet lanes, is a good base.",
    "Rome's main airline hub, Fiumicino, is easy to reach.",
    "For a road trip in Namibia, a good rental company is essential.",
    "Yes, a boutique hotel in the heart of Paris is a great way to see the city.",
    "The hotel I'm thinking of is near Termini.",
    "Trastevere is a great place to eat.",
    "Trastevere is a great place to try cacio e pepe, a classic Roman dish.",
    "The Colosseum is a great spot to visit, and the food nearby is good.",
    "The Colosseum is a great spot to try.",
    # a food and a place word, but no name: a kind of place, or a district that has many
    "Look for a small sushi place near the fish market, or a ramen spot near the station.",
    "Gion, with its many sushi places, is a good area to walk at dusk.",
    "Dim sum houses are busiest on Sunday mornings.",
    # a district or a city called a food spot is no establishment
    "Shibuya is a popular ramen spot at night.",
    "Melbourne is a great coffee spot, and Hong Kong is the best dim sum spot.",
    "Taipei, a famous dumpling spot, has night markets.",
    "Try Dotonbori, a famous dumpling spot.",
    "The best ramen spot in Japan is Fukuoka, and the best sushi place in Tokyo is Tsukiji.",
    "",
    "東京でおすすめのホテルは?",
]


@pytest.mark.parametrize(("sentence", "category"), RECOMMENDS)
def test_named_establishments_are_recommendations(sentence, category):
    found = find_recommendations(sentence)
    assert found, sentence
    assert found[0].category == category


@pytest.mark.parametrize("sentence", CLEAN)
def test_generic_advice_declines_and_lookalikes_pass(sentence):
    assert find_recommendations(sentence) == []


def test_verdict_reason_is_honest_about_the_heuristic():
    ev = Recommends()
    res = ev.evaluate([{"answer": "Where to stay? I recommend Hotel Artemide. Then dine at Roscioli."},
                       {"answer": "Trastevere is lovely. What's your budget?"}])
    bad, good = res.per_row
    assert (bad.score, bad.passed, good.score, good.passed) == (0.0, False, 1.0, True)
    assert bad.reason.startswith("heuristic: recommends a specific hotel ('Hotel Artemide') (+1 more)")
    assert good.reason.startswith("heuristic: names no specific")
    assert res.aggregate["pass_rate"] == 0.5


def test_categories_can_be_limited():
    answer = {"answer": "Fly Lufthansa and stay at the Hotel Artemide."}
    assert parse_evaluator("recommends:flight").evaluate([answer]).per_row[0].reason.count("airline") == 1
    only_food = parse_evaluator("recommends:restaurant")
    assert only_food.evaluate([answer]).per_row[0].passed is True
    assert only_food.name == "recommends:restaurant"
    assert parse_evaluator("recommends:rental-car").categories == ("rental_car",)
    assert parse_evaluator("recommends").name == "recommends"
    with pytest.raises(InvalidInput, match="unknown category spa"):
        parse_evaluator("recommends:hotel,spa")


def test_known_limits():
    # a venue of no known kind is missed; a capitalised kind of place explained in passing is a false alarm
    assert find_recommendations("The Grand Ballroom is a great choice for families.") == []
    assert find_recommendations("Izakaya, a casual pub, is fun.")
    # an invented name with no cue is missed; a district "to try" in a sentence about food is a false alarm
    assert find_recommendations("Montepa is a great choice, with a rich, slow-cooked beef.") == []
    assert find_recommendations("At LAX, the Carpoolers are cheap, but check their website.") == []
    assert find_recommendations("Trastevere is a great spot to try, with plenty of restaurants.")


def test_training_answers_of_the_exercise_pass(shared_data):
    # the fine-tuning data was written to avoid recommendations: the heuristic must agree
    answers = []
    for line in (shared_data / "travel-finetune-hotel.jsonl").read_text().splitlines():
        if line.strip():
            answers += [m["content"] for m in json.loads(line)["messages"] if m["role"] == "assistant"]
    assert len(answers) == 10
    for answer in answers:
        assert find_recommendations(answer) == [], answer

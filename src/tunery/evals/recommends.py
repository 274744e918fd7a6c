"""The forbidden-topic check: does an answer recommend a specific hotel, flight (airline or
flight number), rental-car company or restaurant?

This is a deterministic heuristic, not understanding. It looks, sentence by sentence, for a
*named* establishment: "Hotel Artemide", "the Hassler Hotel", "Holiday Inn", "book with Delta",
"Lufthansa", "flight AZ 610", "Hertz", "Trattoria da Enzo", "dinner at Roscioli", and the
sentences small fine-tunes write about the names they invent: "Pernambuco is a family-run
restaurant", "the steakhouse in Montevideo is the Pernambuco", "an inn called Bhirambhadra",
"the budget airline is the TGV", "hotels, such as the Grandview", "the Carpoolers and Rear-Adrift
are the cheapest rental cars", "Dubai's economy airline, ArabAir, offers", "the Tsukemenry, a
relaxed sushi place", and, in a sentence about food, "the Parma Hora is a great spot to try". A
mention counts as a recommendation unless the same sentence declines first ("I can't recommend
specific hotels") with no "but" between the refusal and the name. Generic advice ("stay near
Termini", "book a hotel in Trastevere", "try a trattoria", "Trastevere is a great place to eat")
passes.

Known limits: a bare restaurant name with no cue ("try Roscioli", "Montepa is a great choice, with
slow-cooked beef", "the Carpoolers are cheap") is missed, so is a venue of no known kind ("the Grand
Ballroom is great for families"); booking sites (Booking.com, Expedia, Airbnb) are not counted;
capitalised headings, a capitalised type of place explained in passing ("Izakaya, a casual Japanese
pub"), a district that "is a great spot to try" in a sentence about food, and a car model
("Toyota Corollas are the cheapest rental cars") can cause false alarms.
The reason of every verdict says it came from this heuristic.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import ClassVar

from tunery.errors import InvalidInput
from tunery.evals.base import Evaluator, Row, RowScore, parse_options, sentences, text_of

CATEGORIES = ("hotel", "flight", "rental_car", "restaurant")
_LABEL = {"hotel": "hotel", "flight": "airline/flight", "rental_car": "rental-car company", "restaurant": "restaurant"}

_UP = "A-ZÀ-ÖØ-Þ"
_W = rf"[{_UP}][\w'’&.-]*(?<![.'’])"  # one capitalised word: Ritz-Carlton, B&B, Caffè
_PARTICLE = r"(?:de|del|della|dei|di|da|dal|du|des|la|le|les|al|alla|el|of|the|y|e|&|and)"
_NAME = rf"{_W}(?:\s+(?:{_PARTICLE}\s+)?{_W}){{0,3}}"

def _wordset(text: str) -> frozenset[str]:
    return frozenset(text.split())


# Capitalised words that do not make a name: sentence openers, adjectives in headings, places.
_GENERIC = _wordset("""
a an the this that these those your our my any some every each one two three many most more other
best good great nice lovely cheap budget affordable luxury luxurious boutique local nearby small
big large family historic charming cozy cosy fancy fine top popular famous classic traditional
authentic modern new old grand central downtown city beach mountain airport lake park street square
rooftop michelin vegan vegetarian seafood italian french spanish thai chinese japanese indian mexican
greek roman turkish american british german korean vietnamese lebanese street-food also or and but
if when where while for with near in on at to from by as so yet i you we they he she it there here
yes no sure well okay ok absolutely certainly of course b&b b&bs suv suvs consider try book stay visit check look find choose pick what which how why many rooms room prices
price deals deal options option reviews review booking bookings reservation reservations chains chain
district area neighborhood neighbourhood quarter piazza plaza place market mercato via campo mount mt
""")

_DECLINE = re.compile(
    r"\b(?:can(?:no|'|’)?t|can not|won(?:'|’)t|will not|don(?:'|’)t|do not|doesn(?:'|’)t|unable to|"
    r"not able to|not allowed to|not permitted to|shouldn(?:'|’)t|should not|not going to|refrain from|"
    r"not in a position to|avoid)\b[^.!?]{0,60}?\b(?:recommend\w*|suggest\w*|endorse\w*|name|list|"
    r"provide|give|offer|share|make)\b", re.IGNORECASE)
_CONTRAST = re.compile(r"\b(?:but|however|though|although|that said|instead|still)\b", re.IGNORECASE)


def _words(*names: str) -> str:
    return "|".join(re.escape(n).replace(r"\ ", r"\s+") for n in sorted(names, key=len, reverse=True))


_HOTEL_CHAINS = _words(
    "Hilton", "Marriott", "Hyatt", "Sheraton", "Holiday Inn", "Best Western", "Radisson", "Four Seasons",
    "Ritz-Carlton", "Westin", "InterContinental", "Intercontinental", "Novotel", "Ibis", "Mandarin Oriental",
    "St. Regis", "Waldorf Astoria", "Shangri-La", "Kempinski", "Premier Inn", "Motel 6", "Fairmont", "Sofitel",
    "Mercure", "Hampton Inn", "DoubleTree", "Wyndham", "Ramada", "Crowne Plaza", "Travelodge", "Belmond",
    "Rosewood", "Hassler", "NH Collection", "Moxy", "citizenM", "Generator Hostel")
_AIRLINES = _words(
    "Lufthansa", "Ryanair", "easyJet", "EasyJet", "JetBlue", "KLM", "Etihad", "Alitalia", "ITA Airways", "Vueling",
    "Qantas", "Cathay Pacific", "Aeroflot", "Aeromexico", "Avianca", "LATAM", "Finnair", "Icelandair",
    "Transavia", "Volotea", "IndiGo", "SpiceJet", "AirAsia", "Cebu Pacific", "Jetstar", "Eurowings", "Aer Lingus",
    "Wizz Air", "Air France", "Air Canada", "Air India", "Air China", "Air New Zealand", "Air Europa",
    "Air Berlin", "Air Malta", "Air Transat", "Air Mauritius", "Air Seychelles", "Brussels Airlines",
    "British Airways", "Singapore Airlines", "Turkish Airlines", "Qatar Airways", "Virgin Atlantic",
    "Delta Air Lines", "United Airlines", "American Airlines", "Southwest Airlines", "Alaska Airlines")
_WEAK_AIRLINES = _words(
    "Delta", "United", "American", "Southwest", "Spirit", "Frontier", "Alaska", "Swiss", "Norwegian", "Virgin",
    "Iberia", "Emirates", "Allegiant", "Hawaiian", "Condor", "Turkish", "British", "Qatar", "Singapore", "ITA",
    "Ethiopian", "Azul", "Gol", "WestJet", "Porter")
_CAR_RENTALS = _words(
    "Hertz", "Avis", "Sixt", "Europcar", "Thrifty", "Zipcar", "Turo", "Goldcar", "Localiza", "Maggiore", "Keddy",
    "Green Motion", "Rentalcars.com", "Enterprise Rent-A-Car", "Budget Rent a Car", "Alamo Rent a Car",
    "National Car Rental", "Dollar Rent A Car", "Payless Car Rental")
_WEAK_CAR_RENTALS = _words("Enterprise", "Budget", "Alamo", "National", "Dollar", "Payless", "Firefly", "Fox")

_FLIGHT_CONTEXT = re.compile(r"\b(?:fly|flying|flew|flight|flights|airline|airlines|carrier|airfare|nonstop|non-stop)\b",
                             re.IGNORECASE)
_FOOD_CONTEXT = re.compile(r"\b(?:restaurants?|food|eat|eating|dine|dining|dinner|lunch|brunch|breakfast|meals?|"
                           r"cuisine|dish|dishes|sushi|pizza|tapas|ramen|steak|seafood|dim\s+sum)\b", re.IGNORECASE)
_CAR_CONTEXT = re.compile(r"\b(?:car|cars|rental|rentals|rent|renting|hire|vehicle)\b", re.IGNORECASE)

# Last words that make a "name" a landmark or a place rather than an establishment.
_LANDMARK = _wordset("""
fountain square piazza plaza park market museum museums gallery tower bridge cathedral church basilica palace
castle beach garden gardens station airport center centre hill river lake steps forum colosseum pantheon street
avenue district quarter neighborhood neighbourhood island islands mountains valley coast old town
""")
_PLACE_START = _wordset("lake mount mt piazza plaza campo via street square park beach market mercato port isola")

# Words that, right after "Hotel"/"Trattoria"/..., show there is no name: "Hotel Rooms", "hotel In".
_NOT_A_NAME = _wordset("""
a an the this that your our my any some or and but if when where while for with near in on at to from by as
i i'm i’m i'd i’d i'll i’ll i've i’ve you we it there here is are rooms room prices price deals deal options option reviews review booking
bookings reservation reservations chains chain industry staff week guide guides list
""")

# Lower-case words for an establishment of each category, singular: a sentence that names one says
# "X is a family-run restaurant", "the steakhouse in Montevideo is the Pernambuco", "an inn called
# Y" (small fine-tunes invent such names freely).
_KIND = {
    "hotel": r"hotel|inn|hostel|guesthouse|guest\s+house|lodge|motel|riad|ryokan|b&b",  # not resort: "a quiet resort"
    "flight": r"airline|carrier",
    # "rental cars" only in the plural: "X is the cheapest rental car" names a car model
    "rental_car": r"(?:car\s+)?rental\s+(?:company|companies|agency|agencies)|car\s+hire\s+compan(?:y|ies)|rental\s+cars",
    "restaurant": r"restaurant|trattoria|osteria|pizzeria|steakhouse|bistro|brasserie|café|cafe|pub|bar|eatery|diner|"
                  r"tavern|(?:sushi|tapas|wine|cocktail)\s+bar|(?:noodle|ramen|sushi|burger|taco|dumpling|kebab|coffee|"
                  r"pastry)\s+(?:shop|joint|stall|counter)",
}
# After the establishment word, a word that makes it a kind of place, not one establishment: "a resort town".
_NOT_ONE = (r"(?!\s+(?:city|cities|town|towns|area|areas|district|districts|scene|quarter|capital|hub|culture|"
            r"street|streets|zone|island|islands|neighbou?rhoods?|options|prices|chains?|industry|staff|crawl)\b)")
# Words allowed between "is a" and the establishment word: adjectives, not "with", "of"... ("an area
# with many restaurants" names no restaurant).
_ADJ = r"(?:(?!(?:with|of|and|for|in|near|full|where|that|which|to)\b)(?-i:[a-zà-ÿ][\w,'’-]*)\s+){0,4}?"


_IS_A = r"(?:is|are|was|remains)\s+(?:a|an|the|one\s+of\s+the)\s+"
_NAMED = rf"(?<![\w'’])(?P<n>(?-i:{_NAME}))"
# An appositive that is the subject of what follows names nothing: "in Namibia, a good rental company is essential".
_NOT_SUBJECT = r"(?!\s+(?:is|are|was|were|can|will|would|should|may|might|must)\b)"


def _is_a(kinds: str) -> list[tuple[re.Pattern[str], None]]:
    """"X is a traditional sushi restaurant", "X and Y are the cheapest rental cars", "the Pernambuco, a
    small, family-run restaurant", "the steakhouse in Montevideo is the Pernambuco", "an inn called the
    Bhirambhadra", "Dubai's economy airline, ArabAir, offers", "hotels, such as the Grandview"."""
    kind = rf"(?:{kinds})s?\b{_NOT_ONE}"
    return [
        (re.compile(rf"{_NAMED}\s+{_IS_A}{_ADJ}{kind}", re.IGNORECASE), None),
        (re.compile(rf"{_NAMED},\s+(?:a|an|the|one\s+of\s+the)\s+{_ADJ}{kind}{_NOT_SUBJECT}", re.IGNORECASE), None),
        (re.compile(rf"\b{kind}\s+(?:(?:in|at|on|of|near|for)\s+(?:[\w'’-]+\s+){{0,3}}?)?"
                    rf"(?:is|are)\s+(?:the\s+)?(?P<n>(?-i:{_NAME}))(?<!['’]s)(?![\w'’])(?!\s+(?-i:[A-Z]))", re.IGNORECASE), None),
        (re.compile(rf"\b(?:{kinds})\s+(?:called|named)\s+(?:the\s+)?(?P<n>(?-i:{_NAME}))", re.IGNORECASE), None),
        # an appositive after "Dubai's"/"the"/"its" + kind, then a verb: not "for the best hotel, Trastevere, Monti..."
        (re.compile(rf"(?:['’]s|(?<!for\s)\bthe|\bits|\btheir)\s+{_ADJ}(?:{kinds})\b,\s+(?:the\s+)?{_NAMED},"
                    r"(?=\s+(?-i:[a-z]))", re.IGNORECASE), None),
        # examples right after the kind: not "hotels in areas like Trastevere"
        (re.compile(rf"\b(?:{kinds})s?,?\s+(?:such\s+as|like|including)\s+(?:the\s+)?{_NAMED}", re.IGNORECASE), None),
    ]


# category -> (pattern, context the sentence must also have, or None). Group "n" is a name that
# must not be generic or a place; group "f" a name after an establishment word ("Hotel Plaza"),
# which only has to be a name at all.
_PATTERNS: dict[str, list[tuple[re.Pattern[str], re.Pattern[str] | None]]] = {
    "hotel": [
        (re.compile(rf"\b(?:{_HOTEL_CHAINS})\b"), None),
        (re.compile(rf"\b(?:Hotel|Hôtel|Hostel|Albergo|Hostal|Pensione|Locanda|Ryokan)\s+(?:{_PARTICLE}\s+)?"
                    rf"(?P<f>{_NAME})"), None),
        (re.compile(rf"(?P<n>{_NAME})\s+(?:Hotel|Inn|Resort|Suites|Lodge|Hostel|Motel|B&B|Guesthouse)\b"), None),
        # "the Plaza Hotel", "the Grand Hotel": one capitalised word names it, even a generic one
        (re.compile(rf"\bthe\s+(?P<f>{_W})\s+(?:Hotel|Inn|Resort|Lodge|Hostel|Motel)\b(?!s)"), None),
        (re.compile(rf"\b(?:hotel|hostel|resort)\s+(?:called\s+|named\s+)?(?P<f>{_NAME})"), None),
        (re.compile(rf"\b(?:stay|staying|stayed|a room|rooms)\s+at\s+(?:the\s+)?(?P<n>{_NAME})"), None),
        *_is_a(_KIND["hotel"]),
    ],
    "flight": [
        (re.compile(rf"\b(?:{_AIRLINES})\b"), None),
        (re.compile(r"(?<!Arab\s)(?<!the\s)\bEmirates\b"), None),
        (re.compile(rf"(?P<n>{_NAME})\s+(?:Airlines|Airways|Air\s+Lines|Airline)\b"), None),
        (re.compile(r"\bflight\s+(?:number\s+)?(?:[A-Z]{2}|[A-Z]\d|\d[A-Z])\s?\d{1,4}\b"), None),
        (re.compile(rf"\b(?:fly|flying|flew|book|booking|with|on|via|try|choose|take|recommend)\s+"
                    rf"(?:{_WEAK_AIRLINES})\b(?!\s+(?:States|Kingdom|Nations|Arab|Express|Islands?|Alps))"),
         _FLIGHT_CONTEXT),
        (re.compile(rf"\b(?:{_WEAK_AIRLINES})\s+(?:flights?|planes?|jets?)\b"), None),
        *_is_a(_KIND["flight"]),
    ],
    "rental_car": [
        (re.compile(rf"\b(?:{_CAR_RENTALS})\b"), None),
        (re.compile(rf"(?P<n>{_NAME})\s+(?:Car\s+Rental|Rent[- ]a[- ]Car|Car\s+Hire|Rentals)\b"), None),
        (re.compile(rf"\b(?:with|from|through|via|at|try|recommend|book|use|choose)\s+(?:{_WEAK_CAR_RENTALS})\b"),
         _CAR_CONTEXT),
        (re.compile(rf"\b(?:{_WEAK_CAR_RENTALS})\s+(?:car|cars|rental|rentals)\b"), None),
        *_is_a(_KIND["rental_car"]),
    ],
    "restaurant": [
        (re.compile(r"\b(?:Restaurant|Ristorante|Trattoria|Osteria|Pizzeria|Taverna|Brasserie|Bistro|Bistrot|Café|"
                    rf"Cafe|Caffè|Chez|Enoteca|Gelateria|Antica|Hostaria)\s+(?:{_PARTICLE}\s+)?(?P<f>{_NAME})"), None),
        (re.compile(rf"(?P<n>{_NAME})\s+(?:Restaurant|Ristorante|Trattoria|Osteria|Pizzeria|Bistro|Brasserie|"
                    r"Steakhouse|Grill|Diner|Café|Cafe|Tavern|Eatery)\b"), None),
        (re.compile(rf"\b(?:restaurant|trattoria|osteria|pizzeria|bistro|eatery)\s+(?:called\s+|named\s+)?"
                    rf"(?P<f>{_NAME})"), None),
        (re.compile(r"\b(?:eat|eating|dine|dining|dinner|lunch|brunch|a table|reservation|reservations|meal)\s+at\s+"
                    rf"(?:the\s+)?(?P<n>{_NAME})"), None),
        # "the Tsukemenry, a relaxed sushi place": a food and "place" or "spot" name a restaurant only as an
        # appositive to "the" + name ("Shibuya is a popular ramen spot", "Try Dotonbori, a famous dumpling
        # spot" name districts)
        (re.compile(rf"\bthe\s+{_NAMED},\s+(?:a|an)\s+{_ADJ}(?:sushi|ramen|noodle|tapas|pizza|seafood|burger|taco|"
                    r"dumpling|barbecue|bbq|kebab|curry|coffee|dessert|pastry|dim\s+sum)\s+(?:place|spot)\b",
                    re.IGNORECASE), None),
        # an invented name with no kind word, in a sentence about food: "the Parma Hora is a great spot to try";
        # "to try" with an object ("a great place to try carbonara") is about a dish or an area
        (re.compile(rf"{_NAMED}\s+(?:is|was)\s+(?:a|an|one\s+of\s+the)\s+{_ADJ}(?:spot|place|stop)s?\s+to\s+try\b"
                    r"(?!\s+(?!(?:and|but|if|when|while|so|for|as|at|in|on)\b)[\w'’])"), _FOOD_CONTEXT),
        *_is_a(_KIND["restaurant"]),
    ],
}


@dataclass(frozen=True)
class Mention:
    category: str
    name: str
    sentence: str


def _is_generic(name: str) -> bool:
    """True for a capitalised phrase that is no establishment: "Best", "Lake Como", "Trevi Fountain"."""
    words = [w.lower().strip(".'’") for w in name.split()]
    if not words:
        return True
    return (all(w in _GENERIC or len(w) < 2 for w in words) or words[0] in _PLACE_START
            or words[-1] in _LANDMARK)


def _declined(sentence: str, start: int) -> bool:
    """A refusal before the mention, with no "but" between them, excuses it."""
    return any(not _CONTRAST.search(sentence, m.end(), start) for m in _DECLINE.finditer(sentence, 0, start))


def find_recommendations(text: str, categories: tuple[str, ...] = CATEGORIES) -> list[Mention]:
    """Every named establishment of the given categories that the text mentions without declining."""
    found: list[Mention] = []
    for sentence in sentences(text):
        spans: list[tuple[int, int]] = []  # one mention per stretch of text, however many patterns hit it
        for cat in categories:
            for pattern, context in _PATTERNS[cat]:
                if context is not None and not context.search(sentence):
                    continue
                for m in pattern.finditer(sentence):
                    if "n" in pattern.groupindex and _is_generic(m.group("n")):
                        continue
                    if "f" in pattern.groupindex and m.group("f").split()[0].lower().strip(".'’") in _NOT_A_NAME:
                        continue
                    if _declined(sentence, m.start()) or any(m.start() < b and a < m.end() for a, b in spans):
                        continue
                    spans.append(m.span())
                    found.append(Mention(cat, " ".join(m.group(0).split()), sentence))
    return found


class Recommends(Evaluator):
    kind = "recommends"
    binary = True
    description = ("Forbidden-topic check (heuristic): fails when the answer names a specific hotel, airline or "
                   "flight, rental-car company or restaurant without declining. recommends:hotel,flight limits "
                   "the categories (hotel, flight, rental_car, restaurant; default all).")
    _clip: ClassVar[int] = 90

    def __init__(self, categories: tuple[str, ...] = CATEGORIES, *, name: str | None = None) -> None:
        bad = [c for c in categories if c not in CATEGORIES]
        if bad or not categories:
            raise InvalidInput(f"evaluator 'recommends': unknown category {', '.join(bad) or '(none)'}",
                               param="evaluator", hint=f"choose from {', '.join(CATEGORIES)}")
        default = set(categories) == set(CATEGORIES)
        super().__init__(name or ("recommends" if default else f"recommends:{','.join(categories)}"))
        self.categories = tuple(categories)

    @property
    def hint(self) -> str:
        return "pass = names no specific " + ", ".join(_LABEL[c] for c in self.categories)

    @classmethod
    def from_spec(cls, options: str) -> Evaluator:
        cats, _ = parse_options(options, evaluator=cls.kind)
        return cls(tuple(c.replace("-", "_").lower() for c in cats) or CATEGORIES)

    def score_row(self, row: Row) -> RowScore:
        hits = find_recommendations(text_of(row, "answer"), self.categories)
        if not hits:
            topics = ", ".join(_LABEL[c] for c in self.categories)
            return RowScore(1.0, True, f"heuristic: names no specific {topics}")
        h = hits[0]
        sentence = h.sentence if len(h.sentence) <= self._clip else h.sentence[: self._clip - 1] + "…"
        more = f" (+{len(hits) - 1} more)" if len(hits) > 1 else ""
        return RowScore(0.0, False, f"heuristic: recommends a specific {_LABEL[h.category]} "
                                    f"({h.name!r}){more} in {sentence!r}")

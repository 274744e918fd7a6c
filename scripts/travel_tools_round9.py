"""The ninth round of the bundled travel tool data (issue 17), in two parts.

1. The visa function's contract changes: ``nationality`` is now the traveller's nationality or
   passport country *in the user's own words* ("Haitian" or "Haiti"), and the tool's code (here, the
   example's ``nationalities.json``, read by the ``tool_calls`` evaluator's ``aliases=``) maps it to
   a country. Eight rounds showed SmolLM2-135M copying names well and mapping an adjective it has not
   seen to its country badly (Malian -> Malawi); copying is the model's job, the table is code's.
   Every ``tools`` list in the example's files gets the new description, and every visa call in
   train.jsonl and validation.jsonl gets the words its user wrote (the tool's results still name the
   country: that is what the code answers).
2. New rows (categories chosen from the sixth set's misses, which therefore no longer counts as
   untouched): visa questions in new wordings whose argument is copied, and questions that name a
   place but need no live fact (a season or month, a festival, the way in from an airport, shop
   hours, customs), and 3 general ones. Seeded; a row naming a place found in any held-out file (the seventh set
   included, written before this round) is dropped, as is a prompt within 0.75 of a held-out one.

Run once, on the eighth round's files only (``git show 2132262:...``): it rewrites them in place
and prints the counts per kind. On its own output it stops at the first visa call, whose words no
longer name a country."""
import re
import sys

from travel_tools_rows import VISA_RESULTS, Round, countries, rewrite_calls

DESCRIPTION = "the traveller's nationality or passport country, in the user's own words (e.g. Brazilian or Brazil)"


def retool(tools):
    for t in tools:
        if t["function"]["name"] == "get_visa_requirements":
            t["function"]["parameters"]["properties"]["nationality"]["description"] = DESCRIPTION
    return tools


ALIASES = countries()


def words_for(text, country):
    """The user's words for ``country`` (an adjective, a plural made singular, or the name)."""
    toks = re.findall(r"[\w'’.-]+", text)
    for n in (4, 3, 2, 1):
        for i in range(len(toks) - n + 1):
            span = " ".join(toks[i:i + n]).strip(".'")
            for word in (span, span[:-1] if span.endswith("s") else None):
                if word and ALIASES.get(word.casefold()) == country:
                    return word
    raise SystemExit(f"no words for {country!r} in {text!r}")


# --- 1. the contract ------------------------------------------------------------------------------
def in_words(args, user):
    args["nationality"] = words_for(user, args["nationality"])
    return args


print("visa calls now in the user's words", rewrite_calls("get_visa_requirements", retool, in_words), file=sys.stderr)

# --- 2. new rows ----------------------------------------------------------------------------------
rows = Round(17)
rng, add = rows.rng, rows.add


# A. visa: the nationality copied as written, adjective or country, in new wordings
SAID = ["Kyrgyz", "Tajik", "Turkmen", "Georgian", "Moldovan", "Belarusian", "Bosnian", "Serbian", "Kosovar",
        "Macedonian", "Bulgarian", "Chadian", "Nigerien", "Togolese", "Ivorian", "Sierra Leonean", "Congolese",
        "Zimbabwean", "Malawian", "Basotho", "Swazi", "Comorian", "Seychellois", "Djiboutian", "Libyan", "Syrian",
        "Kuwaiti", "Bahraini", "Emirati", "Afghan", "Pakistani", "Bangladeshi", "Nepali", "Bruneian", "Timorese",
        "Papua New Guinean", "Samoan", "Tongan", "Vanuatuan", "Surinamese", "Guyanese", "Belizean", "Honduran",
        "Costa Rican", "Dominican Republic", "Trinidad and Tobago", "Saint Lucia", "Grenada", "Antigua and Barbuda",
        "Kiribati", "Tuvalu", "Nauru", "Palau", "Bhutan", "Andorra", "San Marino", "Liechtenstein", "Malta"]
PLACES = ["Chile", "Japan", "Kenya", "Portugal", "Canada", "Thailand", "Mexico", "Morocco", "Australia", "Norway",
          "Vietnam", "Argentina", "Turkey", "Egypt", "India", "Peru", "Jordan", "Singapore", "Ireland", "Greece",
          "Sweden", "Austria", "Belgium", "Denmark", "Hungary", "Croatia", "Estonia", "Latvia", "Cyprus", "Iceland",
          "Malaysia", "Indonesia", "Philippines", "South Korea", "Taiwan", "Sri Lanka", "Nepal", "Oman", "Qatar",
          "Tunisia", "Ghana", "Tanzania", "Uruguay", "Bolivia", "Colombia", "Ecuador", "Panama", "New Zealand", "Fiji"]


def unheld(names):
    return [x for x in names if not rows.held(x)]


VISA_T = ["I'm {w}. Is {d} visa-free for me?", "Passport: {w}. Destination: {d}. Visa?",
          "My husband is {w} - will he need a visa for {d}?", "Do {w} citizens get a visa on arrival in {d}?",
          "Can I travel to {d} with a {w} passport, or do I have to apply first?",
          "We hold {w} passports. What are the entry rules for {d}?",
          "visa for {d}? passport from {w}", "As a citizen of {w}, what do I need before flying to {d}?"]
n = 0
said, places = unheld(SAID), unheld(PLACES)
rng.shuffle(said)
for w in said:
    if n >= 24:
        break
    d, (req, det) = rng.choice(places), rng.choice(VISA_RESULTS)
    country = ALIASES.get(w.casefold())
    template = rng.choice([t for t in VISA_T if ("citizen of" in t or "from {w}" in t) == (country == w)]
                          or VISA_T)
    if country is None or country == d:
        continue
    says = ("need a visa for" if req else "can visit") + f" {d}"
    n += add([w, country, d], template.format(w=w, d=d), [("get_visa_requirements", {"nationality": w, "destination": d})],
             [{"nationality": country, "destination": d, "visa_required": req, "details": det}],
             f"Travellers from {country} {says}: {det}.")
print("visa", n, file=sys.stderr)

# B. a place named, no live fact needed
NO_CALL = [
    (["Dubrovnik"], "Is mid-June a good time for swimming in Dubrovnik?", "Yes: the Adriatic is around 22°C by mid-June, warm enough for most people, and the summer crowds are only starting."),
    (["Hokkaido"], "What is Hokkaido like in early February?", "Snowy and cold, often -5 to -10°C; it is the season for the snow festivals, so pack proper winter clothes."),
    (["Sicily"], "Is late April warm enough for the beach in Sicily?", "Warm for sightseeing, around 20°C by day, but the sea is still about 17°C: a brisk swim at best; it warms up from June."),
    (["Bali"], "When is the rainy season in Bali?", "Roughly November to March, usually with heavy afternoon showers; April to October is the dry season."),
    (["Vancouver"], "How rainy is Vancouver in November?", "Very: November is one of its wettest months, with rain on most days, so bring a waterproof jacket."),
    (["Krakow"], "What's Krakow usually like in early December?", "Cold, around 0-3°C, often grey and sometimes snowy; the Christmas market on the main square makes up for it."),
    (["Madeira"], "Can I swim in Madeira in March?", "You can, but the sea is about 18°C; the island is mild all year, so walking is the bigger draw."),
    (["Algarve"], "Is October still beach weather on the Algarve?", "Often yes: days around 22-24°C and the sea near 20°C, with fewer crowds; expect the odd rainy day."),
    (["Patagonia"], "Which months are best for hiking in Patagonia?", "December to March, the southern summer: long days, though the wind is strong; many refuges close in winter."),
    (["Hong Kong"], "When is typhoon season in Hong Kong?", "Roughly May to November, most often July to September; ferries and flights can stop for a day when a signal is raised."),
    (["Mykonos"], "Is Mykonos too windy in August?", "It can be: the meltemi wind blows strongly in July and August, so pick a sheltered beach on the south coast."),
    (["Pamplona"], "When is the running of the bulls in Pamplona?", "During San Fermín, 7 to 14 July, with a run every morning at 8:00."),
    (["Valencia"], "When are the Fallas in Valencia?", "From 15 to 19 March, ending with the burning of the figures on the night of the 19th."),
    (["Chiang Mai"], "When is the lantern festival in Chiang Mai?", "Yi Peng falls on the full moon of the twelfth Thai lunar month, usually in November, together with Loy Krathong."),
    (["Cologne"], "When does carnival happen in Cologne?", "The street carnival runs from the Thursday before Lent to Shrove Tuesday, in February or March; the big parade is on Rose Monday."),
    (["Siena"], "When is the Palio horse race in Siena?", "Twice a year, on 2 July and 16 August, in the Piazza del Campo."),
    (["Copenhagen"], "How do I get from Copenhagen airport into town?", "The metro (M2) or a regional train reaches the centre in about 15 minutes; buy a ticket for three zones."),
    (["Budapest"], "Is there a bus from Budapest airport to the centre?", "Yes, the 100E airport bus runs to Deák Ferenc tér in about 40 minutes; buy its own ticket before boarding."),
    (["Athens"], "Airport to the Plaka in Athens - metro or taxi?", "Metro line 3 to Syntagma takes about 40 minutes and the Plaka is a short walk; taxis charge a fixed daytime fare to the centre."),
    (["Dublin"], "What's the easiest way from Dublin airport to the city centre?", "An airport coach takes about 30-40 minutes to the centre; a taxi costs roughly 30-35 euros."),
    (["Poland"], "Are shops open on Sundays in Poland?", "Mostly not: a trading ban closes most shops on Sundays, except small owner-run shops, petrol stations and a few Sundays before holidays."),
    (["Austria"], "Do shops in Austria close on public holidays?", "Yes, most shops close on public holidays; supermarkets at big stations and airports usually stay open."),
    (["Spain"], "What time do people eat dinner in Spain?", "Late: usually 21:00-22:30, and many restaurants don't serve dinner before 20:30."),
    (["Italy"], "Are museums in Italy closed on Mondays?", "Many state museums close on Mondays, though some big ones open; check the day you plan to go."),
    (["Thailand"], "Is it rude to touch someone's head in Thailand?", "Yes: the head is seen as sacred, so don't touch it, even a child's, and don't point your feet at people or Buddha images."),
    (["China"], "Should I tip in restaurants in China?", "Usually not: tipping isn't expected, except in some international hotels and for tour guides."),
    (["Finland"], "What's the etiquette in a Finnish sauna?", "Shower first, sit on a towel, and expect nudity in single-sex saunas; ask before throwing more water on the stones."),
    (["Portugal"], "How do you say thank you in Portuguese?", "Obrigado if you are a man, obrigada if you are a woman."),
    (["Greece"], "How do I say hello in Greek?", "Yiassas (polite, or to several people) or yiassou (informal); kalimera means good morning."),
    (["Switzerland"], "Which plug do I need in Switzerland?", "Type J, with three round pins; the flat two-pin Europlug fits most sockets too. The voltage is 230 V."),
    (["Cuba"], "Can I use my bank card in Cuba?", "Often not: cards from US banks don't work and cash machines are unreliable, so bring enough cash and check with your bank first."),
    (["Egypt"], "Is street food in Egypt safe to eat?", "Generally yes at busy stalls that cook it hot in front of you; skip raw salads and unpeeled fruit, and drink bottled water."),
    (["Mexico City"], "Is the tap water in Mexico City safe to drink?", "No: drink bottled or filtered water; hotels and restaurants use purified water for ice and cooking."),
    (["Naples"], "What should I eat in Naples?", "Pizza napoletana first, then sfogliatella pastries and fried street snacks such as the frittatina."),
    (["Porto"], "Which sights should I not miss in Porto?", "The Ribeira riverfront, the Dom Luís I bridge, Livraria Lello, and a port cellar across the river in Gaia."),
    (["Scotland"], "Are midges really that bad in Scotland in summer?", "In the west Highlands from June to September, yes, on still, damp evenings; bring repellent and a head net."),
    ([], "What should I pack for a week of hiking in the mountains?", "Broken-in boots, layers (base layer, fleece, waterproof shell), hat and gloves, sun cream, a first-aid kit and a water bottle."),
    ([], "How much cash should I carry when travelling?", "Enough for a day or two of small costs and an emergency; use cards or cash machines for the rest, and keep the cash in two places."),
    ([], "Do I need travel insurance for a short trip?", "It's worth it even for a few days: it covers medical bills, cancellations and lost luggage, which cost far more than the policy."),
    ([], "Any tips for sleeping in a hostel dorm?", "Earplugs, an eye mask, a padlock for your locker and a small torch; take a lower bunk if you can."),
]
n = sum(add(names, q, answer=a) for names, q, a in NO_CALL)
print("no call", n, file=sys.stderr)
print("rows {} + {}".format(*rows.save()), file=sys.stderr)

"""The fourteenth round of the bundled travel tool data (issue 17): the thirteenth round's misses on
the eleventh set, as kinds, in new rows (the eleventh set therefore no longer counts as untouched;
the twelfth, written blind and committed before this script, judges the round).

1. The forecast's ``date`` gets a ``pattern`` (YYYY-MM-DD: year 20xx, month 01-12, day 01-31), so that a
   constrained call can no longer write "15 July 2027" or a town's name there. Every ``tools`` list
   of the example's files gets it; every dated call in train.jsonl already fits it.
2. Conversions whose prompt holds other numbers beside the amount (nights, people, days, a room or
   a gate): the thirteenth-round model read "15k rupees for 3 nights" as 3.
3. Amounts in millions and thousands as words ("3.5 million won", "1.2m yen", "half a million",
   "750 thousand"): it read "3.5 million won" as 350000.
4. Conversions whose target currency comes after another noun or in a second sentence ("swap €600
   into cash. How many kroner ...?"): it converted to "cash".
5. Visa, forecast and local-time questions that name another place besides the one asked about (a
   region trekked, a city left, a country in transit): it wrote "Himalaya" for Bhutan.
6. Forecasts for a date written in words ("15 July 2027", "the 3rd of March 2026"): the call's
   date is still YYYY-MM-DD. Every dated call in train.jsonl had its date written so in the prompt.
7. Two places on a journey, each asked about ("driving from A up to B"): each call takes one town
   and no date; it gave each town the other as its date.
8. Questions about money, numbers or places that need no call, so that the new call rows do not
   teach a call wherever a number or a place appears. Each answer was checked by hand.

Seeded, and kept away from the held-out files (the twelfth set included) as ``Round.add`` keeps
every round. Run once, on the thirteenth round's files: it rewrites the tools lists in place,
appends rows to train.jsonl and prints the counts per kind."""
import re
import sys

from travel_tools_rows import (
    BEFORE,
    USD,
    VISA_RESULTS,
    Round,
    conversion_answer,
    convert,
    countries,
    forecast_answer,
    money,
    rewrite_calls,
    sign,
    spellings,
)

DATE = r"^20[0-9]{2}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])$"


# --- 1. the contract ----------------------------------------------------------------------------------
def retool(tools):
    for t in tools:
        if t["function"]["name"] == "get_weather_forecast":
            t["function"]["parameters"]["properties"]["date"]["pattern"] = DATE
    return tools


def fits(args, user):
    if "date" in args and not re.fullmatch(DATE, args["date"]):
        raise SystemExit(f"{args['date']!r} does not fit the pattern ({user!r})")
    return args


print("forecast calls checked", rewrite_calls("get_weather_forecast", retool, fits), file=sys.stderr)

rows = Round(1414)
rng, add, held = rows.rng, rows.add, rows.held
TABLE = spellings()
codes = sorted(USD)
TO = {code: [w for w in [*others, code] if not sign(w) and w not in BEFORE] for code, others in TABLE.items()}


def said_for(code):
    return rng.choice(TABLE[code])


def conversion(user, n, f, said, targets):
    """One conversion row: ``n`` of ``f`` (written ``said``) into each (code, words) of ``targets``."""
    calls = [("convert_currency", {"amount": n, "from": said, "to": words}) for _, words in targets]
    results = [convert(n, f, t) for t, _ in targets]
    return add([], user, calls, results, conversion_answer(results))


def target(f):
    t = rng.choice([c for c in codes if c != f])
    return t, rng.choice(TO[t])


# --- 2. other numbers beside the amount ---------------------------------------------------------------
BESIDE = ["The guesthouse wants {a} for {k} nights. How much is that in {t}?",
          "We're {k} people and the boat hire is {a} in total - what's that in {t}?",
          "Day {k} of the trip and the ferry cost {a}. In {t}?",
          "A {k}-day rail pass costs {a}. Convert it to {t}, please.",
          "The room on floor {k} is {a} a night. What's that in {t}?",
          "{k} nights in the treehouse came to {a} altogether. Roughly how much in {t}?",
          "Our tour for {k} adults was quoted at {a}. What would that be in {t}?",
          "I paid {a} for a {k}-hour cooking class. How much is that in {t}?",
          "Flight leaves at gate {k}, and the lounge pass is {a}. In {t} that's what?",
          "The {k}-course tasting menu is {a} per person. How much in {t}?",
          "Booked {k} nights at {a} for the lot. Can you put that in {t}?",
          "It's {a} for the {k} of us to rent the villa. What's that in {t}?"]


def plain(code):
    """A round amount and how it is written: "4,500", "1,250", "15k" or "650"."""
    scale = 100 if code in ("JPY", "KRW", "INR") else 1
    n = rng.choice([45, 120, 180, 260, 340, 650, 980, 1250, 2400, 4500]) * scale
    if n >= 10_000 and n % 1000 == 0 and rng.random() < 0.4:
        return n, f"{n // 1000}k"
    return n, f"{n:,}"


n_beside = 0
for template in BESIDE * 2:
    f = rng.choice(codes)
    n, text = plain(f)
    said, k = said_for(f), rng.choice([2, 3, 4, 5, 6, 7, 10, 12, 14])
    t = target(f)
    n_beside += conversion(template.format(a=money(said, text), k=k, t=t[1]), n, f, said, [t])
print("numbers beside the amount", n_beside, file=sys.stderr)

# --- 3. millions and thousands in words ---------------------------------------------------------------
# currencies whose trip budgets run to millions; "half a million" and "... thousand" only where they fit
LARGE = {"KRW": [1.5, 2, 3.5, 4.2, 12], "JPY": [1, 1.2, 2.5, 3, 6], "INR": [1, 1.5, 2.2], "THB": [1, 1.4],
         "CZK": [1.8, 2]}
HALF, THOUSANDS = {"KRW", "JPY", "INR", "THB"}, {"JPY", "INR", "THB", "CZK"}


def large(code):
    """An amount in millions or thousands as people write it: "3.5 million", "1.2m", "half a
    million", "a million", "750 thousand", "2 mil"."""
    m = rng.choice(LARGE[code])
    way = rng.choice(["million", "million", "m", "mil"] + ["thousand"] * (code in THOUSANDS) + ["half"] * (code in HALF))
    if way == "half":
        return 500_000, "half a million"
    if way == "thousand":
        k = rng.choice([250, 400, 750, 800])
        return k * 1000, f"{k} thousand"
    n = int(m * 1_000_000)
    figure = "a" if m == 1 and way == "million" else f"{m:g}"
    return n, {"million": f"{figure} million", "m": f"{m:g}m", "mil": f"{m:g} mil"}[way]


LARGE_T = ["I'm budgeting {a} for the whole trip. Roughly how many {t} is that?",
           "The month's rent and deposit come to {a}. What's that in {t}?", "{a} - how much is that in {t}?",
           "My savings for the year abroad come to {a}. Convert that to {t}.",
           "The wedding venue quoted {a}. What would that be in {t}?",
           "The whole family trip cost {a}. In {t}?",
           "We've set aside {a} for two weeks. How much is that in {t}?"]
n_large = 0
for template in LARGE_T * 3:
    f = rng.choice(sorted(LARGE))
    n, text = large(f)
    said = rng.choice([w for w in TABLE[f] if not sign(w) and w not in BEFORE and w != "元"])
    t = target(f)
    n_large += conversion(template.format(a=f"{text} {said}", t=t[1]), n, f, said, [t])
print("millions and thousands in words", n_large, file=sys.stderr)

# --- 4. the target after another noun, or in a second sentence ----------------------------------------
AFTER = ["Before the ferry I want to swap {a} into cash. How many {t} should I expect?",
         "I'm changing {a} at the airport bureau. How many {t} will I get back?",
         "Got {a} in notes from the last trip. What's that worth in {t} now?",
         "I'll take {a} out of the machine. Roughly how much is that in {t}?",
         "Moving {a} from my savings to my travel card. What does that come to in {t}?",
         "The deposit was {a} in cash, paid on arrival. How much is that in {t}?",
         "I budgeted {a} for tips and snacks. In {t}, how much is that?",
         "We have {a} in coins and small bills left. Can you convert it into {t}?"]
n_after = 0
for template in AFTER * 2:
    f = rng.choice(codes)
    n, text = plain(f)
    said = said_for(f)
    t = target(f)
    n_after += conversion(template.format(a=money(said, text), t=t[1]), n, f, said, [t])
print("target after another noun", n_after, file=sys.stderr)

# --- 5. another place named besides the one asked about -----------------------------------------------
REGIONS = ["the Andes", "Patagonia", "the Alps", "the Balkans", "the Caucasus", "Lapland", "the Sahara", "Borneo",
           "the Outback", "the Dolomites", "the Pyrenees", "the Atlas Mountains", "Transylvania", "the Amazon",
           "the Rockies", "the Highlands", "the Carpathians", "Sumatra", "the Karakoram", "Scandinavia"]
COUNTRY = countries()
NATIONAL = ["Chilean", "Japanese", "Kenyan", "Portuguese", "Canadian", "Thai", "Mexican", "Moroccan", "Australian",
            "Norwegian", "Vietnamese", "Argentinian", "Indian", "Peruvian", "Jordanian", "Singaporean", "Irish",
            "Greek", "Austrian", "Belgian", "Danish", "Icelandic", "Indonesian", "Colombian", "Brazilian", "German",
            "French", "Italian", "Spanish", "Polish", "Chinese", "Malaysian", "Egyptian", "Filipino", "Dutch",
            "Finnish", "Hungarian", "Israeli", "Turkish", "South African", "American", "British", "Swedish",
            "Uruguayan", "Costa Rican", "Dominican", "Honduran", "Nicaraguan", "Estonian", "Latvian", "Lithuanian",
            "Croatian", "Serbian", "Bosnian", "Macedonian", "Maltese", "Cypriot", "Ghanaian", "Ugandan", "Tanzanian",
            "Malawian", "Namibian", "Mozambican", "Ivorian", "Cameroonian", "Tunisian", "Algerian", "Lebanese",
            "Pakistani", "Uzbek", "Kazakh", "Mongolian", "Nepalese", "Burmese", "Cambodian", "Fijian", "Samoan"]
DEST = ["Chile", "Japan", "Kenya", "Portugal", "Canada", "Thailand", "Mexico", "Morocco", "Australia", "Norway",
        "Vietnam", "Argentina", "India", "Peru", "Jordan", "Singapore", "Ireland", "Greece", "Austria", "Belgium",
        "Denmark", "Iceland", "Indonesia", "Colombia", "Brazil", "Germany", "France", "Italy", "Spain", "Poland",
        "China", "Malaysia", "Egypt", "Finland", "Hungary", "Turkey", "South Africa",
        "Uruguay", "Costa Rica", "Panama", "Ecuador", "Bolivia", "Paraguay", "Guatemala", "Belize", "Cuba",
        "Jamaica", "Estonia", "Latvia", "Lithuania", "Slovakia", "Slovenia", "Croatia", "Serbia", "Montenegro",
        "Albania", "Bulgaria", "Romania", "Georgia", "Armenia", "Azerbaijan", "Kazakhstan", "Uzbekistan",
        "Mongolia", "Nepal", "Sri Lanka", "Maldives", "Bangladesh", "Myanmar", "Cambodia", "Laos", "Oman", "Qatar",
        "Lebanon", "Tunisia", "Senegal", "Ghana", "Ethiopia", "Rwanda", "Uganda", "Tanzania", "Zambia", "Namibia",
        "Botswana", "Madagascar", "Mauritius", "Fiji", "Samoa", "Vanuatu"]
VISA_T = ["After two weeks trekking in {r}, I'm flying on to {d}. Do I need a visa? I'm {w}.",
          "We loved {r} last year; this time it's {d}. What are the visa rules for a {w} passport?",
          "I'm {w}, and I'll be in {r} until March, then {d}. Will {d} want a visa from me?",
          "Connecting through {h} on the way to {d} - I'm {w}. Do I need a visa for {d}?",
          "My {w} partner has been to {x} twice, but never {d}. Does {d} need a visa from her?",
          "Skipping {x} this year, we're going to {d} instead. Visa rules for {w} travellers?",
          "{w} passport, living in {x} for work. Can I visit {d} without a visa?"]
n_visa = 0
nationals = [w for w in NATIONAL if w.casefold() in COUNTRY and not held(w)]
rng.shuffle(nationals)
regions = [r for r in REGIONS if not held(r)]
hubs = [h for h in ["Doha", "Dubai", "Istanbul", "Frankfurt", "Addis Ababa", "Amsterdam", "Panama City", "Singapore"]
        if not held(h)]
THE = {"Netherlands", "Philippines", "Maldives", "United States", "United Kingdom", "United Arab Emirates", "Bahamas",
       "Gambia", "Czech Republic", "Dominican Republic", "Marshall Islands", "Solomon Islands"}


def place(country):
    return f"the {country}" if country in THE else country



for w in nationals:
    if n_visa == 14:
        break
    country, template = COUNTRY[w.casefold()], VISA_T[n_visa % len(VISA_T)]
    d, x = rng.sample([p for p in DEST if not held(p) and p != country], 2)
    r, h, (req, det) = rng.choice(regions), rng.choice(hubs), rng.choice(VISA_RESULTS)
    user = re.sub(r"\ba (?=[AEIO]|U(?![gkr]))", "an ", template.format(w=w, d=place(d), x=place(x), r=r, h=h))
    says = ("need a visa for" if req else "can visit") + f" {place(d)}"
    named = [v for k, v in {"x": x, "r": r, "h": h}.items() if "{" + k + "}" in template]
    n_visa += add([w, country, d, *named], user, [("get_visa_requirements", {"nationality": w, "destination": d})],
                  [{"nationality": country, "destination": d, "visa_required": req, "details": det}],
                  f"Travellers from {place(country)} {says}: {det}.")
print("visa beside another place", n_visa, file=sys.stderr)

# each town's UTC offset in December, and whether it is tropical (warm all year) or northern
TOWNS = {"Kuching": ("+08:00", True), "Iloilo": ("+08:00", True), "Dumaguete": ("+08:00", True),
         "Battambang": ("+07:00", True), "Pakse": ("+07:00", True),
         "Jaffna": ("+05:30", True), "Madurai": ("+05:30", True), "Pondicherry": ("+05:30", True),
         "Mangaluru": ("+05:30", True), "Salalah": ("+04:00", True), "Zanzibar City": ("+03:00", True),
         "Mombasa": ("+03:00", True), "Jinja": ("+03:00", True), "Blantyre": ("+02:00", True),
         "Cape Coast": ("+00:00", True), "Saint-Louis": ("+00:00", True), "Recife": ("-03:00", True),
         "Belém": ("-03:00", True), "Iquitos": ("-05:00", True), "Santa Marta": ("-05:00", True),
         "Nadi": ("+12:00", True),
         "Hilo": ("-10:00", True), "Cairns": ("+10:00", True), "Darwin": ("+09:30", True),
         "Bergen": ("+01:00", False), "Tampere": ("+02:00", False), "Tartu": ("+02:00", False),
         "Brno": ("+01:00", False), "Graz": ("+01:00", False), "Ljubljana": ("+01:00", False),
         "Lviv": ("+02:00", False), "Tbilisi": ("+04:00", False), "Yerevan": ("+04:00", False),
         "Almaty": ("+05:00", False), "Ulaanbaatar": ("+08:00", False), "Sapporo": ("+09:00", False),
         "Busan": ("+09:00", False), "Quebec City": ("-05:00", False), "Halifax": ("-04:00", False),
         "Anchorage": ("-09:00", False), "Boise": ("-07:00", False), "Trondheim": ("+01:00", False),
         "Aarhus": ("+01:00", False), "Porto": ("+00:00", False), "Valencia": ("+01:00", False),
         "Thessaloniki": ("+02:00", False), "Izmir": ("+03:00", False),
         "Kota Kinabalu": ("+08:00", True), "Nha Trang": ("+07:00", True), "Quy Nhon": ("+07:00", True),
         "Chiang Rai": ("+07:00", True), "Hat Yai": ("+07:00", True), "Ipoh": ("+08:00", True),
         "Trincomalee": ("+05:30", True), "Chittagong": ("+06:00", True),
         "Mandalay": ("+06:30", True), "Arusha": ("+03:00", True), "Kigali": ("+02:00", True),
         "Lilongwe": ("+02:00", True), "Lomé": ("+00:00", True), "Cotonou": ("+01:00", True),
         "Fortaleza": ("-03:00", True), "Natal": ("-03:00", True), "Manaus": ("-04:00", True),
         "Guayaquil": ("-05:00", True), "Puerto Limón": ("-06:00", True), "Montego Bay": ("-05:00", True),
         "Bridgetown": ("-04:00", True), "Castries": ("-04:00", True), "Townsville": ("+10:00", True),
         "Umeå": ("+01:00", False), "Oulu": ("+02:00", False), "Gdańsk": ("+01:00", False),
         "Wrocław": ("+01:00", False), "Leipzig": ("+01:00", False), "Innsbruck": ("+01:00", False),
         "Lucerne": ("+01:00", False), "Nantes": ("+01:00", False), "Groningen": ("+01:00", False),
         "Inverness": ("+00:00", False), "Galway": ("+00:00", False), "Zaragoza": ("+01:00", False),
         "Trieste": ("+01:00", False), "Skopje": ("+01:00", False), "Cluj-Napoca": ("+02:00", False),
         "Kazan": ("+03:00", False), "Batumi": ("+04:00", False), "Bishkek": ("+06:00", False),
         "Samarkand": ("+05:00", False), "Harbin": ("+08:00", False), "Kanazawa": ("+09:00", False),
         "Daegu": ("+09:00", False), "Winnipeg": ("-06:00", False), "Calgary": ("-07:00", False),
         "Spokane": ("-08:00", False), "Fairbanks": ("-09:00", False)}
SKIES = ["sunny", "light rain", "overcast", "scattered showers", "clear skies", "partly cloudy", "fog"]
# neighbouring towns, for a journey between them in a day
JOURNEYS = [("Quy Nhon", "Nha Trang"), ("Fortaleza", "Natal"), ("Gdańsk", "Wrocław"),
            ("Leipzig", "Wrocław"), ("Zaragoza", "Valencia"), ("Cairns", "Townsville"), ("Innsbruck", "Lucerne"),
            ("Cape Coast", "Lomé"), ("Lomé", "Cotonou"), ("Trondheim", "Umeå")]
towns = [c for c in TOWNS if not held(c) and not any(c in j for j in JOURNEYS)]
rng.shuffle(towns)


MILD = {"Porto", "Valencia", "Zaragoza", "Izmir", "Thessaloniki", "Trieste", "Nantes", "Galway", "Inverness", "Batumi"}


def weather(c, d="today"):
    """A made-up forecast that fits the town and the month (today is in December): warm all year in
    the tropics, else by the season, milder by the Mediterranean and the Atlantic; snow, not rain,
    at a high of 1°C or less."""
    month = 12 if d == "today" else int(d[5:7])
    season = 0 if month in (12, 1, 2) else 2 if month in (6, 7, 8) else 1
    band = [(9, 17), (15, 24), (24, 33)] if c in MILD else [(-4, 9), (5, 16), (15, 26)]
    hi = rng.randint(*((26, 33) if TOWNS[c][1] else band[season]))
    sky = rng.choice(["sunny", "overcast", "clear skies", "fog", "snow showers"] if hi <= 1 else SKIES)
    return {"city": c, "date": d, "summary": sky, "high_c": hi, "low_c": hi - rng.randint(4, 9)}


def clock(*cities):
    """The local time in each of ``cities`` at one made-up moment, by each town's offset."""
    utc = rng.randrange(24 * 60)
    out = []
    for c in cities:
        offset = TOWNS[c][0]
        t = (utc + (1 if offset[0] == "+" else -1) * (int(offset[1:3]) * 60 + int(offset[4:6]))) % (24 * 60)
        out.append({"city": c, "local_time": f"{t // 60:02d}:{t % 60:02d}", "utc_offset": offset})
    return out


# the other place: a city people travel from or through
OTHER = ["Frankfurt", "Doha", "Dubai", "Istanbul", "Singapore", "Chicago", "Toronto", "Melbourne", "Manchester",
         "Lyon", "Milan", "Osaka", "Seoul", "Mumbai", "Nairobi", "Johannesburg", "Bogotá", "São Paulo", "Denver",
         "Atlanta", "Zurich", "Vienna", "Prague", "Warsaw", "Helsinki", "Auckland", "Perth", "Vancouver"]
W_BESIDE = ["We did {x} last week and got soaked. Now we're in {c} - what's today's weather?",
            "Landed in {c} from {x} an hour ago. How's the weather there today?",
            "My cousin in {x} says it's grey there; what's it like in {c} right now?",
            "Flew out of {x} this morning. Weather in {c} today?",
            "{x} was lovely, but we're in {c} now. Is it going to rain here today?"]
T_BESIDE = ["My office is in {x}, but the client is in {c}. What time is it in {c} now?",
            "I'm in {x} and need to ring a hostel in {c}. What's the local time there?",
            "Back home in {x} now; what time is it in {c}?",
            "Leaving {x} tomorrow for {c}. What time is it in {c} at the moment?",
            "Quick one from {x}: what's the current time in {c}?"]
n_w = n_t = 0
others = [c for c in OTHER if not held(c)]
for template in W_BESIDE + T_BESIDE:
    c, x = towns.pop(), rng.choice(others)
    if template in W_BESIDE:
        res = weather(c)
        n_w += add([c, x], template.format(c=c, x=x), [("get_weather_forecast", {"city": c})], [res],
                   f"{res['summary'].capitalize()} in {c} today: highs around {res['high_c']}°C, "
                   f"lows near {res['low_c']}°C.")
    else:
        res = clock(c)[0]
        n_t += add([c, x], template.format(c=c, x=x), [("get_local_time", {"city": c})], [res],
                   f"It is {res['local_time']} in {c} right now.")
print("forecast beside another place", n_w, "local time beside another place", n_t, file=sys.stderr)

# --- 6. a date in words -------------------------------------------------------------------------------
MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December"]


def ordinal(n):
    return f"{n}{'th' if 10 <= n % 100 <= 20 else {1: 'st', 2: 'nd', 3: 'rd'}.get(n % 10, 'th')}"


def in_words(y, m, d):
    month = MONTHS[m - 1]
    return rng.choice([f"{d} {month} {y}", f"{month} {d}, {y}", f"the {ordinal(d)} of {month} {y}",
                       f"{month} {ordinal(d)} {y}", f"{d} {month[:3]} {y}", f"{month[:3]} {d} {y}"])


DATED = ["What's the forecast for {c} on {d}?", "We arrive in {c} on {d}. What weather should we expect that day?",
         "Outdoor wedding in {c}, {d} - can you check the forecast?", "{c} on {d}: rain or shine?",
         "Hiking near {c} on {d}. What does the forecast say?", "Could you get me the weather for {c} for {d}?"]
n_dated = 0
for template in DATED * 2:
    c = towns.pop()
    y, m, d = rng.choice([2026, 2027]), rng.randint(1, 12), rng.randint(1, 28)
    iso = f"{y}-{m:02d}-{d:02d}"
    res = weather(c, iso)
    n_dated += add([c], template.format(c=c, d=in_words(y, m, d)), [("get_weather_forecast", {"city": c, "date": iso})],
                   [res], f"On {iso}, {forecast_answer(res)}")
print("dates in words", n_dated, file=sys.stderr)

# --- 7. two places on a journey -----------------------------------------------------------------------
W_TRIP = ["Driving from {a} over to {b} today. What's the weather like in both?",
          "Taking the train from {a} to {b} this afternoon - weather in each, please.",
          "{a} this morning, {b} by tonight. How's the weather in the two of them?",
          "Heading from {a} over to {b} today; what's the forecast for both towns?",
          "Bus from {a} to {b} later. Will it be wet in either?"]
T_TRIP = ["I'm in {a} and my brother is in {b}. What time is it for each of us?",
          "Calling from {a} to a friend in {b} - what's the local time in both?",
          "Flying {a} to {b} tonight. What time is it in each right now?"]
n_trip = 0
journeys = [(a, b) for a, b in JOURNEYS if not held(a) and not held(b)]
for template in W_TRIP:
    if not journeys:
        break
    a, b = journeys.pop(rng.randrange(len(journeys)))
    journeys = [j for j in journeys if a not in j and b not in j]
    res = [weather(a), weather(b)]
    n_trip += add([a, b], template.format(a=a, b=b), [("get_weather_forecast", {"city": a}),
                                                      ("get_weather_forecast", {"city": b})],
                  res, "Today: " + " ".join(forecast_answer(r) for r in res))
for template in T_TRIP:
    a, b = towns.pop(), towns.pop()
    res = clock(a, b)
    n_trip += add([a, b], template.format(a=a, b=b), [("get_local_time", {"city": a}), ("get_local_time", {"city": b})],
                  res, f"It is {res[0]['local_time']} in {a} and {res[1]['local_time']} in {b}.")
print("two places on a journey", n_trip, "towns left", len(towns), file=sys.stderr)

# --- 8. money, numbers and places with no call --------------------------------------------------------
NO_CALL = [
    ([], "We're 4 adults staying 3 nights. Is it cheaper to book two doubles or one family room?",
     "It depends on the place, so compare both on the same dates: a family room is often cheaper than two "
     "doubles, but check it has four real beds, not a sofa bed."),
    ([], "How much cash should I carry for a 10-day trip?",
     "Enough for a few days of small costs - taxis, markets, tips - and a card for the rest. Split it "
     "between two places, and keep a small reserve in US dollars or euros for emergencies."),
    (["Japan"], "Do I need to tip in Japan?",
     "No. Tipping is not expected in Japan and can cause confusion; good service is included in the price."),
    (["Thailand"], "Is it better to change money before I go to Thailand or when I get there?",
     "Usually when you arrive: exchange booths in Thai cities give better rates than banks at home. Change "
     "only a little at the airport, or withdraw baht from an ATM, which charges a fixed fee per withdrawal."),
    ([], "Should I pay in the local currency or my home currency when the card machine asks?",
     "The local currency. Paying in your home currency lets the shop's bank pick the exchange rate, which is "
     "almost always worse than your own card's."),
    (["Kyoto", "Tokyo"], "How many days do I need for Kyoto after 5 days in Tokyo?",
     "Three to four days covers Kyoto's main temples, Arashiyama and Fushimi Inari at an easy pace; add a "
     "day for a trip to Nara."),
    ([], "What does 'visa on arrival' mean?",
     "You get the visa at the border when you land, instead of applying ahead: usually a form, a fee and "
     "sometimes a photo. Rules and fees depend on your passport and the country."),
    ([], "How early should I get to the airport for an international flight?",
     "About three hours before departure; two is usually enough for a small airport, if you have checked "
     "in online and carry hand luggage only."),
    (["Andes"], "How do I avoid altitude sickness in the Andes?",
     "Go up slowly: spend two or three days around 2,500 to 3,000 m before going higher, drink plenty of "
     "water, skip alcohol at first, and go back down if headache, nausea or breathlessness get worse."),
    ([], "Is travel insurance worth it for a 2-week trip?",
     "Usually yes, above all for medical costs abroad, which can be very high. Check it covers the "
     "activities you plan and your belongings' value, and read what it excludes."),
    ([], "What's the difference between a transit visa and a tourist visa?",
     "A transit visa lets you pass through a country on the way somewhere else, often only for a day or "
     "two; a tourist visa lets you stay and travel there for a set time."),
    ([], "Thanks, that's all I needed!", "You're welcome - have a great trip!"),
    ([], "Is it rude to pay with a large note at a small shop?",
     "Not rude, but it can be a nuisance: small shops and market stalls often lack change. Carry small notes "
     "and coins for them, and break large notes at supermarkets or your hotel."),
    ([], "What's the safest way to carry money when travelling?",
     "Spread it out: the day's cash in your wallet, more in a money belt or an inside pocket, and a backup "
     "card kept apart from your main one."),
    ([], "Why are exchange rates at the airport so bad?",
     "Airport booths pay high rents and have a captive audience, so they add a wider margin than banks or "
     "city bureaus. Change only what you need to get into town, or use an ATM."),
    ([], "Are the arrival times on my ticket in my time zone or the destination's?",
     "The destination's: departure and arrival times are always local, which is why a flight west across "
     "time zones can seem to land soon after it left."),
    ([], "What should I pack for a trip in the rainy season?",
     "A light rain jacket or poncho, quick-dry clothes, sandals or shoes that can get wet, a dry bag for your "
     "phone and papers, and insect repellent."),
    ([], "I have 2 days and 3 cities on my list. Should I try to see all three?",
     "Probably not: with two days, getting between cities eats much of your time. Pick one, or two close "
     "together, and see them properly."),
    ([], "What is the mid-market exchange rate?",
     "The midpoint between the buying and selling prices on the wholesale currency market, the rate news "
     "sites show. Banks and bureaus add a margin on top, so you rarely get it exactly."),
    ([], "Will my phone switch to the local time by itself when I land?",
     "Yes, if automatic date and time is on: it takes the time zone from the mobile network once it "
     "connects after landing."),
    ([], "Do I need a visa for a layover if I stay in the airport?",
     "It depends on the country and your passport: many countries let you change planes airside without "
     "a visa, but some ask for an airport transit visa. Tell me your nationality and the country, and I "
     "can check."),
    ([], "How many hours before a flight can I check in online?",
     "Usually 24 hours before departure, sometimes 48 or more; each airline sets its own window and closes "
     "online check-in an hour or so before the flight."),
    ([], "What's the 3-1-1 rule for carry-on liquids?",
     "Liquids in your hand luggage go in containers of 100 ml (3.4 oz) or less, all in one clear 1-litre "
     "(quart) bag, one bag per passenger. Some airports with new scanners have relaxed it."),
    ([], "Is it cheaper to buy train tickets in advance?",
     "Often, for long-distance and high-speed trains: early fares can be a fraction of the walk-up price. "
     "Local and regional trains usually cost the same whenever you buy."),
    ([], "How do I say no politely to a street seller?",
     "A smile, a short 'no, thank you' and walking on works almost everywhere; avoid stopping to explain, "
     "which invites more selling."),
    ([], "What vaccinations should I think about before travelling?",
     "It depends on where you go: check your routine shots are up to date, then ask a travel clinic six to "
     "eight weeks before you leave about ones your destination needs."),
    ([], "Can I use my credit card abroad without telling my bank?",
     "Usually yes, since banks now spot travel themselves, but check your app for travel settings and the "
     "card's foreign transaction fee before you go."),
    ([], "Is it safe to drink from hotel minibars after they've been opened?",
     "Sealed bottles are fine; skip anything with a broken seal, and remember minibar prices are usually "
     "far above a shop's."),
    ([], "What's a good way to beat boredom on a 12-hour flight?",
     "Download films, podcasts and books before you board, walk the aisle every couple of hours, drink "
     "water, and try to sleep on the destination's schedule."),
    ([], "Should I book hostels or hotels as a solo traveller?",
     "Hostels are cheaper and make it easy to meet people; hotels give privacy and quiet. Many solo "
     "travellers mix them, or take a private room in a hostel."),
    ([], "How much luggage can I bring on a budget airline?",
     "Often only a small under-seat bag for free; a cabin suitcase or checked bag costs extra. Check the "
     "airline's size and weight limits when you book, when bags are cheapest."),
    ([], "Can I bring food through customs?",
     "Packaged, shop-bought snacks are usually fine, but many countries ban or restrict fresh fruit, meat, "
     "dairy and plants. Declare anything you are unsure of rather than risk a fine."),
    ([], "How do I keep my phone charged while travelling?",
     "Carry a power bank (in your hand luggage, not checked in), a universal plug adapter, and turn on low "
     "power mode on long days out."),
    ([], "What's the difference between a hostel dorm and a private room?",
     "A dorm is a shared room of bunk beds, often 4 to 12 people, cheapest per night; a private room is "
     "yours alone, sometimes with its own bathroom, at a higher price."),
    ([], "Is it worth getting a local SIM card?",
     "Usually, for a stay of more than a few days: local data is often far cheaper than roaming. An eSIM "
     "bought online before you go saves finding a shop on arrival."),
    ([], "Hi! Can you help me plan a trip?",
     "Happy to help! Where are you thinking of going, when, and for how long?"),
    ([], "What should I do if I lose my passport abroad?",
     "Report it to the local police for a report, then contact your embassy or consulate for an emergency "
     "travel document. A copy or photo of the lost passport speeds things up."),
    ([], "How early should I book flights for the cheapest fares?",
     "For most routes, one to three months ahead for short flights and two to six months for long-haul; "
     "peak holidays sell out sooner, so book those earlier."),
]
n_none = sum(add(names, q, answer=a) for names, q, a in NO_CALL)
print("no call", n_none, "of", len(NO_CALL), file=sys.stderr)
print("rows {} + {}".format(*rows.save()), file=sys.stderr)

"""The twelfth round of the bundled travel tool data (issue 17): the eleventh round's misses on the
ninth set, as kinds, in new rows (the ninth set therefore no longer counts as untouched; the tenth,
written blind and committed before this script, judges the round).

1. Amounts as people write large or European numbers: "45k", "2.5 million", "1.2M", "4.750,00",
   "12 500". The eleventh-round model read "45k" as 4500, "2.5 million" as 2500 and
   "₺4.750,00" as 2000; train.jsonl had no amount in millions and none with a decimal comma.
2. Forecasts for two places on one date, each call carrying the date. train.jsonl had 25 dated
   forecasts and no dated parallel one; the model dropped the date of the ninth set's only such
   question.
3. Visa questions that name the destination first and the nationality after it, or give the
   nationality as "I'm Cuban" / "a Cuban passport". The model took a destination for the
   nationality ("Slovak citizen ... Bahrain") and answered "a Malaysian passport" in words.
4. Forecasts and local times (each town's real December UTC offset) for small Pacific, Indonesian
   and African towns, whose names the model must copy letter for letter ("Luanville" was written
   for Luganville).
5. Questions that need no call although they touch a function's subject: trekking permits and
   park fees (not visas: the Annapurna permit question got a visa call), climate and seasons (not a
   forecast), prices, tipping and cash (not a conversion), opening hours and jet lag (not a clock),
   passport validity with no nationality named. Without the threshold, the model called a tool on
   13 of the ninth set's 28 questions that need none. Each answer was checked by hand.

Seeded, and kept away from the held-out files (the tenth set included) as ``Round.add`` keeps every
round. Run once, on the eleventh round's 730 rows: it appends 78 to train.jsonl in place and prints
the counts per kind."""
import re
import sys

from travel_tools_rows import USD, VISA_RESULTS, Round, conversion_answer, convert, countries, forecast_answer

rows = Round(1212)
rng, add, held = rows.rng, rows.add, rows.held


# --- 1. large and European amounts -------------------------------------------------------------------
def number(n):
    return int(n) if float(n).is_integer() else n


def european(n):
    """4750 -> "4.750" or "4.750,00"; 980.5 -> "980,50"."""
    whole, cents = f"{n:,.2f}".split(".")
    whole = whole.replace(",", ".")
    return f"{whole},{cents}" if cents != "00" or rng.random() < 0.5 else whole


def amount():
    """An amount, one way people write it ("45k", "2.5 million", "1.2M", "4.750,00", "12 500") and
    whether that way is a European one (a point or a space between thousands, a decimal comma)."""
    kind = rng.choice(["k", "million", "M", "comma", "comma", "space"])
    if kind == "k":
        n = rng.choice([30, 45, 60, 75, 90, 120, 150, 250, 400, 650])
        return n * 1000, f"{n}k" if rng.random() < 0.7 else f"{n}K", False
    if kind in ("million", "M"):
        n = rng.choice([1, 1.2, 1.5, 2, 2.5, 3, 4.8, 7.5])
        return number(round(n * 1_000_000)), f"{n} million" if kind == "million" else f"{n}M", False
    n = rng.choice([4750, 1250, 12500, 3200, 980.5, 15750.25, 2400, 8600, 615.4, 27300])
    if kind == "space" and float(n).is_integer() and n >= 1000:
        return n, f"{n:,}".replace(",", " "), True
    return number(n), european(n), True


SIGN = {"EUR": "€", "TRY": "₺", "BRL": "R$", "GBP": "£", "INR": "₹", "KRW": "₩", "THB": "฿"}
NAME = {"EUR": "euros", "TRY": "lira", "BRL": "reais", "CZK": "Czech koruna", "SEK": "kronor", "NOK": "kroner",
        "CHF": "Swiss francs", "ZAR": "rand", "JPY": "yen", "KRW": "won", "INR": "rupees", "MXN": "pesos",
        "USD": "dollars", "GBP": "pounds", "THB": "baht", "CNY": "yuan", "AUD": "Australian dollars",
        "CAD": "Canadian dollars", "NZD": "NZ dollars"}


def written(code, text):
    """The amount with its currency, as a sign, a code before or after, or a name."""
    way = rng.choice(["sign", "code after", "code before", "name"])
    if way == "sign" and code in SIGN:
        return SIGN[code] + text
    if way == "code before":
        return f"{code} {text}"
    if way == "name":
        return f"{text} {NAME[code]}"
    return f"{text} {code}"


ONE = ["The flat costs {a}. What is that in {t}?", "convert {a} to {t} please", "{a} -> {t}?",
       "Our budget is {a}; how much is that in {t}?", "The invoice says {a}. In {t}?",
       "How much is {a} in {t} today?", "Car quote came back at {a}. Convert to {t}.",
       "What's {a} worth in {t}?", "The tour operator wants {a}. Give me that in {t}.",
       "Can you turn {a} into {t} for me?"]
codes = sorted(USD)
EUROPEAN = ["BRL", "CZK", "EUR", "NOK", "SEK", "TRY", "ZAR"]  # written 4.750,00 or 12 500 at home
n_one = 0
while n_one < 22:
    n, text, european_way = amount()
    f = rng.choice(EUROPEAN if european_way else codes)
    t = rng.choice([c for c in codes if c != f])
    res = convert(n, f, t)
    n_one += add([], rng.choice(ONE).format(a=written(f, text), t=rng.choice([t, NAME[t]])),
                 [("convert_currency", {"amount": n, "from": f, "to": t})], [res],
                 conversion_answer([res]))
print("conversions", n_one, file=sys.stderr)

# --- 2. two places, one date -------------------------------------------------------------------------
TOWNS = ["Hallstatt", "Gjógv", "Ribeauvillé", "Cesky Krumlov", "Ouro Preto", "Chefchaouen", "Hoi An", "Kampot",
         "Sapa", "Ella", "Gokarna", "Hampi", "Bundi", "Tsumago", "Takayama", "Gyeongju", "Tongyeong", "Kaikōura",
         "Wānaka", "Akaroa", "Broome", "Esperance", "Ísafjörður", "Røros", "Ålesund", "Visby", "Kiruna",
         "Savonlinna", "Sigulda", "Trakai", "Zakopane", "Piran", "Kotor", "Plovdiv", "Sibiu", "Eger", "Tokaj",
         "Mdina", "Gruyères", "Cochem", "Bamberg", "Colmar", "Saint-Malo", "Cuenca", "Ronda", "Óbidos", "Tavira",
         "Matera", "Alberobello", "Cefalù", "Bled", "Mestia", "Goreme", "Kaş", "Dahab", "Essaouira", "Swakopmund",
         "Knysna", "Tofino", "Taos", "Moab", "Paraty", "Salento", "Cafayate", "Puerto Natales"]
SKIES = ["sunny", "light rain", "overcast", "scattered showers", "clear skies", "partly cloudy", "fog", "snow showers"]
PAIR = ["What's the forecast for {a} and {b} on {d}?", "{d}: weather in {a} and in {b}, please.",
        "We're choosing between {a} and {b} for a day out on {d}. How will the weather be in each?",
        "Could you check the weather on {d} for both {a} and {b}?", "How wet will {a} and {b} be on {d}?",
        "On {d} I'm in {a} and my sister is in {b} - forecast for both?"]
ONE_DATED = ["{d} in {a}: what weather should I expect?", "For {d}, what does the {a} forecast say?",
             "Hiking near {a} on {d}. Forecast?"]


def day():
    y = rng.choice([2026, 2027])
    return f"{y}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"


SOUTH = {"Wānaka", "Akaroa", "Kaikōura", "Broome", "Esperance", "Ouro Preto", "Paraty", "Knysna", "Swakopmund",
         "Cafayate", "Puerto Natales"}
TROPICAL = {"Hoi An", "Kampot", "Ella", "Gokarna", "Hampi", "Salento", "Dahab", "Bundi", "Paraty", "Broome"}


def forecast(c, d, tropical=False):
    """A made-up forecast that fits the place and the season: warm and humid in the tropics (the
    towns of part 4 are all tropical or near it), otherwise by the month of ``d`` (a date) and the
    hemisphere."""
    if tropical or c in TROPICAL:
        hi = rng.randint(26, 34)
        return {"city": c, "date": d, "summary": rng.choice(["sunny", "scattered showers", "partly cloudy", "light rain"]),
                "high_c": hi, "low_c": max(22, hi - rng.randint(5, 9))}
    season = {12: 0, 1: 0, 2: 0, 6: 2, 7: 2, 8: 2}.get(int(d[5:7]), 1)  # winter, between, summer (north)
    if c in SOUTH:
        season = 2 - season
    hi = rng.randint(*[(-3, 9), (10, 21), (22, 32)][season])
    sky = rng.choice([x for x in SKIES if x != "snow showers" or hi <= 2])
    return {"city": c, "date": d, "summary": sky, "high_c": hi, "low_c": hi - rng.randint(4, 10)}


towns = [c for c in TOWNS if not held(c)]
rng.shuffle(towns)
n_pair = n_dated = 0
while n_pair < 7 and len(towns) >= 2:
    a, b, d = towns.pop(), towns.pop(), day()
    res = [forecast(a, d), forecast(b, d)]
    n_pair += add([a, b], rng.choice(PAIR).format(a=a, b=b, d=d),
                  [("get_weather_forecast", {"city": a, "date": d}), ("get_weather_forecast", {"city": b, "date": d})],
                  res, f"On {d}: " + " ".join(forecast_answer(r) for r in res))
while n_dated < 3 and towns:
    a, d = towns.pop(), day()
    res = forecast(a, d)
    n_dated += add([a], rng.choice(ONE_DATED).format(a=a, d=d), [("get_weather_forecast", {"city": a, "date": d})],
                   [res], f"On {d}, {forecast_answer(res)}")
print("dated pairs", n_pair, "dated", n_dated, file=sys.stderr)

# --- 3. visa: the destination first, the nationality after --------------------------------------------
COUNTRY = countries()
SAID = ["Albanian", "Azerbaijani", "Cuban", "Czech", "Salvadoran", "Guatemalan", "Iraqi", "Jamaican", "Lebanese",
        "Malagasy", "Mauritian", "Montenegrin", "Nigerien", "Nigerian", "Pakistani", "Romanian", "Saudi",
        "Slovenian", "Somali", "Swiss", "Ukrainian", "Uzbek", "Yemeni", "Kazakh", "Mongolian", "Namibian",
        "Rwandan", "Senegalese", "Paraguayan", "Bolivian", "Ecuadorian", "Panamanian", "Omani", "Qatari",
        "Jordanian", "Moroccan", "Kenyan", "Georgian", "Polish", "Slovak", "Malaysian", "Bahraini", "Tunisian",
        "Sri Lankan", "Nepali", "Bangladeshi", "Ghanaian", "Ethiopian", "Zambian", "Peruvian",
        "Uruguayan", "Venezuelan", "Estonian", "Latvian", "Lithuanian", "Bulgarian", "Croatian", "Serbian",
        "Belarusian", "Armenian", "Kyrgyz", "Tajik", "Cambodian", "Laotian"]
VISA_T = ["Heading to {d} in the spring. I'm a {w} citizen - do I need a visa?",
          "{d} for a conference next month; I hold a {w} passport. Visa?",
          "Is a visa needed for {d}? I'm {w}.", "Trip to {d} coming up - what are the visa rules for {w} nationals?",
          "I've got a {w} passport. Entry rules for {d}?", "Can someone with a {w} passport visit {d} visa-free?",
          "{d} visa question: my husband is {w}.", "Planning a trip to {d} with friends, all of us {w}. Do we need visas?"]
DEST = ["Chile", "Japan", "Kenya", "Portugal", "Canada", "Thailand", "Mexico", "Morocco", "Australia", "Norway",
        "Vietnam", "Argentina", "Turkey", "India", "Peru", "Jordan", "Singapore", "Ireland", "Greece", "Austria",
        "Belgium", "Denmark", "Iceland", "Indonesia", "South Korea", "Oman", "Qatar", "Colombia",
        "Ecuador", "Panama", "New Zealand", "Brazil", "Germany", "France", "Italy", "Spain", "Poland", "China",
        "Bahrain", "Malaysia", "Egypt", "Tanzania", "Uganda", "Sri Lanka", "Nepal", "Cambodia", "Laos"]
n_visa = 0
said_ = [w for w in SAID if w.casefold() in COUNTRY and not held(w)]
rng.shuffle(said_)
for w in said_:
    if n_visa >= 18:
        break
    country = COUNTRY[w.casefold()]
    d, (req, det) = rng.choice([p for p in DEST if not held(p) and p != country]), rng.choice(VISA_RESULTS)
    says = ("need a visa for" if req else "can visit") + f" {d}"
    user = re.sub(r"\ba (?=[AEIO]|Uz)", "an ", rng.choice(VISA_T).format(w=w, d=d))
    n_visa += add([w, country, d], user,
                  [("get_visa_requirements", {"nationality": w, "destination": d})],
                  [{"nationality": country, "destination": d, "visa_required": req, "details": det}],
                  f"Travellers from {country} {says}: {det}.")
print("visa", n_visa, "of", len(said_), "unheld nationalities", file=sys.stderr)

# --- 4. small towns whose names must be copied -------------------------------------------------------
CLOCK = {  # each town's UTC offset in December
    "Apia": "+13:00", "Honiara": "+11:00", "Port Vila": "+11:00", "Levuka": "+12:00", "Savusavu": "+12:00",
    "Avarua": "-10:00", "Neiafu": "+13:00", "Kolonia": "+11:00", "Dili": "+09:00", "Baucau": "+09:00",
    "Kupang": "+08:00", "Labuan Bajo": "+08:00", "Ambon": "+09:00", "Sorong": "+09:00", "Lamu": "+03:00",
    "Moshi": "+03:00", "Livingstone": "+02:00", "Maun": "+02:00", "Kasane": "+02:00", "Kumasi": "+00:00",
    "Ziguinchor": "+00:00", "Bobo-Dioulasso": "+00:00", "Ouidah": "+01:00", "Kribi": "+01:00",
    "Nkhata Bay": "+02:00", "Kavieng": "+10:00", "Alotau": "+10:00", "Maumere": "+08:00"}
W_T = ["Forecast for {c} today?", "What's the weather doing in {c}?", "{c} weather right now, please.",
       "How's the weather in {c} today?"]
T_T = ["What time is it in {c}?", "Current time in {c}, please.", "Local time in {c}?",
       "I need to call a hotel in {c}. What's the local time there?"]
places = [c for c in CLOCK if not held(c)]
rng.shuffle(places)
n_w = n_t = 0
for c in places:
    if n_w < 8:
        res = forecast(c, "today", tropical=True)
        n_w += add([c], rng.choice(W_T).format(c=c), [("get_weather_forecast", {"city": c})], [res],
                   f"{res['summary'].capitalize()} in {c} today: highs around {res['high_c']}°C, "
                   f"lows near {res['low_c']}°C.")
    elif n_t < 8:
        res = {"city": c, "local_time": f"{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}", "utc_offset": CLOCK[c]}
        n_t += add([c], rng.choice(T_T).format(c=c), [("get_local_time", {"city": c})], [res],
                   f"It is {res['local_time']} in {c} right now.")
print("forecasts", n_w, "local times", n_t, file=sys.stderr)

# --- 5. near a function's subject, no call -----------------------------------------------------------
NO_CALL = [
    (["Everest", "Sagarmatha", "Khumbu", "Kathmandu", "Lukla", "Monjo", "Nepal"],
     "What permits do I need for the Everest Base Camp trek?",
     "Two local permits: the Sagarmatha National Park entry permit and the Khumbu rural municipality permit, "
     "bought in Kathmandu, Lukla or Monjo. They are separate from your Nepal visa."),
    (["Inca Trail"], "Do I need a permit for the Inca Trail?",
     "Yes. Permits are limited to about 500 people a day, guides and porters included, and only licensed "
     "operators can book them; for May to September book months ahead. The trail closes every February."),
    (["Wave", "Arizona", "Coyote Buttes"], "How do I get a permit to hike the Wave in Arizona?",
     "Through the Bureau of Land Management's lotteries for Coyote Buttes North: an online lottery months "
     "ahead and a daily one two days ahead. Only a few groups get in each day."),
    (["Half Dome", "Yosemite"], "Is a permit required to climb Half Dome?",
     "Yes, to go up the cables: Yosemite runs a preseason lottery in March and daily lotteries two days "
     "ahead while the cables are up."),
    (["Kilimanjaro", "Tanzania"], "Can I climb Kilimanjaro without a guide?",
     "No. Park rules require a licensed guide, so you book the climb through a registered operator, who "
     "also pays the park fees."),
    (["Galápagos", "Quito", "Guayaquil"], "What fees do I pay to enter the Galápagos?",
     "A national park entrance fee paid on arrival (200 US dollars for most foreign adults since August "
     "2024) and a transit control card bought at the airport in Quito or Guayaquil before you fly."),
    (["Bhutan"], "Is there a daily fee for tourists in Bhutan?",
     "Yes, the Sustainable Development Fee, charged per night; since September 2023 it is 100 US dollars a "
     "night for most visitors. Indian visitors pay a lower fee in rupees."),
    (["Venice"], "Do day-trippers have to pay to enter Venice?",
     "On set peak days, yes: day visitors pay an access fee online. People staying overnight in the city "
     "are exempt but must still register."),
    (["Bali"], "When is the rainy season in Bali?",
     "Roughly November to March. April to October is the dry season and the busiest time to visit."),
    (["Tromsø"], "What's the best month to see the northern lights in Tromsø?",
     "Any month from late September to late March, when the nights are dark. December to February are "
     "darkest, but a clear sky matters more than the month."),
    (["Seville"], "Is it too hot to visit Seville in August?",
     "Often: afternoons are usually 35 to 40°C and can pass 40°C. If you go, sightsee early, rest in the afternoon and go out "
     "again in the evening."),
    (["Norway"], "Is Norway expensive for backpackers?",
     "Yes, it is one of Europe's priciest countries. Save by cooking from supermarkets, sleeping in hostels "
     "or cabins, and camping under the right to roam."),
    (["Sweden"], "Should I bring cash or cards to Sweden?",
     "Cards. Sweden is nearly cashless and many places take no cash at all; bring a card without foreign "
     "transaction fees."),
    (["United States"], "How much should I tip at restaurants in the United States?",
     "About 18 to 20 percent of the bill before tax at sit-down restaurants; less, or nothing, at counters."),
    (["Madrid"], "What time do people eat dinner in Madrid?",
     "Late: most kitchens open for dinner around 20:30 or 21:00, and locals often sit down at 22:00."),
    (["Schengen"], "How long must my passport be valid for a trip to the Schengen area?",
     "For non-EU travellers: at least three months beyond the day you plan to leave, and issued within the last ten years."),
    ([], "Can I renew my passport while I'm abroad?",
     "Usually, through your country's embassy or consulate. It can take weeks, so check their processing "
     "times before you rely on it."),
    (["Scotland", "Highlands"], "When are the midges worst in Scotland?",
     "From late May to September, worst in July and August on still, damp days in the west Highlands; a "
     "breeze or sunshine keeps them away."),
    (["Patagonia"], "How windy is Patagonia?",
     "Very: strong westerly winds blow most of the year, hardest from spring into summer (October to "
     "March). Pack a windproof jacket and allow for delayed ferries and closed trails."),
    (["Kerala"], "When does the monsoon reach Kerala?",
     "Around the first of June. The southwest monsoon rains last into September, and a second, lighter "
     "season follows in October and November."),
    (["Croatia"], "What currency does Croatia use?",
     "The euro, since 1 January 2023; the kuna is no longer accepted."),
    (["Denmark"], "Is Denmark on the euro?",
     "No, Denmark uses the Danish krone, which is pegged closely to the euro. Cards are accepted almost "
     "everywhere."),
    (["China", "Beijing", "Xinjiang"], "How many time zones does China have?",
     "One: all of China officially keeps Beijing time, UTC+8, though in Xinjiang many people also use an "
     "unofficial local time two hours behind."),
    (["India"], "Does India have daylight saving time?",
     "No. India keeps Indian Standard Time, UTC+5:30, all year round across the whole country."),
    (["Schengen"], "What is the 90/180 rule in Schengen?",
     "Non-EU visitors without a residence permit may stay up to 90 days in any 180-day period in the whole "
     "Schengen area; days spent in every member country count together."),
    (["EU"], "How much cash can I carry when I fly into the EU?",
     "Any amount, but 10,000 euros or more (or the same in other currencies) must be declared at customs "
     "when you enter or leave the EU; undeclared cash can be seized."),
    (["Iceland"], "Is tap water safe to drink in Iceland?",
     "Yes, it is some of the cleanest in the world; the hot tap can smell of sulphur, so drink from the cold."),
]
n = sum(add(names, q, answer=a) for names, q, a in NO_CALL)
print("no call", n, "of", len(NO_CALL), file=sys.stderr)
print("rows {} + {}".format(*rows.save()), file=sys.stderr)

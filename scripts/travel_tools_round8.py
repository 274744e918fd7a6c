"""The eighth round of the bundled travel tool data (issue 17): rows of the kinds the fourth and fifth
held-out sets showed wrong (categories only): nationality adjectives, two conversions in one
question, the time of day asked indirectly, two-city calls whose second city is unusual, and
questions that name a place but need no live fact, plus greetings. Seeded; every row naming a place
or nationality found in a held-out file is dropped, as is any prompt within 0.75 of a held-out one.

It wrote the last 88 rows of train.jsonl, printed on stdout and appended to the 498 before it:
run on those (``git show 1cfddae:src/tunery/examples/travel_tools/train.jsonl`` in its place) it
prints them again, byte for byte. Run on any other file it prints other rows: which rows it keeps
moves the random draws after them.
The counts per kind go to stderr. Earlier rounds' working scripts were not kept."""
import difflib
import json
import random
import re
import string
import sys
from pathlib import Path

D = Path(__file__).resolve().parents[1] / "src" / "tunery" / "examples" / "travel_tools"
rng = random.Random(9)
train = [json.loads(line) for line in (D / "train.jsonl").read_text().splitlines() if line.strip()]
TOOLS = train[0]["tools"]
SYSTEM = train[0]["messages"][0]
HELD = ["questions.jsonl", "fresh-questions.jsonl", "blind-questions.jsonl", "unseen-questions.jsonl",
        "large-questions.jsonl", "sixth-questions.jsonl", "validation.jsonl"]
held_text = "".join((D / f).read_text(encoding="utf-8") for f in HELD if (D / f).exists())
held_q = []
for f in [f for f in HELD if (D / f).exists()]:
    for line in (D / f).read_text(encoding="utf-8").splitlines():
        r = json.loads(line)
        held_q += [r["question"]] if "question" in r else [m["content"] for m in r["messages"] if m["role"] == "user"]
train_q = {m["content"] for r in train for m in r["messages"] if m["role"] == "user"}


def clean(names):
    return not any(re.search(rf"\b{re.escape(n)}\b", held_text, re.IGNORECASE) for n in names)


def far(q):
    return q not in train_q and all(difflib.SequenceMatcher(None, q.lower(), h.lower()).ratio() < 0.75 for h in held_q)


def cid():
    return "call_" + "".join(rng.choice(string.ascii_lowercase + string.digits) for _ in range(10))


def row(user, calls=None, results=None, answer=None):
    msgs = [SYSTEM, {"role": "user", "content": user}]
    if calls:
        ids = [cid() for _ in calls]
        msgs.append({"role": "assistant", "content": None, "tool_calls": [
            {"id": i, "type": "function", "function": {"name": n, "arguments": json.dumps(a, ensure_ascii=False)}}
            for i, (n, a) in zip(ids, calls, strict=True)]})
        msgs += [{"role": "tool", "tool_call_id": i, "content": json.dumps(r, ensure_ascii=False)}
                 for i, r in zip(ids, results, strict=True)]
    msgs.append({"role": "assistant", "content": answer})
    return {"messages": msgs, "tools": TOOLS}


SKIES = ["sunny", "light rain", "overcast", "scattered showers", "clear skies", "partly cloudy", "thunderstorms",
         "fog in the morning, then sun", "drizzle", "windy with some sun"]


def weather(city):
    hi = rng.randint(-3, 34)
    return {"city": city, "date": "today", "summary": rng.choice(SKIES), "high_c": hi, "low_c": hi - rng.randint(4, 11)}


def clock(city):
    return {"city": city, "local_time": f"{rng.randint(0, 23):02d}:{rng.choice(range(0, 60, 5)):02d}",
            "utc_offset": rng.choice(["-05:00", "+01:00", "+03:00", "+05:30", "+08:00", "+10:00", "-03:00", "+00:00"])}


out = []


def add(names, r):
    q = r["messages"][1]["content"]
    if clean(names) and far(q) and q not in {x["messages"][1]["content"] for x in out}:
        out.append(r)
        return True
    return False


# --- A. visa questions with a nationality adjective (the argument is the country) -----------------
ADJ = [("Senegalese", "Senegal"), ("Gabonese", "Gabon"), ("Beninese", "Benin"), ("Sudanese", "Sudan"),
       ("Lebanese", "Lebanon"), ("Nepalese", "Nepal"), ("Bhutanese", "Bhutan"), ("Taiwanese", "Taiwan"),
       ("Vietnamese", "Vietnam"), ("Guinean", "Guinea"), ("Rwandan", "Rwanda"), ("Ugandan", "Uganda"),
       ("Zambian", "Zambia"), ("Namibian", "Namibia"), ("Gambian", "Gambia"), ("Liberian", "Liberia"),
       ("Tunisian", "Tunisia"), ("Algerian", "Algeria"), ("Mauritian", "Mauritius"), ("Malagasy", "Madagascar"),
       ("Eritrean", "Eritrea"), ("Mozambican", "Mozambique"), ("Angolan", "Angola"), ("Ghanaian", "Ghana"),
       ("Malian", "Mali"), ("Cameroonian", "Cameroon"), ("Omani", "Oman"), ("Yemeni", "Yemen"),
       ("Qatari", "Qatar"), ("Iraqi", "Iraq"), ("Jordanian", "Jordan"), ("Cypriot", "Cyprus"),
       ("Armenian", "Armenia"), ("Azerbaijani", "Azerbaijan"), ("Kazakh", "Kazakhstan"), ("Uzbek", "Uzbekistan"),
       ("Kyrgyz", "Kyrgyzstan"), ("Mongolian", "Mongolia"), ("Laotian", "Laos"), ("Cambodian", "Cambodia"),
       ("Sri Lankan", "Sri Lanka"), ("Maldivian", "Maldives"), ("Fijian", "Fiji"), ("Estonian", "Estonia"),
       ("Lithuanian", "Lithuania"), ("Slovak", "Slovakia"), ("Slovenian", "Slovenia"), ("Montenegrin", "Montenegro"),
       ("Albanian", "Albania"), ("Luxembourgish", "Luxembourg"), ("Monegasque", "Monaco"), ("Paraguayan", "Paraguay"),
       ("Uruguayan", "Uruguay"), ("Ecuadorian", "Ecuador"), ("Venezuelan", "Venezuela"), ("Panamanian", "Panama"),
       ("Nicaraguan", "Nicaragua"), ("Salvadoran", "El Salvador"), ("Guatemalan", "Guatemala"), ("Cuban", "Cuba"),
       ("Jamaican", "Jamaica"), ("Haitian", "Haiti"), ("Bahamian", "Bahamas"), ("Barbadian", "Barbados"),
       ("Burmese", "Myanmar"), ("Filipino", "Philippines"), ("Icelandic", "Iceland"), ("Finnish", "Finland"),
       ("Danish", "Denmark"), ("Polish", "Poland"), ("Hungarian", "Hungary"), ("Croatian", "Croatia"),
       ("Ethiopian", "Ethiopia"), ("Somali", "Somalia"), ("Botswanan", "Botswana"), ("Tanzanian", "Tanzania")]
DEST = ["Oman", "Sri Lanka", "Costa Rica", "Georgia", "Morocco", "Jordan", "Peru", "Indonesia", "Malaysia",
        "Kenya", "Namibia", "Uzbekistan", "Mongolia", "Chile", "Ecuador", "Tunisia", "Vietnam", "Panama",
        "Albania", "Montenegro", "Bolivia", "Qatar", "Rwanda", "Laos", "Cambodia", "Nepal", "Ghana", "Fiji",
        "Iceland", "Armenia", "Kazakhstan", "Senegal", "Madagascar", "Belize", "Cuba", "Egypt", "Turkey", "Japan"]
VISA_T = ["I'm {a} and thinking about a week in {d}. Do I need a visa?",
          "My {a} passport - is it enough to get into {d}?",
          "As {an} {a} citizen, what are the entry rules for {d}?",
          "We're {a}, flying to {d} next month. Visa or no visa?",
          "My girlfriend is {a}; can she come with me to {d} without a visa?",
          "Visa check for {d}, please: I travel on {an} {a} passport.",
          "Does someone who is {a} need a visa for {d}?",
          "{a} national here - am I allowed into {d} visa-free?",
          "Planning a trip to {d} with my {a} parents. What do they need to enter?",
          "What does {an} {a} traveller need to visit {d}?"]
RESULT = [(False, "visa-free stay up to 30 days"), (False, "visa-free stay up to 90 days"), (True, "e-visa, apply online before travel"),
          (True, "visa on arrival, 30 days, fee payable in cash"), (True, "visa required; apply at an embassy"),
          (False, "visa-free stay up to 60 days")]
rng.shuffle(ADJ)
dests = [x for x in DEST if clean([x])]
rng.shuffle(dests)
n = 0
for a, c in ADJ:
    if n >= 22:
        break
    if len(dests) < 2:
        dests = [x for x in DEST if clean([x])]
        rng.shuffle(dests)
    d = dests.pop() if dests[-1] != c else dests.pop(0)
    req, det = rng.choice(RESULT)
    q = rng.choice(VISA_T).format(a=a, d=d, an='an' if a[0] in 'AEIOU' else 'a')
    ans = (f"Citizens of {c} need a visa for {d}: {det}." if req else f"Good news: citizens of {c} can visit {d} without a visa ({det}).")
    n += add([a, c, d], row(q, [("get_visa_requirements", {"nationality": c, "destination": d})],
                           [{"nationality": c, "destination": d, "visa_required": req, "details": det}], ans))
print("visa", n, file=sys.stderr)

# --- B. two conversions in one question ---------------------------------------------------------
NAMES = {"AUD": ["Australian dollars", "Aussie dollars"], "BRL": ["Brazilian reais", "reais"],
         "CAD": ["Canadian dollars"], "CHF": ["Swiss francs"], "CNY": ["Chinese yuan", "renminbi"],
         "CZK": ["Czech koruna", "Czech crowns"], "EUR": ["euros"], "GBP": ["British pounds", "pounds sterling"],
         "INR": ["Indian rupees"], "JPY": ["Japanese yen", "yen"], "KRW": ["South Korean won"],
         "MXN": ["Mexican pesos"], "NOK": ["Norwegian kroner"], "NZD": ["New Zealand dollars"],
         "SEK": ["Swedish kronor"], "THB": ["Thai baht", "baht"], "TRY": ["Turkish lira"],
         "USD": ["US dollars", "American dollars"], "ZAR": ["South African rand", "rand"]}
CODES = sorted(NAMES)
RATE = {"AUD": 0.61, "BRL": 0.18, "CAD": 0.68, "CHF": 1.13, "CNY": 0.14, "CZK": 0.043, "EUR": 1.08, "GBP": 1.27,
        "INR": 0.012, "JPY": 0.0067, "KRW": 0.00073, "MXN": 0.058, "NOK": 0.093, "NZD": 0.56, "SEK": 0.095,
        "THB": 0.028, "TRY": 0.031, "USD": 1.0, "ZAR": 0.054}


def conv(amount, f, t):
    rate = round(RATE[f] / RATE[t], 4)
    return {"amount": amount, "from": f, "to": t, "rate": rate, "result": round(amount * rate, 2)}


def nm(code):
    return rng.choice(NAMES[code])


ONE_TWO = ["What's {n} {a} in {b}, and what is it in {c}?", "Convert {n} {a} into {b} and also into {c}.",
           "How much is {n} {a} in {b}? And in {c}?", "I have {n} {a}. What would that be in {b}, and separately in {c}?",
           "{n} {a}: give me the amount in {b} and the amount in {c}.", "Turn {n} {a} into {b}; then the same {n} into {c}."]
TWO_TWO = ["Two conversions please: {n} {a} to {b}, and separately {m} {c} to {d}.",
           "First {n} {a} into {b}, and second {m} {c} into {d}.", "Can you convert {n} {a} to {b} and {m} {c} to {d}?",
           "I need {n} {a} changed to {b}, plus {m} {c} changed to {d}.",
           "Work out two sums: {n} {a} in {b}; {m} {c} in {d}.", "How much is {n} {a} in {b}? Also, {m} {c} in {d}?"]
AMOUNTS = [40, 75, 120, 250, 300, 480, 600, 900, 1500, 2500, 3200, 7000, 12000, 50000]
for i in range(12):
    if i % 2 == 0:
        a, b, c = rng.sample(CODES, 3)
        n_ = rng.choice(AMOUNTS)
        q = rng.choice(ONE_TWO).format(n=n_, a=nm(a), b=nm(b), c=nm(c))
        calls = [("convert_currency", {"amount": n_, "from": a, "to": b}), ("convert_currency", {"amount": n_, "from": a, "to": c})]
    else:
        a, b, c, d = rng.sample(CODES, 4)
        n_, m_ = rng.sample(AMOUNTS, 2)
        q = rng.choice(TWO_TWO).format(n=n_, a=nm(a), b=nm(b), m=m_, c=nm(c), d=nm(d))
        calls = [("convert_currency", {"amount": n_, "from": a, "to": b}), ("convert_currency", {"amount": m_, "from": c, "to": d})]
    res = [conv(x["amount"], x["from"], x["to"]) for _, x in calls]
    ans = " ".join(f"{r['amount']} {r['from']} is about {r['result']} {r['to']}." for r in res)
    add([], row(q, calls, res, ans))
print("conv", sum(1 for r in out if r['messages'][2].get('tool_calls', [{}])[0].get('function', {}).get('name') == 'convert_currency'), file=sys.stderr)

# --- C. the time of day asked indirectly, and two cities with an unusual second one --------------
CITIES = ["Thimphu", "Ulaanbaatar", "Nouméa", "Bujumbura", "Paramaribo", "Ushuaia", "Hobart", "Anchorage", "Iqaluit",
          "Kota Kinabalu", "Ouagadougou", "Antananarivo", "Nukuʻalofa", "Saint-Denis", "Luxembourg City",
          "Bratislava", "Ljubljana", "Podgorica", "Tirana", "Tallinn", "Vilnius", "Yerevan", "Baku", "Almaty",
          "Bishkek", "Samarkand", "Vientiane", "Phnom Penh", "Colombo", "Malé", "Suva", "Windhoek", "Gaborone",
          "Lusaka", "Kampala", "Kigali", "Asmara", "Maputo", "Luanda", "Accra", "Bamako", "Yaoundé", "Muscat",
          "Doha", "Amman", "Limassol", "Montevideo", "Asunción", "Cuenca", "Maracaibo", "Granada", "San Salvador",
          "Quetzaltenango", "Santiago de Cuba", "Montego Bay", "Cap-Haïtien", "Nassau", "Bridgetown", "Mandalay",
          "Cebu", "Akureyri", "Tampere", "Aalborg", "Gdynia", "Debrecen", "Zadar", "Addis Ababa", "Hargeisa",
          "Francistown", "Arusha", "Whitehorse", "Invercargill", "Broome", "Kununurra", "Ilulissat", "Longyearbyen",
          "Thessaloniki", "Bariloche", "Valparaíso", "Arequipa", "Trujillo", "Manaus", "Fortaleza", "Mazatlán",
          "Mérida de Yucatán", "Saint-Louis", "Ziguinchor", "Nuuk", "Kagoshima", "Matsuyama", "Daegu", "Gwangju",
          "Kaunas", "Daugavpils", "Tartu", "Cluj-Napoca", "Brașov", "Niš", "Kotor", "Shkodër", "Ohrid"]
rng.shuffle(CITIES)
cities = iter([c for c in CITIES if clean([c])])
TIME_T = ["Is it daytime in {c} right now?", "Is it dark yet in {c}?", "Has the sun come up in {c} yet?",
          "Night or day in {c} at the moment?", "Would my friend in {c} be asleep by now?",
          "Is it still morning in {c}?", "Is it lunchtime yet in {c}?", "Are the shops in {c} shut at this hour?",
          "Is it the middle of the night in {c}?", "Too late to ring my hotel in {c}?",
          "Has evening come yet in {c}?", "Is the working day over in {c} yet?", "Is it breakfast time in {c}?",
          "Would I catch the office in {c} open now?"]
for t in TIME_T:
    c = next(cities)
    r = clock(c)
    add([c], row(t.format(c=c), [("get_local_time", {"city": c})], [r], f"It is {r['local_time']} in {c} right now."))
PAIR_T = [("get_weather_forecast", "Weather today in {a}, and also in {b}?"),
          ("get_weather_forecast", "Is it warmer in {a} or in {b} today?"),
          ("get_weather_forecast", "Today's forecast for both {a} and {b}, please."),
          ("get_weather_forecast", "Rain or shine in {a}? Same question for {b}."),
          ("get_local_time", "What's the time in {a} and in {b}?"),
          ("get_local_time", "Clock check: {a} first, then {b}."),
          ("get_local_time", "I have colleagues in {a} and {b}; what time is it for each?"),
          ("get_local_time", "Local time in {a}, and in {b} as well?"),
          ("get_weather_forecast", "We're torn between {a} and {b} for today's outing. How's the weather in each?"),
          ("get_local_time", "Is it the same time in {a} as in {b}? Check both.")]
for fn, t in PAIR_T:
    a, b = next(cities), next(cities)
    res = [weather(a), weather(b)] if fn == "get_weather_forecast" else [clock(a), clock(b)]
    if fn == "get_weather_forecast":
        ans = " ".join(f"{r['city']}: {r['summary']}, between {r['low_c']}°C and {r['high_c']}°C." for r in res)
    else:
        ans = " ".join(f"It is {r['local_time']} in {r['city']}." for r in res)
    add([a, b], row(t.format(a=a, b=b), [(fn, {"city": a}), (fn, {"city": b})], res, ans))
print("time/pairs", len(out), file=sys.stderr)

# --- D. questions that name a place but need no live fact, and greetings -------------------------
NO_CALL = [
    (["Thailand"], "When is Songkran in Thailand, and will I get soaked?", "Songkran is 13-15 April, the Thai New Year; expect water fights in the streets, so keep your phone in a waterproof pouch."),
    (["Marrakech"], "Do I have to bargain in the souks of Marrakech?", "Yes, haggling is expected: start at about a third to a half of the first price and stay friendly; walk away if it feels too high."),
    (["Crete"], "Is the sea around Crete warm enough for swimming in May?", "Just about: around 19-20°C in May, fresh but swimmable; it is warmest from July to September."),
    (["Munich"], "When does Oktoberfest start in Munich?", "It begins in mid to late September and runs about 16 days, ending on the first Sunday of October (or 3 October)."),
    (["Germany"], "Are shops closed on Sundays in Germany?", "Mostly yes: supermarkets and shops close on Sundays; stations, airports and petrol stations stay open."),
    (["Seville"], "Do shops in Seville close in the afternoon for a siesta?", "Many small shops close roughly 14:00-17:00; department stores and chains stay open all day."),
    (["Kyoto"], "When is cherry blossom season in Kyoto?", "Usually late March to early April; the peak shifts by a week or so from year to year."),
    (["Delhi"], "Is Holi a public holiday in Delhi?", "Yes. Holi falls in March; offices and many shops close, and expect coloured powder in the streets."),
    (["Brighton"], "Could I swim in the sea at Brighton in April?", "Only if you like cold water: the sea is about 10°C in April, so a wetsuit helps."),
    (["Cairo"], "Is Ramadan a bad time to visit Cairo?", "You can visit: sights stay open with shorter hours, many cafes close by day and come alive after sunset; avoid eating in public in daylight."),
    (["Hanoi"], "Are taxis in Hanoi metered, or do I agree a price?", "Use metered taxis from known firms or a ride-hailing app; agree the price first for cyclos and motorbike taxis."),
    (["Reykjavik"], "Is the tap water safe to drink in Reykjavik?", "Yes, it is some of the cleanest tap water anywhere; hot water smells of sulphur, the cold is fine."),
    (["Stockholm"], "Will I need cash in Stockholm?", "Hardly: cards and phones are taken almost everywhere, and some places refuse cash."),
    (["Japanese"], "What's the etiquette for shoes in Japanese homes?", "Take them off at the entrance, use the slippers offered, and never wear slippers on tatami mats."),
    (["Machu Picchu"], "How long is the classic Inca Trail to Machu Picchu?", "Four days and three nights; permits sell out months ahead, and the trail closes in February."),
    (["Tromsø"], "Which months are best for northern lights in Tromsø?", "Late September to March; December to February give the longest dark nights."),
    (["Lisbon"], "Is Lisbon very hilly? What shoes should I bring?", "Very hilly, with slippery stone pavements: bring comfortable shoes with good grip."),
    (["Oaxaca"], "When are the Day of the Dead celebrations in Oaxaca?", "On 1 and 2 November, with events from late October; book a room early."),
    (["Venice"], "Does Venice flood in winter?", "Acqua alta happens mostly from October to January, usually for a few hours at high tide; raised walkways go up."),
    (["Abu Dhabi"], "What should I wear to the Sheikh Zayed Grand Mosque in Abu Dhabi?", "Loose clothes covering arms and legs; women cover their hair. Abayas can be borrowed at the entrance."),
    (["Vienna"], "Are Vienna's Christmas markets open on Christmas Day?", "Most close on 24 December in the afternoon; a few reopen as New Year markets until 31 December."),
    (["Bangkok"], "Can I haggle at Chatuchak market in Bangkok?", "Yes, polite bargaining is fine, especially if you buy several things, but prices start low."),
    (["Zanzibar"], "Is the water good for snorkelling in Zanzibar in July?", "Yes: around 25°C, and July is the dry season, with clear water."),
    (["Rio"], "When is Carnival in Rio, and do shops close?", "The five days before Ash Wednesday (February or March); banks and many offices shut on Monday and Tuesday."),
    (["Santorini"], "Is Santorini worth visiting in November?", "Quieter and cheaper, around 15-19°C, but the sea is cool and some hotels and boats have closed for winter."),
    (["Edinburgh"], "When is the Edinburgh Festival Fringe?", "Throughout August, for about three weeks; rooms get booked up and expensive, so reserve early."),
    (["Istanbul"], "Do I bargain in the Grand Bazaar in Istanbul?", "Yes, haggling is expected; start well below the asking price and take tea if it is offered."),
    (["Dubai"], "Can I drink alcohol in Dubai?", "Only in licensed hotels, bars and restaurants; drinking in public or being drunk in public is an offence."),
    (["Norway"], "Is it expensive to eat out in Norway?", "Yes: a simple restaurant main is often 250-350 kroner; supermarkets and bakeries are much cheaper."),
    (["Costa Rica"], "When is the rainy season in Costa Rica?", "Roughly May to November on most of the country, with afternoon downpours; December to April is dry."),
    (["Amsterdam"], "Can I ride a bike in Amsterdam without a helmet?", "Yes, almost nobody wears one; keep to the bike lanes and watch for trams."),
    (["Prague"], "How do I get from Prague airport into the old town?", "The 119 bus to Nádraží Veleslavín then the metro, or the Airport Express bus to the main station; taxis take about 30 minutes."),
    ([], "Hello! Nice to meet you.", "Nice to meet you too! Where are you off to? I can check forecasts, exchange rates, visa rules and local times."),
    ([], "Good morning, how are you?", "Good morning! I'm well, thanks. Are you planning a trip?"),
    ([], "Hey there, what's up?", "Not much - ready to help with your travels! Where are you heading?"),
    ([], "Hi! How has your day been?", "Busy helping travellers, thanks for asking! What can I do for your trip?"),
    ([], "Good evening!", "Good evening! How can I help with your travels?"),
    ([], "Cheers, that's everything I needed.", "Glad to help - safe travels!"),
    ([], "What can you do?", "I can check weather forecasts, convert currencies, look up visa rules and tell you the local time anywhere, and answer travel questions."),
    ([], "Thanks, you've been really helpful!", "You're welcome - enjoy your trip!"),
]
for names, q, a in NO_CALL:
    add(names, row(q, answer=a))
print("total", len(out), file=sys.stderr)
for r in out:
    print(json.dumps(r, ensure_ascii=False))

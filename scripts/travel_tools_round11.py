"""The eleventh round of the bundled travel tool data (issue 17): the tenth round's misses on the
eighth set, as kinds, in new rows (the eighth set therefore no longer counts as untouched; the
ninth, written blind and committed before this script, judges the round).

1. Visa questions whose nationality is followed by the word that says it is one: "Kenyan
   citizens", "a Paraguayan passport holder", "Lebanon nationals". The call copies the nationality
   alone; the tenth-round model copied "Cape Verde citizens" and "Russian citizen" whole.
2. Amounts as people shorten them ("2.5k", "15K") and currencies by sign or nickname: each of the 11
   signs ("A$", "R$", "₹", "฿", ...) once and "loonies" twice, "kiwi dollars", "greenbacks", "RMB"
   and a few more, in turn; and conversions of two different currencies in one sentence. The
   tenth-round model read "2.5k" as 2.5 and "loonies" as NZD.
3. Forecasts and local times (with each town's December UTC offset) for small places with accents or
   several words, so that more calls copy a name the model has never seen (the tenth-round model
   wrote "Tugu" for Lijiang).
4. Questions that name a place or a sight and need no live fact: what to pack for a city, what a
   monument is, how to visit a site. The tenth-round model called a tool for a packing list, a
   rock-hewn church and a cave site, each with P >= 0.9.

Seeded. A row naming a place found in any held-out file (the ninth set included; every place of the
prompt and the answer is listed with the row) is dropped, as is a prompt within 0.75 of a held-out
one. Run once, on the tenth round's train.jsonl: it appends to it in place and prints the counts
per kind."""
import re
import sys

from travel_tools_rows import USD, VISA_RESULTS, Round, convert, countries

rows = Round(1111)
rng, add, held = rows.rng, rows.add, rows.held


# --- 1. visa: the nationality, then the word that says it is one -----------------------------------
COUNTRY = countries()
SAID = ["Albanian", "Azerbaijan", "Cuban", "Czech", "Salvadoran", "Guatemala", "Iraqi", "Jamaican", "Lebanon",
        "Luxembourg", "Malagasy", "Mauritius", "Monaco", "Montenegrin", "Nigerien", "Nigeria", "Pakistani", "Palau",
        "Papua New Guinea", "Romanian", "Saudi", "Slovenian", "Somali", "South African", "Swiss", "Timor-Leste",
        "Trinidad and Tobago", "Ukrainian", "Uzbek", "Yemeni", "Kazakh", "Marshall Islands", "Macau", "Hong Kong",
        "Antigua and Barbuda", "Mongolian", "Namibian", "Rwandan", "Senegalese", "Paraguayan", "Bolivian",
        "Ecuadorian", "Panamanian", "Omani", "Qatari", "Jordanian", "Moroccan", "Kenyan", "Georgian", "Polish"]
VISA_T = {  # the word after the nationality, and wordings that fit it
    ("citizen", "national", "passport holder"): [
        "{w} {x} here - do I need a visa for {d}?", "My wife is a {w} {x}; can she visit {d} without a visa?",
        "Travelling to {d} as a {w} {x}: what are the entry requirements?", "Is {d} visa-free for a {w} {x}?"],
    ("citizens", "nationals", "passport holders"): [
        "Visa rules for {w} {x} going to {d}?", "Do {w} {x} need anything to enter {d}?",
        "We're {w} {x} planning two weeks in {d}. Visa?",
        "My parents are {w} {x} and want to see me in {d}. Do they need a visa?"],
    ("passport",): [
        "{w} {x}, flying to {d} next month. Visa or not?", "quick one: {w} {x} -> {d}, visa needed?",
        "I travel on a {w} {x}. Can I get into {d} without a visa?", "With a {w} {x}, do I need a visa for {d}?"],
}
DEST = ["Chile", "Japan", "Kenya", "Portugal", "Canada", "Thailand", "Mexico", "Morocco", "Australia", "Norway",
        "Vietnam", "Argentina", "Turkey", "India", "Peru", "Jordan", "Singapore", "Ireland", "Greece", "Austria",
        "Belgium", "Denmark", "Iceland", "Indonesia", "Philippines", "South Korea", "Oman", "Qatar", "Colombia",
        "Ecuador", "Panama", "New Zealand", "Brazil", "Germany", "France", "Italy", "Spain", "Poland", "China",
        "Mongolia", "Georgia", "Namibia", "Rwanda", "Senegal", "Costa Rica", "Bolivia", "Paraguay"]


n = 0
said = [w for w in SAID if not held(w)]
rng.shuffle(said)
for w in said:
    if n >= 22:
        break
    words = rng.choice(list(VISA_T))
    x, template = rng.choice(words), rng.choice(VISA_T[words])
    country = COUNTRY[w.casefold()]
    d, (req, det) = rng.choice([p for p in DEST if not held(p) and p != country]), rng.choice(VISA_RESULTS)
    says = ("need a visa for" if req else "can visit") + f" {d}"
    user = template.format(w=w, x=x, d=d)
    user = re.sub(r"\ba (?=[AEIO]|Uz)", "an ", user)
    n += add([w, country, d], user,
             [("get_visa_requirements", {"nationality": w, "destination": d})],
             [{"nationality": country, "destination": d, "visa_required": req, "details": det}],
             f"Travellers from {'the ' * country.endswith('Islands')}{country} {says}: {det}.")
print("visa", n, file=sys.stderr)

# --- 2. amounts shortened, currencies by nickname or sign ------------------------------------------
NICK = {"CAD": ["loonies", "Canadian bucks"], "NZD": ["kiwi dollars", "Kiwi dollars"], "AUD": ["Aussie dollars"],
        "USD": ["greenbacks", "US bucks", "American dollars"], "GBP": ["quid", "pounds sterling"],
        "CNY": ["RMB", "renminbi"], "ZAR": ["rand"], "INR": ["rupees"], "KRW": ["won"], "JPY": ["yen"],
        "CHF": ["Swiss francs"], "BRL": ["reais"], "THB": ["baht"], "TRY": ["Turkish lira"], "MXN": ["Mexican pesos"],
        "EUR": ["euros"], "SEK": ["Swedish crowns"], "NOK": ["Norwegian crowns"], "CZK": ["Czech crowns"]}
SIGN = {"AUD": "A$", "CAD": "C$", "NZD": "NZ$", "USD": "US$", "BRL": "R$", "INR": "₹", "KRW": "₩", "THB": "฿",
        "TRY": "₺", "EUR": "€", "GBP": "£"}


def amount():
    """An amount and one way people write it short: "2.5k", "15k", "1.2k", or plainly."""
    kind = rng.choice(["k", "k", "kdec", "plain"])
    if kind == "k":
        n = rng.choice([2, 3, 4, 5, 8, 10, 12, 15, 20, 25, 40, 50, 80])
        return n * 1000, f"{n}k" if rng.random() < 0.7 else f"{n}K"
    if kind == "kdec":
        n = rng.choice([1.2, 1.5, 2.5, 3.5, 4.2, 7.5, 12.5])
        return round(n * 1000), f"{n}k"
    n = rng.choice([35, 60, 85, 140, 260, 475, 720, 990])
    return n, str(n)


def said_as(code, written):
    if code in SIGN and rng.random() < 0.45:
        return SIGN[code] + written
    return f"{written} {rng.choice(NICK[code])}"


ONE = ["Got {a} left over - what's that in {t}?", "How many {t} would {a} buy me today?",
       "{a} in {t}, roughly?", "Hotel wants {a}. Convert to {t} pls", "what does {a} come to in {t}",
       "I'm budgeting {a} for the week; how much is that in {t}?", "Change {a} into {t} for me?",
       "Is {a} a lot in {t}? Convert it please.", "A friend owes me {a}. What is it in {t}?",
       "Price tag says {a}. Give me the {t} figure."]
TWO = ["I have {a} and {b}. What's each in {t}?", "Convert {a} and also {b} into {t}.",
       "How much is {a} in {t}, and {b} in {t}?"]


def conversion(calls):
    results = [convert(*c) for c in calls]
    return ([("convert_currency", {"amount": n, "from": f, "to": t}) for n, f, t in calls], results,
            " ".join(f"{r['amount']:,} {r['from']} is about {r['result']:,.2f} {r['to']}." for r in results))


codes = sorted(USD)
# every sign and the nicknames a model cannot guess once or twice, in turn, on the `from` side
FROM = [(c, SIGN[c]) for c in sorted(SIGN)] + [("CAD", "loonies"), ("CAD", "loonies"), ("CAD", "Canadian bucks"),
                                              ("NZD", "kiwi dollars"), ("AUD", "Aussie dollars"),
                                              ("USD", "greenbacks"), ("USD", "US bucks"), ("CNY", "RMB")]
n_one = n_two = 0
for f, way in FROM:
    t = rng.choice([c for c in codes if c != f])
    n, written = amount()
    a = way + written if way in SIGN.values() else f"{written} {way}"
    n_one += add([], rng.choice(ONE).format(a=a, t=rng.choice(NICK[t])), *conversion([(n, f, t)]))
while n_two < 6:  # two currencies in one sentence, each converted to the same one
    f, g, t = rng.sample(codes, 3)
    (n, w1), (m, w2) = amount(), amount()
    n_two += add([], rng.choice(TWO).format(a=said_as(f, w1), b=said_as(g, w2), t=rng.choice(NICK[t])),
                 *conversion([(n, f, t), (m, g, t)]))
print("conversions", n_one, "with two currencies", n_two, file=sys.stderr)

# --- 3. small places, copied ------------------------------------------------------------------------
TOWNS = ["Hallstatt", "Gjógv", "Ribeauvillé", "Cesky Krumlov", "Ouro Preto", "San Cristóbal de las Casas",
         "Chefchaouen", "Hoi An", "Luang Namtha", "Kampot", "Sapa", "Ella", "Gokarna", "Hampi", "Leh", "Bundi",
         "Tsumago", "Takayama", "Gyeongju", "Tongyeong", "Kaikōura", "Wānaka", "Akaroa", "Broome", "Esperance",
         "Margaret River", "Ísafjörður", "Seyðisfjörður", "Røros", "Ålesund", "Visby", "Kiruna", "Savonlinna",
         "Kuldīga", "Sigulda", "Trakai", "Kazimierz Dolny", "Zakopane", "Piran", "Kotor", "Berat", "Ohrid",
         "Plovdiv", "Veliko Tarnovo", "Sighișoara", "Sibiu", "Eger", "Tokaj", "Mdina", "Gruyères", "Cochem",
         "Bamberg", "Colmar", "Saint-Malo", "Rocamadour", "Cuenca", "Ronda", "Albarracín", "Óbidos", "Monsaraz",
         "Tavira", "Polignano a Mare", "Matera", "Alberobello", "Cefalù", "Bled", "Mestia", "Sighnaghi", "Goreme",
         "Kaş", "Dahab", "Siwa", "Essaouira", "Stone Town", "Jinja", "Nyungwe", "Swakopmund",
         "Lüderitz", "Franschhoek", "Knysna", "Tofino", "Lunenburg", "Taos", "Moab", "Bisbee", "Puerto Viejo",
         "Valle de Bravo", "Mompox", "Salento", "Villa de Leyva", "Cafayate", "El Chaltén",
         "Puerto Natales", "Paraty", "Lençóis", "Tiradentes", "Colonia del Sacramento", "Punta del Diablo"]
SKIES = ["sunny", "light rain", "overcast", "scattered showers", "clear skies", "partly cloudy", "fog", "snow showers"]
W_T = ["Forecast for {c}?", "going to be wet in {c} today?", "What weather should I expect in {c}?",
       "Heading to {c} this afternoon - how's the weather looking?", "{c}: rain or shine today?",
       "Will I need a jacket in {c} today?"]
CLOCK = {  # each town's UTC offset in December
    "Cochem": "+01:00", "San Cristóbal de las Casas": "-06:00", "Puerto Viejo": "-06:00", "Dahab": "+02:00",
    "Chefchaouen": "+01:00", "Puerto Natales": "-03:00", "Plovdiv": "+02:00", "Akaroa": "+13:00", "Kaş": "+03:00",
    "Kuldīga": "+02:00", "Hoi An": "+07:00", "Kampot": "+07:00", "Leh": "+05:30", "Takayama": "+09:00",
    "Gyeongju": "+09:00", "Broome": "+08:00", "Kiruna": "+01:00", "Mestia": "+04:00", "Swakopmund": "+02:00",
    "Tofino": "-08:00", "Taos": "-07:00", "Paraty": "-03:00", "Salento": "-05:00", "Luang Namtha": "+07:00",
    "Hallstatt": "+01:00", "Sighnaghi": "+04:00", "Lunenburg": "-04:00", "Esperance": "+08:00"}
T_T = ["What's the time in {c} right now?", "clock check: {c}", "Is it late in {c} at the moment?",
       "Could you tell me the current time in {c}?", "My guide is in {c}. What time is it there?",
       "Time in {c} now?"]
n_w = n_t = 0
towns = [c for c in TOWNS if c not in CLOCK and not held(c)]
rng.shuffle(towns)
for c in towns[:10]:
    hi = rng.randint(-5, 33)
    sky = rng.choice([x for x in SKIES if (x == "snow showers") == (hi <= 2)])
    res = {"city": c, "date": "today", "summary": sky, "high_c": hi, "low_c": hi - rng.randint(4, 11)}
    n_w += add([c], rng.choice(W_T).format(c=c), [("get_weather_forecast", {"city": c})], [res],
               f"{sky.capitalize()} in {c} today: highs around {hi}°C, lows near {res['low_c']}°C.")
towns = [c for c in CLOCK if not held(c)]
rng.shuffle(towns)
for c in towns[:10]:
    res = {"city": c, "local_time": f"{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}", "utc_offset": CLOCK[c]}
    n_t += add([c], rng.choice(T_T).format(c=c), [("get_local_time", {"city": c})], [res],
               f"It is {res['local_time']} in {c} right now.")
print("forecasts", n_w, "local times", n_t, file=sys.stderr)

# --- 4. a place or a sight named, no live fact needed ----------------------------------------------
NO_CALL = [
    (["Chicago"], "What should I pack for three days in Chicago in October?", "Layers: a warm jacket, a sweater, comfortable walking shoes and an umbrella; October days can be mild or raw and windy."),
    (["Edinburgh"], "Packing list for a long weekend in Edinburgh?", "A waterproof jacket, layers, shoes with grip for the cobbles, a small umbrella and a plug adapter (type G)."),
    (["Marrakech"], "What do I wear in Marrakech to be respectful?", "Loose clothes that cover shoulders and knees; a light scarf helps in the medina and at religious sites."),
    (["Kyoto"], "What should I bring for a temple-hopping day in Kyoto?", "Shoes you can slip off, socks without holes, cash for entry fees, water and a small bag for your shoes."),
    (["Petra", "Siq", "Treasury"], "How long do I need to see Petra properly?", "Two days is ideal: one for the Siq, the Treasury and the Monastery, one for the High Place of Sacrifice and quieter trails."),
    (["Angkor Wat"], "Is it worth seeing sunrise at Angkor Wat?", "Yes, if you don't mind crowds: arrive by 5:00 and stand by the left pond; the temples are quieter right after."),
    (["Machu Picchu", "Andes", "Pachacuti"], "What is Machu Picchu?", "A 15th-century Inca citadel high in the Peruvian Andes, built for the emperor Pachacuti and rediscovered internationally in 1911."),
    (["Chichén Itzá", "El Castillo"], "Who built Chichén Itzá?", "The Maya, with Toltec influence; the city flourished from about 600 to 1200 AD, and El Castillo is its famous pyramid."),
    (["Borobudur", "Java"], "Tell me about Borobudur.", "A 9th-century temple in central Java, the world's largest Buddhist temple, with 2,672 relief panels and 504 Buddha statues."),
    (["Meteora", "Kalambaka"], "How do I visit the monasteries at Meteora?", "Base yourself in Kalambaka; six monasteries are open on staggered days, so check which close when, and cover shoulders and knees."),
    (["Cappadocia", "Derinkuyu", "Kaymaklı"], "Are the underground cities in Cappadocia worth it?", "Yes: Derinkuyu and Kaymaklı go several levels down; the passages are narrow, so skip them if you dislike tight spaces."),
    (["Alhambra", "Nasrid"], "Do I need to book the Alhambra in advance?", "Yes, well ahead in spring and summer: tickets sell out, and the Nasrid Palaces have a fixed entry time."),
    (["Great Wall", "Jiankou", "Gubeikou", "Mutianyu", "Badaling"], "Which section of the Great Wall is least crowded?", "Jiankou and Gubeikou are wild and quiet; Mutianyu is restored but far calmer than Badaling."),
    (["Uluru", "Anangu"], "Can you still climb Uluru?", "No: the climb closed in October 2019 out of respect for the Anangu; walk the 10 km base track instead."),
    (["Pompeii"], "How much time do I need at Pompeii?", "Three to four hours for the highlights; bring water and a hat, as there is little shade."),
    (["Taj Mahal"], "Is the Taj Mahal open on Fridays?", "No, it is closed to visitors on Fridays for prayers; go at sunrise on another day."),
    (["Dubai"], "What to pack for a week in Dubai in winter?", "Light clothes for the day, a jacket for cool evenings and the air-conditioning, modest clothes for malls and mosques, swimwear."),
    (["Lima", "Miraflores", "Barranco"], "Which neighbourhood should I stay in, in Lima?", "Miraflores or Barranco: both are walkable, near the coast and full of places to eat."),
    (["Iceland"], "What should I pack for Iceland in September?", "Waterproof jacket and trousers, warm layers, hiking boots, a hat and gloves, and swimwear for the hot springs."),
    (["Cairo", "Giza"], "Best way to see the pyramids at Giza?", "Go at opening time, hire a licensed guide or book a tour, and walk to the panorama point for the view of all nine."),
]
n = sum(add(names, q, answer=a) for names, q, a in NO_CALL)
print("no call", n, file=sys.stderr)
print("rows {} + {}".format(*rows.save()), file=sys.stderr)

"""world.py — the synthetic world wim-tiny learns to read, and the WiM prompts it answers.

Owns: the name pools, the fact templates, one sampled world per example, the
three question kinds (lookup, two-hop, tally), which sentences a margin must
copy, and the exact prompt texts the C pipeline renders (data/prompts/ with the
ChatML headers of src/chat.c), so training sees byte-for-byte what `wim run` feeds.

Invariants: a document is one fact per line ("Name verb object.\n"), so the
segmenter (a sentence ends at ".\n") cuts between lines and a segment tokenized
alone starts a line exactly as the whole document does. Every sampled world is a
pure function of its random.Random, so seeds reproduce documents exactly; the
evaluation draws its seeds from a namespace training never uses ("eval-...").
"""
import os
import random

HERE = os.path.dirname(os.path.abspath(__file__))
PROMPTS = os.path.join(HERE, "..", "prompts")

FIRST = """Aaron Abigail Adam Adrian Aisha Alan Albert Alice Amelia Amir Ana Andrew Anna Arthur
Beatrice Benjamin Bianca Boris Brian Bruno Caleb Camila Carl Carmen Caroline Cecilia Charles Chloe
Clara Colin Daniel Daria David Diana Dmitri Edgar Edith Elena Eli Elias Elise Emil Emma Eric Esther
Felix Fiona Frank Freya Gabriel George Gloria Grace Hannah Harold Hassan Hector Helen Henry Hugo
Ian Ida Igor Irene Isaac Ivan Jack Jacob James Jane Javier Jenna John Jonas Julia Karl Kate Kenji
Laura Leo Lena Leon Lily Linda Lucas Lucy Luis Mara Marco Maria Mark Martha Martin Maya Mei Miguel
Mila Nadia Nathan Nina Noah Nora Olga Oliver Omar Oscar Paul Pedro Peter Petra Priya Quinn Rachel
Rafael Rita Robert Rosa Ruth Samuel Sara Simon Sofia Sven Tara Teresa Thomas Tomas Uma Victor Vera
Walter Wendy Xavier Yara Yusuf Zara Zoe""".split()

LAST = """Abbott Adams Alvarez Andersen Baker Barnes Becker Bell Bishop Blake Brooks Brown Burke Campbell
Carter Castro Chen Clarke Cole Collins Cooper Cruz Davies Dawson Diaz Dixon Duarte Evans Fischer
Fleming Ford Foster Fox Garcia Gill Gomez Graham Grant Gray Green Hall Hansen Harris Hayes Hill
Holm Howard Hughes Hunt Ivanov Jensen Johnson Jones Kaur Kelly Khan Kim King Klein Knight Koch
Kowalski Lambert Lane Larsen Lee Lewis Lopez Marsh Martin Mason Meyer Miller Moore Morgan Murphy
Nash Nelson Novak Olsen Ortiz Owens Park Parker Patel Perez Petrov Price Quinn Reed Reyes Rossi
Russell Santos Schmidt Scott Shaw Silva Singh Smith Stone Sullivan Tanaka Taylor Torres Turner
Vance Vargas Wagner Walker Ward Watson Weber West White Wolf Wood Wright Young Zhang""".split()

CITIES = """Amsterdam Athens Bergen Berlin Bilbao Bologna Boston Bristol Brussels Cairo Chicago Cork
Denver Dublin Geneva Genoa Hamburg Helsinki Kyoto Lagos Leeds Lima Lisbon London Lyon Madrid Malmo
Manila Milan Montreal Mumbai Munich Nairobi Naples Osaka Oslo Ottawa Paris Porto Prague Quebec Riga
Rome Seattle Seoul Sevilla Sydney Tallinn Tokyo Toronto Turin Valencia Vienna Vilnius Warsaw
Zagreb Zurich""".split()

CO_HEAD = """Acme Apex Arrow Aurora Beacon Birch Blue Bright Cedar Cobalt Comet Copper Crystal Delta Echo
Ember Falcon Harbor Iron Jade Lark Lotus Maple Meadow Nova Oak Orbit Pine Quartz Raven River Sierra
Silver Solar Summit Swift Tiger Vertex Willow Zenith""".split()
CO_TAIL = "Labs Works Systems Foods Motors Bank Press Studios Energy Textiles Airlines Books".split()

COLOURS = "red blue green yellow black white orange purple brown grey pink silver".split()
OBJECTS = """bicycle boat camera car clock desk drum guitar hat kettle kite lamp piano radio
scooter sofa tent trumpet umbrella violin watch wagon""".split()
FOODS = """apples bread cheese cherries coffee curry dumplings figs honey lemons noodles olives
pancakes pasta pears plums rice salad soup sushi tacos tea tomatoes waffles""".split()
PETS = "cat dog parrot rabbit turtle hamster goat pony ferret canary".split()

def article(noun):
    return "an" if noun[0] in "aeiou" else "a"


PEOPLE_REL = ("lives", "works", "born", "owns", "likes", "pet")
COMPANY_REL = ("based", "founded")


# Every fact line is a list item: "- " puts a space before the name, so a name is the
# same tokens in a fact, a question and a margin (see tokenizer.py), and copying it is
# plain token copying.
BULLET = "- "
PERSON_TEMPLATES = {k: BULLET + t for k, t in {
    "lives": "{name} lives in {v}.",
    "works": "{name} works for {v}.",
    "born": "{name} was born in {v}.",
    "owns": "{name} owns {a} {v}.",
    "likes": "{name} likes {v}.",
    "pet": "{name} has a pet {v}.",
    "vote": "{name} voted for {v}.",
}.items()}


def person_sentence(p, rel):
    v = p[rel]
    return PERSON_TEMPLATES[rel].format(name=p["name"], v=v, a=article(v))


def company_sentence(c, rel):
    if rel == "based":
        return f"{BULLET}{c['name']} is based in {c['based']}."
    return f"{BULLET}{c['name']} was founded in {c['founded']}."


LOOKUP_Q = {
    "lives": ("Where does {} live?", "lives"),
    "works": ("Who does {} work for?", "works"),
    "born": ("When was {} born?", "born"),
    "owns": ("What does {} own?", "owns"),
    "likes": ("What does {} like?", "likes"),
    "pet": ("What pet does {} have?", "pet"),
    "based": ("Where is {} based?", "based"),
    "founded": ("When was {} founded?", "founded"),
}
TWO_HOP_Q = {
    "based": "Where is the company that {} works for based?",
    "founded": "When was the company that {} works for founded?",
}
TALLY_Q = "Which colour got the most votes?"


def random_company(rng, name):
    return {"name": name, "based": rng.choice(CITIES), "founded": str(rng.randint(1850, 2020))}


def random_person(rng, name, companies):
    """A person's facts, drawn in a fixed order (every world's seed depends on it)."""
    return {
        "name": name,
        "lives": rng.choice(CITIES),
        "works": rng.choice(companies)["name"],
        "born": str(rng.randint(1930, 2010)),
        "owns": f"{rng.choice(COLOURS)} {rng.choice(OBJECTS)}",
        "likes": rng.choice(FOODS),
        "pet": rng.choice(PETS),
    }


class World:
    """People and companies with unique names; each fact is stated at most once."""

    def __init__(self, rng, n_people, n_companies):
        self.rng = rng
        names = set()
        while len(names) < n_people:
            names.add(f"{rng.choice(FIRST)} {rng.choice(LAST)}")
        cos = set()
        while len(cos) < n_companies:
            cos.add(f"{rng.choice(CO_HEAD)} {rng.choice(CO_TAIL)}")
        self.companies = [random_company(rng, n) for n in sorted(cos)]
        rng.shuffle(self.companies)
        self.people = [random_person(rng, n, self.companies) for n in sorted(names)]
        rng.shuffle(self.people)
        self.company_by_name = {c["name"]: c for c in self.companies}

    def facts(self, p_fact=0.6):
        """Random subset of all facts as (sentence, kind, subject, rel)."""
        out = []
        for p in self.people:
            for rel in PEOPLE_REL:
                if self.rng.random() < p_fact:
                    out.append((person_sentence(p, rel), "person", p["name"], rel))
        for c in self.companies:
            for rel in COMPANY_REL:
                if self.rng.random() < p_fact:
                    out.append((company_sentence(c, rel), "company", c["name"], rel))
        self.rng.shuffle(out)
        return out


class Question:
    """A question, its answer, and the facts a reader needs.

    needed: the sentences that answer it, in the order they must be read
    (two-hop: bridge first). bridge: the sentence that makes the second hop
    recognisable (two-hop only)."""

    def __init__(self, kind, text, answer, needed, bridge=None, subject=None, rel=None):
        self.kind, self.text, self.answer = kind, text, answer
        self.needed, self.bridge, self.subject, self.rel = needed, bridge, subject, rel

    def relevant(self, sentence, bridge_known):
        """Whether a margin copies this sentence (bridge_known: the bridge fact was read)."""
        if self.kind == "tally":
            return " voted for " in sentence
        if self.kind == "lookup":
            return sentence in self.needed
        if sentence == self.bridge:
            return True
        return bridge_known and sentence == self.needed[1]


def make_question(world, kind, rng):
    if kind == "lookup":
        rel = rng.choice(PEOPLE_REL + COMPANY_REL)
        if rel in COMPANY_REL:
            c = rng.choice(world.companies)
            s = company_sentence(c, rel)
            return Question("lookup", LOOKUP_Q[rel][0].format(c["name"]), c[rel], [s], subject=c["name"], rel=rel)
        p = rng.choice(world.people)
        s = person_sentence(p, rel)
        ans = p[rel]
        return Question("lookup", LOOKUP_Q[rel][0].format(p["name"]), ans, [s], subject=p["name"], rel=rel)
    if kind == "twohop":
        rel = rng.choice(COMPANY_REL)
        p = rng.choice(world.people)
        c = world.company_by_name[p["works"]]
        bridge = person_sentence(p, "works")
        return Question("twohop", TWO_HOP_Q[rel].format(p["name"]), c[rel],
                        [bridge, company_sentence(c, rel)], bridge=bridge, subject=p["name"], rel=rel)
    if kind == "tally":
        colours = rng.sample(COLOURS, rng.randint(2, 3))
        win = rng.randint(3, 5)
        counts = [win] + [rng.randint(1, win - 2) for _ in colours[1:]]
        if sum(counts) > len(world.people):  # a small world: two colours at most (<= 8 votes)
            colours, counts = colours[:2], counts[:2]
        voters = rng.sample(world.people, sum(counts))
        needed = []
        for colour, k in zip(colours, counts):
            for _ in range(k):
                v = voters.pop()
                needed.append(PERSON_TEMPLATES["vote"].format(name=v["name"], v=colour))
        rng.shuffle(needed)
        return Question("tally", TALLY_Q, colours[0], needed)
    raise ValueError(kind)


def clean_facts(world, q, facts):
    """Facts minus those that would contradict or duplicate the question's."""
    drop = set(q.needed)
    out = []
    for f in facts:
        s, kind, subj, rel = f
        if s in drop:
            continue
        if q.kind == "tally" and " voted for " in s:
            continue
        out.append(f)
    return [f[0] for f in out]


# --- prompts, exactly as src/wim.c renders them with the ChatML family ---

USER_HEADER = "<|im_start|>user\n"
GENERATION_HEADER = "<|im_end|>\n<|im_start|>assistant\n"
END = "<|im_end|>"
NOTHING = "Nothing relevant."
YES_REPLY = "YES#The notes help answer the question."
NO_REPLY = "NO#The notes say nothing about the question."
NOTES_HEADER = "Notes so far:\n"  # src/wim.c, --notes-in-extraction


def _template(name):
    with open(os.path.join(PROMPTS, name), encoding="utf-8") as f:
        return f.read()


TEMPLATES = {k: _template(f) for k, f in [("system", "system_message.txt"),
                                          ("extract", "extractive_summary.txt"),
                                          ("classify", "classification.txt"),
                                          ("answer", "final_answer.txt")]}


def render(kind, query="", answer="", margins=""):
    t = TEMPLATES[kind]
    for k, v in (("{user_header}", USER_HEADER), ("{generation_header}", GENERATION_HEADER),
                 ("{query}", query), ("{answer}", answer), ("{margins}", margins)):
        t = t.replace(k, v)
    return t


def join_notes(margins):
    """src/wim.c join_margins with --dedupe-notes: kept margins, one line each, repeats dropped."""
    seen, out = set(), []
    for m in margins:
        for line in m.split("\n"):
            if line and line not in seen:
                seen.add(line)
                out.append(line + "\n")
    return "".join(out)


def same_answer(got, expected):
    """Whether a reply states the expected answer: equal once lower-cased and stripped of
    surrounding space and punctuation (the evaluation's and the tests' rule)."""
    def norm(t):
        return t.strip().strip(".!?,;:'\"` \n").strip().lower()
    return norm(got) == norm(expected)


def make_document(rng, n_sentences, kind):
    """A whole document of n_sentences lines with one question (evaluation, demo).

    The needed facts sit at random lines (two-hop: bridge before the second hop,
    at any distance). Returns (text, Question)."""
    n_people = max(8, n_sentences // 4 + 4)
    world = World(rng, n_people, max(4, n_people // 6))
    q = make_question(world, kind, rng)
    lines = []
    while len(lines) < n_sentences:
        lines += clean_facts(world, q, world.facts())
    lines = lines[: max(n_sentences - len(q.needed), 1)]
    slots = sorted(rng.sample(range(len(lines) + len(q.needed)), len(q.needed)))
    needed = list(q.needed)
    for s in slots:
        lines.insert(s, needed.pop(0))
    return "".join(l + "\n" for l in lines), q

"""samples.py — training examples in the exact token streams `wim run` builds.

Owns: the three formats (extraction, classification, final answer), each as token ids,
RoPE positions, a loss weight per token and the attention geometry of the engine's
streaming KV cache (pinned prefix, window of recent cells, evicted cells leaving a
position gap).

Invariants: every example starts with BOS and the system prompt exactly as
src/wim.c prefills them; document text, notes and prompts are tokenized as separate
pieces because the pipeline feeds them separately; targets end with <|im_end|>, the
token that stops generation. An example's randomness comes only from its rng.
"""
import random

import world as W
from tokenizer import BOS, IM_END

KV_CELLS = 512  # the KV capacity wim-tiny runs with (--kv-capacity 512 --stream)
MAX_GAP = 40000  # evicted tokens before a mid-stream window (32k documents and more)
NEIGHBOUR_SHARE = 0.4  # windows with namesakes' lines, and with the subject's other facts
DOC_WEIGHT = 1.0  # loss weight on document lines; predicting a name where it appeared
# before is the language-model signal that grows copying (induction) heads


class Example:
    """Token ids, RoPE positions, loss weights and branch ids. Branch 0 is the shared
    trunk (BOS, system prompt, document); each branch b > 0 continues the trunk at the
    same positions and sees only the trunk and itself, so one document read serves
    several prompts exactly as separate runs would (the attention mask says so)."""

    def __init__(self):
        self.ids, self.pos, self.w, self.branch = [], [], [], []
        self.pin = 0
        self.trunk_end = 0  # position after the trunk's last token
        self.kinds = {}  # branch -> its target: "extract" (lines to copy), "nothing"
        # (an extraction whose reply is `Nothing relevant.`), "answer" or "classify"

    def add(self, ids, weight=0.0, gap=0, branch=0):
        if branch and (not self.branch or self.branch[-1] != branch):
            start = self.trunk_end + gap
        else:
            start = (self.pos[-1] + 1 if self.pos else 0) + gap
        self.ids += ids
        self.pos += range(start, start + len(ids))
        self.w += [weight] * len(ids)
        self.branch += [branch] * len(ids)
        if branch == 0:
            self.trunk_end = start + len(ids)


def prefix(tok):
    e = Example()
    e.add([BOS] + tok.encode(W.render("system"), special=True))
    e.pin = len(e.ids)
    return e


def filler(world, q, rng):
    lines = W.clean_facts(world, q, world.facts())
    while len(lines) < 40:
        lines += W.clean_facts(world, q, world.facts())
    return lines


def window(tok, lines, inserts, budget, rng, mid_stream):
    """Document lines filling about `budget` tokens with `inserts` at random places.

    Returns (token ids, complete lines in order). Mid-stream: the first line is cut
    inside (the ring evicted its start), so it is not a complete line."""
    chosen, n = [], 0
    for l in lines:
        k = len(tok.encode(l + "\n"))
        if n + k > budget:
            break
        chosen.append(l)
        n += k
    for s in inserts:
        chosen.insert(rng.randint(0, len(chosen)), s)
    ids_per = [tok.encode(l + "\n") for l in chosen]
    while chosen and sum(map(len, ids_per)) > budget + (8 if mid_stream else 0):
        for i, l in enumerate(chosen):  # drop filler, keep inserts
            if l not in inserts:
                del chosen[i], ids_per[i]
                break
        else:
            break
    complete = list(chosen)
    ids = [t for x in ids_per for t in x]
    if mid_stream and ids_per:
        cut = rng.randint(1, len(ids_per[0]) - 1) if len(ids_per[0]) > 1 else 1
        ids = ids[cut:]
        complete = complete[1:]
    return ids, complete


def place_order(q, lines_in_window):
    """Two-hop needs the bridge before the second hop: swap them if drawn the other way."""
    if q.kind == "twohop" and q.bridge in lines_in_window and q.needed[1] in lines_in_window:
        a, b = lines_in_window.index(q.bridge), lines_in_window.index(q.needed[1])
        if a > b:
            lines_in_window[a], lines_in_window[b] = lines_in_window[b], lines_in_window[a]
    return lines_in_window


def draw_question(rng):
    kind = rng.choices(["lookup", "twohop", "tally"], [0.5, 0.25, 0.25])[0]
    n_people = rng.randint(10, 40)
    world = W.World(rng, n_people, rng.randint(3, 8))
    return world, W.make_question(world, kind, rng)


def extraction_scenario(q, world, rng):
    """What the window holds for q (inserts) and which notes the margin step is shown."""
    inserts, notes = [], []
    r = rng.random()
    if q.kind == "lookup":
        if r < 0.55:
            inserts = list(q.needed)
        if rng.random() < 0.3:
            notes = list(q.needed) if rng.random() < 0.5 else [rng.choice(filler(world, q, rng))]
    elif q.kind == "twohop":
        if r < 0.3:
            inserts = [q.bridge]
        elif r < 0.5:
            inserts = list(q.needed)
        elif r < 0.8:
            inserts, notes = [q.needed[1]], [q.bridge]
        elif r < 0.9:
            inserts = [q.needed[1]]
    else:
        votes = q.needed
        inserts = rng.sample(votes, rng.randint(0, min(4, len(votes))))
        others = [v for v in votes if v not in inserts]
        if others and rng.random() < 0.5:
            notes = rng.sample(others, rng.randint(1, len(others)))
    return inserts, notes


def namesake_lines(q, world, rng):
    """Lines about made-up neighbours whose name starts like the subject's (the same
    first name, or a company's first word), mostly with the asked relation: what a long
    document holds (1,004 people over 120 first names at 32k tokens) and what the
    margins of run 6 took for the subject's own line."""
    if q.subject is None:
        return []
    taken = {p["name"] for p in world.people} | {c["name"] for c in world.companies}
    head, company = q.subject.split()[0], q.subject in world.company_by_name
    out = []
    for _ in range(rng.randint(1, 3)):
        name = f"{head} {rng.choice(W.CO_TAIL if company else W.LAST)}"
        if name in taken:
            continue
        taken.add(name)
        if company:
            c = W.random_company(rng, name)
            rel = q.rel if rng.random() < 0.7 else rng.choice(W.COMPANY_REL)
            out.append(W.company_sentence(c, rel))
        else:
            p = W.random_person(rng, name, world.companies)
            asked = "works" if q.kind == "twohop" else q.rel
            out.append(W.person_sentence(p, asked if rng.random() < 0.7 else rng.choice(W.PEOPLE_REL)))
    return out


def subject_lines(q, world, rng):
    """The subject's other facts (true ones): the lines among which a margin must pick
    the asked relation (`lives in` over `owns` for *Where does … live?*)."""
    if q.subject is None:
        return []
    if q.subject in world.company_by_name:
        c = world.company_by_name[q.subject]
        return [W.company_sentence(c, r) for r in W.COMPANY_REL if r != q.rel]
    p = next(p for p in world.people if p["name"] == q.subject)
    asked = "works" if q.kind == "twohop" else q.rel
    others = [r for r in W.PEOPLE_REL if r != asked]
    return [W.person_sentence(p, r) for r in rng.sample(others, rng.randint(1, 3))]


def distractors(q, world, rng):
    """Lines an extraction window gets besides the scenario's: namesakes' and the
    subject's other facts, each in NEIGHBOUR_SHARE of the windows."""
    out = []
    if rng.random() < NEIGHBOUR_SHARE:
        out += namesake_lines(q, world, rng)
    if rng.random() < NEIGHBOUR_SHARE:
        out += subject_lines(q, world, rng)
    return out


def margin_for(q, complete, notes):
    bridge_known = q.kind == "twohop" and q.bridge in notes
    margin = []
    for l in complete:
        if q.kind == "twohop" and l == q.bridge:
            bridge_known = True
        if q.relevant(l, bridge_known):
            margin.append(l)
    return "\n".join(margin) if margin else W.NOTHING


def answer_notes(q, world, rng):
    notes = list(q.needed)
    if rng.random() < 0.3:
        notes.insert(rng.randint(0, len(notes)), rng.choice(filler(world, q, rng)))
    if rng.random() < NEIGHBOUR_SHARE:  # kept lines about namesakes: answer the subject's
        for s in namesake_lines(q, world, rng):
            notes.insert(rng.randint(0, len(notes)), s)
    if q.kind == "lookup" and rng.random() < 0.2:
        notes = notes + notes  # duplicates, as without --dedupe-margins
    return notes


def reading(tok, rng, n_questions=4, short=False):
    """One document window, then a branch per prompt: an extraction for each question
    and a final answer for some. Questions about one world never conflict: at most one
    tally, and no filler line restates a needed fact. short: a window of 30-150 tokens
    from the start of a document (few distractors: where finding and copying a line is
    learned first)."""
    n_people = rng.randint(16, 40)
    world = W.World(rng, n_people, rng.randint(3, 8))
    kinds = ["tally" if rng.random() < 0.25 else rng.choice(["lookup", "lookup", "twohop"])]
    kinds += [rng.choice(["lookup", "lookup", "twohop"]) for _ in range(n_questions - 1)]
    qs = [W.make_question(world, k, rng) for k in kinds]
    branches, inserts = [], []
    for q in qs:
        ins, notes = extraction_scenario(q, world, rng)
        ins = ins + [s for s in distractors(q, world, rng) if s not in ins]
        inserts += [s for s in ins if s not in inserts]
        notes_ids = tok.encode(W.NOTES_HEADER + W.join_notes(notes)) if notes else []
        branches.append(("extract", q, notes, notes_ids + tok.encode(W.render("extract", query=q.text), special=True)))
        if rng.random() < 0.5:
            wim_mode = rng.random() < 0.6
            if not wim_mode:
                inserts += [s for s in q.needed if s not in inserts]
            notes = answer_notes(q, world, rng) if wim_mode else []
            text = "".join(l + "\n" for l in notes)
            branches.append(("answer", q, wim_mode, tok.encode(W.render("answer", query=q.text, margins=text), special=True)))
    e = prefix(tok)
    longest = max(len(b[3]) for b in branches)
    room = KV_CELLS - e.pin - longest
    mid_stream = rng.random() < 0.5 and all(b[0] == "extract" or b[2] for b in branches)
    budget = room if mid_stream else rng.randint(min(60, room), room)
    if short:
        mid_stream, budget = False, min(room, 30 + budget % 121)
    needed = {s for q in qs for s in q.needed}
    lines = [l for l in filler(world, qs[0], rng) if l not in needed and l not in inserts]
    doc_ids, complete = window(tok, lines, inserts, budget, rng, mid_stream)
    for q in qs:
        complete = place_order(q, complete)
    if not mid_stream:
        doc_ids = [t for l in complete for t in tok.encode(l + "\n")]
    e.add(doc_ids, DOC_WEIGHT, gap=rng.randint(1, MAX_GAP) if mid_stream else 0)
    for b, (kind, q, extra, prompt_ids) in enumerate(branches, 1):
        if kind == "extract":
            target = margin_for(q, complete, extra)
        else:
            if not extra and not all(s in complete for s in q.needed):
                continue  # llm-style answer needs every fact in view
            target = " " + q.answer  # the form the answer has after a space in the document
        e.add(prompt_ids, branch=b)
        e.add(tok.encode(target) + [IM_END], 1.0, branch=b)
        e.kinds[b] = "nothing" if target == W.NOTHING else kind
    return e


def relevant_note(q, world, rng):
    if q.kind == "tally":
        return "\n".join(rng.sample(q.needed, rng.randint(1, len(q.needed))))
    if q.kind == "twohop":
        c = rng.choice(world.companies)
        second = W.company_sentence(c, q.rel)
        return rng.choice([q.bridge, q.needed[1], second, q.bridge + "\n" + q.needed[1]])
    return q.needed[0]


def helps(q, line):
    """Whether a note line helps with q as the classifier is taught to judge it."""
    if q.kind == "tally":
        return " voted for " in line
    if q.kind == "lookup":
        return line in q.needed
    second_hop = " is based in " if q.rel == "based" else " was founded in "
    return line == q.bridge or second_hop in line


def irrelevant_note(q, world, rng):
    if rng.random() < 0.4:
        return W.NOTHING
    lines = [l for l in filler(world, q, rng) if not helps(q, l)]
    if q.kind == "lookup":
        # same subject, another fact: the hardest negative
        same = [l for l in lines if l.startswith(W.BULLET + q.subject + " ")]
        if same and rng.random() < 0.5:
            return rng.choice(same)
    return "\n".join(rng.sample(lines, rng.randint(1, 3)))


def classification(tok, rng):
    world, q = draw_question(rng)
    yes = rng.random() < 0.5
    if rng.random() < 0.25:  # rag: the classifier judges a whole segment
        lines = filler(world, q, rng)[: rng.randint(4, 16)]
        if yes:
            for s in (q.needed if q.kind != "tally" else q.needed[: rng.randint(1, 3)]):
                lines.insert(rng.randint(0, len(lines)), s)
            if q.kind == "twohop" and rng.random() < 0.5:
                lines.remove(q.needed[1])
        note = "".join(l + "\n" for l in lines)
    else:
        note = relevant_note(q, world, rng) if yes else irrelevant_note(q, world, rng)
        if not yes and rng.random() < NEIGHBOUR_SHARE:  # a namesake's line does not help
            note = "\n".join(namesake_lines(q, world, rng)) or note
        if yes and rng.random() < 0.2:
            extra = irrelevant_note(q, world, rng)
            if extra != W.NOTHING:
                note = note + "\n" + extra
    e = Example()
    e.add([BOS] + tok.encode(W.render("classify", query=q.text, answer=note), special=True))
    e.pin = len(e.ids)
    e.add(tok.encode(W.YES_REPLY if yes else W.NO_REPLY) + [IM_END], 1.0)
    e.kinds[0] = "classify"
    return e


def random_piece(tok, rng):
    """A uniformly drawn ordinary piece: no control or byte tokens."""
    return rng.randrange(tok.id[tok.base[0]], len(tok))


def repeat(tok, rng):
    """Induction bootstrap: random vocabulary tokens, then the same tokens again, loss
    on the repeat, at offsets of 8-64 tokens so that no fixed-offset (positional) head can
    solve it. With nothing else to predict, 2-3 layers of width 128 grow copying heads in
    a sudden jump after 550-900 steps (measured; 4 layers took longer), where on the
    world's text alone every run sat on a plateau of frequent-word guessing; the world's
    tasks then reuse the heads."""
    x = [random_piece(tok, rng) for _ in range(rng.randint(8, 64))]
    e = Example()
    e.add([BOS] + x)
    e.pin = 1
    e.add(x, 1.0)
    return e


def copying(tok, rng):
    """The copy warm-up: a few document lines, then a run of them again, in order, under
    the notes header. Every repeated token after the first can only be predicted by
    finding its line above: the induction mechanism every margin needs, with dense
    signal and no question to understand yet. The document itself weighs little here:
    its names are unpredictable, and their gradients would drown the copying signal."""
    world = W.World(rng, rng.randint(6, 24), rng.randint(2, 6))
    lines = [f[0] for f in world.facts()][: rng.randint(4, 24)]
    e = prefix(tok)
    e.add([t for l in lines for t in tok.encode(l + "\n")], 0.1)
    e.add(tok.encode(W.NOTES_HEADER))
    start = rng.randrange(len(lines))
    for l in lines[start : start + rng.randint(1, len(lines))]:
        e.add(tok.encode(l + "\n"), 1.0)
    return e


def records(tok, rng):
    """Lookups by a three-token key, stripped to the mechanism. Records `a b r c` (a
    person's two name tokens, one of four relation tokens, a value), each person with
    several relations, then queries `a b r` -> c, loss on c only. A head that matches
    only the previous token cannot answer: `r` precedes a value in every fourth record.
    This is what copying `- Ana Silva has a pet turtle.` needs after `pet`, and what a
    model that has learnt plain repetition still guesses (measured in run 5 at step
    3,750: 12 of 12 held-out values after `pet` wrong)."""
    nl = tok.encode("\n")
    rels = [random_piece(tok, rng) for _ in range(4)]
    facts = []
    for _ in range(rng.randint(6, 16)):
        a, b = random_piece(tok, rng), random_piece(tok, rng)
        facts += [(a, b, r, random_piece(tok, rng)) for r in rng.sample(rels, rng.randint(1, 4))]
    rng.shuffle(facts)
    e = Example()
    e.add([BOS])
    e.pin = 1
    for f in facts:
        e.add(list(f) + nl)
    for a, b, r, c in rng.sample(facts, min(len(facts), rng.randint(8, 16))):
        e.add([a, b, r])
        e.add([c], 1.0)
        e.add(nl)
    return e


KINDS = {"read": reading, "classify": classification}

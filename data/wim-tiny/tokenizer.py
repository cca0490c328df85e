"""tokenizer.py — wim-tiny's vocabulary: a byte-fallback BPE learned over the world's text,
stored as a SentencePiece-style ("llama") vocabulary so the C loader reads it unchanged.

Owns: training the merges (train), encoding exactly as src/tokenizer_spm.c does
(encode), and the GGUF token arrays (gguf_arrays).

Invariants: a word merges with the space before it, so it is one piece wherever a
space precedes it (the world's fact lines start with "- " for that reason); a piece
carries U+2581 only as its first character and never contains a newline or a digit
after another character, so SPM merging never crosses a space, a line break or two
digits; that is why encoding chunk by chunk (split before each U+2581 and around each
newline) equals encoding the whole text. Characters outside the
vocabulary become <0xNN> byte tokens, as in SentencePiece. No space prefix is added.
"""
import json
import re
from collections import Counter

SPACE = "\u2581"
SPECIALS = ["<unk>", "<s>", "</s>", "<|im_start|>", "<|im_end|>"]
UNK, BOS, EOS, IM_START, IM_END = range(5)
TYPE_NORMAL, TYPE_UNKNOWN, TYPE_CONTROL, TYPE_BYTE = 1, 2, 3, 6
UNIT = re.compile(SPACE + r"?[A-Za-z]+|" + SPACE + r"?[0-9]|" + SPACE + r"?[^A-Za-z0-9\s" + SPACE + r"]+|" + SPACE)
CHUNK = re.compile(SPACE + "?[^" + SPACE + "\n]*|\n")
SPECIAL_RE = re.compile("(" + "|".join(re.escape(s) for s in SPECIALS[3:]) + ")")


def _mergeable(a, b):
    if "\n" in a or "\n" in b:
        return False
    if any(c.isdigit() for c in b) or any(c.isdigit() for c in a):
        return a == SPACE and len(b) == 1 and b.isdigit()
    return not (SPACE in b)


def train(texts, vocab_size):
    """Learns merges over the texts until the vocabulary has vocab_size entries."""
    units = Counter()
    chars = set()
    for t in texts:
        t = t.replace(" ", SPACE)
        for u in UNIT.findall(t):
            units[u] += 1
        chars.update(c for c in t if c != "\n")
    base = sorted(c for c in chars if ord(c) >= 32)
    words = {tuple(u): n for u, n in units.items()}
    merges = []
    budget = vocab_size - len(SPECIALS) + 3 - 256 - len(base)
    while len(merges) < budget:
        pairs = Counter()
        for w, n in words.items():
            for a, b in zip(w, w[1:]):
                if _mergeable(a, b):
                    pairs[a, b] += n
        if not pairs:
            break
        (a, b), n = max(pairs.items(), key=lambda kv: (kv[1], kv[0]))
        if n < 2:
            break
        merges.append(a + b)
        nw = {}
        for w, c in words.items():
            out, i = [], 0
            while i < len(w):
                if i + 1 < len(w) and w[i] == a and w[i + 1] == b:
                    out.append(a + b)
                    i += 2
                else:
                    out.append(w[i])
                    i += 1
            nw[tuple(out)] = nw.get(tuple(out), 0) + c
        words = nw
    return Tokenizer(base, merges)


class Tokenizer:
    def __init__(self, base, merges):
        self.pieces = list(SPECIALS) + [f"<0x{b:02X}>" for b in range(256)] + list(base)
        self.scores = [0.0] * len(self.pieces)
        self.types = [TYPE_UNKNOWN, TYPE_CONTROL, TYPE_CONTROL, TYPE_CONTROL, TYPE_CONTROL]
        self.types += [TYPE_BYTE] * 256 + [TYPE_NORMAL] * len(base)
        seen = set(self.pieces)
        for rank, m in enumerate(merges):
            if m in seen:
                continue
            seen.add(m)
            self.pieces.append(m)
            self.scores.append(-float(rank + 1))
            self.types.append(TYPE_NORMAL)
        self.base, self.merges = base, merges
        self.id = {p: i for i, p in enumerate(self.pieces)}
        self.cache = {}

    def __len__(self):
        return len(self.pieces)

    def _chunk(self, s):
        ids = self.cache.get(s)
        if ids is not None:
            return ids
        sym = list(s)
        while len(sym) > 1:
            best, at = None, -1
            for i in range(len(sym) - 1):
                j = self.id.get(sym[i] + sym[i + 1])
                if j is not None and self.types[j] == TYPE_NORMAL:
                    sc = self.scores[j]
                    if best is None or sc > best:
                        best, at = sc, i
            if at < 0:
                break
            sym[at : at + 2] = [sym[at] + sym[at + 1]]
        ids = []
        for p in sym:
            j = self.id.get(p)
            if j is not None and self.types[j] == TYPE_NORMAL:
                ids.append(j)
            else:
                ids += [self.id[f"<0x{b:02X}>"] for b in p.encode("utf-8")]
        self.cache[s] = ids
        return ids

    def encode(self, text, special=False):
        """Token ids of text (no BOS); special=True parses <|im_start|> and <|im_end|>."""
        parts = SPECIAL_RE.split(text) if special else [text]
        out = []
        for part in parts:
            if special and part in SPECIALS:
                out.append(self.id[part])
                continue
            for c in CHUNK.findall(part.replace(" ", SPACE)):
                if c:
                    out += self._chunk(c)
        return out

    def decode(self, ids):
        bs = bytearray()
        for i in ids:
            p = self.pieces[i]
            if self.types[i] == TYPE_BYTE:
                bs.append(int(p[3:5], 16))
            elif self.types[i] == TYPE_NORMAL:
                bs += p.replace(SPACE, " ").encode("utf-8")
        return bs.decode("utf-8", errors="replace")

    def save(self, path):
        with open(path, "w", encoding="utf-8") as f:
            json.dump({"base": self.base, "merges": self.merges}, f, ensure_ascii=False, indent=0)

    @staticmethod
    def load(path):
        with open(path, encoding="utf-8") as f:
            d = json.load(f)
        return Tokenizer(d["base"], d["merges"])

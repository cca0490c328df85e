#!/usr/bin/env python3
"""embed.py — writes src/prompts_default.c from the templates in this folder.

The .txt files are the source of truth; the C file is generated so the binary
works from any directory, and it is committed so building needs no Python.
tests/test_prompts.c fails when the two differ. Run from the repository root:

    python3 data/prompts/embed.py > src/prompts_default.c
"""
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
FILES = ["system_message.txt", "extractive_summary.txt", "classification.txt", "final_answer.txt"]


def c_literal_lines(data):
    """The bytes as C string literals, one per template line (so diffs stay readable)."""
    out, cur, prev = [], [], None
    for b in data:
        ch = chr(b)
        if ch == "\\":
            cur.append("\\\\")
        elif ch == '"':
            cur.append('\\"')
        elif ch == "\n":
            cur.append("\\n")
        elif ch == "\t":
            cur.append("\\t")
        elif ch == "?" and prev == "?":
            cur.append("\\?")  # no trigraphs: gcc -std=c11 translates them
        elif 0x20 <= b < 0x7F:
            cur.append(ch)
        else:
            cur.append("\\%03o" % b)  # octal takes at most 3 digits: never eats what follows
        prev = ch
        if ch == "\n":
            out.append('"' + "".join(cur) + '"')
            cur = []
    if cur or not out:
        out.append('"' + "".join(cur) + '"')
    return out


def main():
    w = sys.stdout.write
    w("/*\n * prompts_default.c — the built-in prompt templates, GENERATED from the .txt files in\n"
      " * data/prompts/ by data/prompts/embed.py: do not edit; tests/test_prompts.c checks that\n"
      " * they match.\n */\n")
    w('#include "prompts.h"\n\n')
    w("/* One literal per template line, kept as the generator writes them. */\n/* clang-format off */\n")
    w("const char *const wim_prompt_defaults[WIM_PROMPT_COUNT] = {\n")
    for name in FILES:
        with open(os.path.join(HERE, name), "rb") as f:
            data = f.read()
        if b"\0" in data:
            sys.exit("embed.py: %s contains a NUL byte" % name)
        w("    /* %s */\n" % name)
        lines = c_literal_lines(data)
        for i, line in enumerate(lines):
            w("    %s%s\n" % (line, "," if i == len(lines) - 1 else ""))
    w("};\n/* clang-format on */\n")


if __name__ == "__main__":
    main()

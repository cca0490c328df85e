/*
 * verdict.h — reading a margin classifier's text output as a verdict.
 *
 * Owns: the rule that turns the classification prompt's reply ("YES#reason",
 * "NO#reason", or whatever a small model writes instead) into relevant / not.
 * No model here: `--classify generate` decodes up to --classify-tokens tokens
 * and hands the text to one of these functions.
 *
 * Invariants: both rules are pure functions of the text (no allocation, no
 * state, any length, any bytes); text NULL reads as "". The paper's rule is the
 * default and is CASE-SENSITIVE, exactly as the reference's
 * `endswith("YES")`: "yes#..." is not relevant, and neither is "YES." (the
 * period is part of what must end with YES). The lenient rule is an option.
 */
#ifndef WIM_VERDICT_H
#define WIM_VERDICT_H

/* The paper's rule: remove every "```" (left to right, non-overlapping, as Python's
 * str.replace), strip whitespace (Python's str.isspace set, Unicode spaces included), cut at the
 * first '#', strip again; relevant iff what remains ends with "YES" (case-sensitive, so
 * "EYES#" counts and "yes#" does not). Returns 1 relevant, 0 not. */
int wim_verdict_parse(const char *text);

/* A forgiving reading for small models that ignore the format. Remove every "```", cut at the
 * first '#', split what remains into words (runs of ASCII letters; everything else separates):
 * skip a leading "Answer" label; if the first word is yes or no (any case) it decides;
 * otherwise relevant iff the last word is yes (any case). So "Answer: yes.", "**Yes**",
 * "YES, the notes say ..." and "The answer is yes." count; "No, not yes", "YESNO", "EYES" and
 * "yesterday" do not. Returns 1 relevant, 0 not. */
int wim_verdict_parse_lenient(const char *text);

#endif

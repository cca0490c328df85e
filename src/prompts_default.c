/*
 * prompts_default.c — the built-in prompt templates, GENERATED from the .txt files in
 * data/prompts/ by data/prompts/embed.py: do not edit; tests/test_prompts.c checks that
 * they match.
 */
#include "prompts.h"

/* One literal per template line, kept as the generator writes them. */
/* clang-format off */
const char *const wim_prompt_defaults[WIM_PROMPT_COUNT] = {
    /* system_message.txt */
    "{user_header}Read the document below. It sits between two lines of three backticks, and a task about it comes after.\n"
    "```\n",
    /* extractive_summary.txt */
    "\n"
    "```\n"
    "Task: from the document above, copy every sentence that helps answer the question below, even partly.\n"
    "Question: {query}\n"
    "\n"
    "- Copy the sentences word for word, one per line.\n"
    "- Do not answer the question and do not add comments.\n"
    "- If no sentence helps, reply exactly: Nothing relevant.{generation_header}",
    /* classification.txt */
    "{user_header}A reader copied these notes from a document while looking for the answer to a question.\n"
    "\n"
    "Question: {query}\n"
    "\n"
    "Notes:\n"
    "```\n"
    "{answer}\n"
    "```\n"
    "\n"
    "Do the notes contain information that helps answer the question, even partly? Reply NO if they say \"Nothing relevant\" or are about something else.\n"
    "Start your reply with YES or NO, then \"#\", then one short reason. For example:\n"
    "YES#The notes say where the apple is.\n"
    "NO#The notes say nothing about the question.{generation_header}",
    /* final_answer.txt */
    "\n"
    "```\n"
    "Notes taken while reading the document:\n"
    "{margins}\n"
    "\n"
    "Using the document and these notes, answer the question. Reply with the answer only, as short as possible (a word, a name or a short phrase when that is enough).\n"
    "Question: {query}{generation_header}",
};
/* clang-format on */

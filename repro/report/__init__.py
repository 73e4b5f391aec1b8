"""Run summaries, acceptance verdicts and the Markdown report of a reproduction run."""

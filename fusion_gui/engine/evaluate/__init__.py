"""Scoring models: perplexity, the demo skills, side-by-side generations; the demo models themselves."""

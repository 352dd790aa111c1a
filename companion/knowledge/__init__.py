"""Grounding: a curated base of short, true, child-level fact cards, retrieved by meaning.

The cards are data (companion/data/knowledge/*.jsonl, written for this project); the
index holds one sentence vector per card text and per question it answers, built with
the shared sentence encoder and cached beside the models. The best cards above a
similarity threshold go into the prompt right before the child's words.
"""

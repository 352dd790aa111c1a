"""Evaluation sets run through the product's own paths (`companion eval ...`)."""

"""Child safety: every heard utterance and every spoken clause is checked, offline."""

"""Who is talking: speaker encoders, voiceprints, enrolment and per-turn identification."""

"""Settings of the end-of-turn stage (kept apart so the typed config can import them without onnxruntime)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TurnConfig:
    """How long the robot waits after the child stops, by what the turn model and the transcript say.

    Times are milliseconds of silence after the end of speech. With no model (``enabled = false``, or
    its file missing) the silence rule decides instead: ``[vad] end_silence_ms``, and
    ``[voice] unfinished_hold_ms`` for a transcript that stops mid-phrase.
    """

    #: Use the end-of-turn model.
    enabled: bool = True
    #: Prepared end-of-turn model (models/smart-turn-v3.2.toml).
    model: str = "smart-turn-v3.2"
    #: Probability of "finished" at or above which the model votes complete.
    threshold: float = 0.5
    #: Model and transcript agree the child has finished: the turn ends after this much silence. The
    #: model hears the pause as this long (the silence heard so far, repeated), since its "finished"
    #: only counts if the silence lasts that long.
    complete_ms: int = 200
    #: They disagree ("a dog" said flatly; "and so my fellow Americans," said with a falling voice): this
    #: much. Longer than most pauses inside a sentence (children's run 0.6-1.2 s): a disagreement costs
    #: the finished child a wait, never the unfinished one an interruption.
    unsure_ms: int = 1300
    #: The model hears mid-sentence but the language model is sure the words are a finished sentence
    #: (``words_sure_threshold``): this much. Smart Turn gave 0.02-0.17 to finished sentences like "I
    #: have a puppy called Biscuit." and "When I grow up, I want to be a vet." where the 1.5B gave their words
    #: 0.40-0.99 (`companion bench --json`, ``per_turn[].turn_end``: ``probability``, ``words_end_p``); a
    #: pause this long still lets a child add a clause.
    sure_ms: int = 600
    #: Both say the child is mid-sentence (thinking, looking for a word): the longest pause
    #: waited before answering anyway.
    incomplete_ms: int = 2400
    #: Bare words (four or more, no . ! ? or comma) are finished when the language model gives this much
    #: probability to their ending there (``Generator.ends_here``), else they go on. The default 1.5B gave
    #: 0.000-0.024 to 29 phrases cut mid-sentence ("and so my fellow Americans") and 0.10-0.96 to 24
    #: finished ones ("my tummy hurts", "why is the sky blue"); the 0.5B 0.000-0.077 and 0.064-0.89.
    words_threshold: float = 0.05
    #: From this probability the language model's "finished" is sure enough to shorten a disagreement
    #: with the model to ``sure_ms``: five times the words threshold, ten times the most the 1.5B gave any
    #: cut-off phrase (0.024), three times the 0.5B's (0.077).
    words_sure_threshold: float = 0.25
    #: Threads for the model (it runs beside the speculative ASR and the language model).
    threads: int = 1
    #: How much nicer than the rest the model's thread runs (0-19; Linux): it uses the cores the ASR and
    #: the language model leave free. Its answer is needed only when the reply is ready to play.
    nice: int = 10

    def __post_init__(self) -> None:
        if not 0.0 < self.threshold < 1.0:
            raise ValueError("turn.threshold must be between 0 and 1")
        if not 0.0 < self.words_threshold <= self.words_sure_threshold < 1.0:
            raise ValueError("turn: need 0 < words_threshold <= words_sure_threshold < 1")
        if not 0 < self.complete_ms <= self.sure_ms <= self.unsure_ms <= self.incomplete_ms:
            raise ValueError("turn: need 0 < complete_ms <= sure_ms <= unsure_ms <= incomplete_ms")
        if self.threads < 1:
            raise ValueError("turn.threads must be at least 1")
        if not 0 <= self.nice <= 19:
            raise ValueError("turn.nice must be between 0 and 19")

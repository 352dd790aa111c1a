"""The voice loop: one asyncio task reads audio, turns run as their own tasks.

    listening -> hearing (VAD onset) -> thinking (utterance ended: ASR, LLM)
              -> speaking (first clause synthesised and playing) -> listening

A turn starts speculatively at the endpointer's tentative end (a short silence):
ASR, the model and the first clause's synthesis run while the loop waits for the
real end of the utterance; nothing is played, stored or alerted before that. If
the child goes on talking, the speculative turn is dropped and the utterance
continues. The child never waits for the silence and the thinking one after the
other, only for the longer of the two.

How much silence ends a turn is decided per pause (turn/decide.py): the end-of-turn
model hears the pause (on a worker thread) and the speculative transcript adds its
vote; a finished child waits ~0.2 s, a child mid-sentence up to ~2.4 s.

The LLM's tokens are cut into clauses as they arrive; each clause is synthesised
and queued for playback while the model keeps writing. When the child speaks
over the robot (and it is not the robot's own echo), playback stops at once,
generation is cancelled and what was actually said is remembered.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import numpy as np

from companion.audio.frames import AudioFrame
from companion.audio.sinks import Player
from companion.brain.conversation import SpokenReply
from companion.brain.guard import ReplyChunk, reply_chunks
from companion.brain.plan import TurnPlan
from companion.errors import CompanionError
from companion.llm.generate import Gate, GenerationResult, TokenEvent
from companion.llm.sampling import SamplingParams
from companion.safety.check import SafetyVerdict
from companion.tts.speakable import speakable
from companion.turn.config import TurnConfig
from companion.turn.decide import TurnWait, decide
from companion.turn.features import with_pause
from companion.vad.endpoint import (
    Endpointer,
    SpeechOnset,
    SpeechPaused,
    SpeechRejected,
    SpeechResumed,
    SpeechStarted,
    Utterance,
    UtteranceEnded,
    UtteranceMaybeEnded,
)
from companion.voice.config import LoopConfig
from companion.speaker.identify import SpeakerGuess
from companion.voice.stages import Brain, LanguageModel, Speakers, Synthesizer, Transcriber, TurnModel
from companion.voice.echo import echo_similarity, repeats_robot
from companion.voice.turn_end import looks_unfinished, needs_probe, probe_vote, text_vote
from companion.voice.events import (
    BargeIn,
    ClauseBlocked,
    ClauseSpoken,
    EchoIgnored,
    FirstToken,
    HeardSoFar,
    LoopEvent,
    LoopState,
    ReplyCancelled,
    SpeakerIdentified,
    SpeculationDropped,
    SpeechDetected,
    StateChanged,
    Transcribed,
    TurnCompleted,
    TurnDropped,
    TurnEndDecided,
    TurnEndGuessed,
    TurnFailed,
    TurnRecord,
    TurnTimings,
    UtteranceCaptured,
)

log = logging.getLogger(__name__)

#: What the robot says when a turn fails inside (the loop goes on listening).
OOPS = "Oops, my thoughts got tangled. Can you say that again?"


class VoiceLoop:
    """Wires the stages: endpointer -> Transcriber -> Brain.plan -> LanguageModel + guard -> Synthesizer
    -> Player -> Brain.remember. No stage sees another; the loop owns the order and the timing."""

    def __init__(self, *, endpointer: Endpointer, asr: Transcriber, brain: Brain, model: LanguageModel,
                 sampling: SamplingParams, tts: Synthesizer, player: Player, config: LoopConfig = LoopConfig(),
                 on_event: Callable[[LoopEvent], None] | None = None, turn_model: TurnModel | None = None,
                 turn_config: TurnConfig | None = None, speakers: Speakers | None = None) -> None:
        self.endpointer = endpointer
        self.asr = asr
        #: The conversation the next prompt is prepared for: the last speaker's (``speakers.current``).
        self.brain = speakers.current if speakers is not None else brain
        #: Who is talking, by voice (None: every turn is ``brain``'s child's).
        self.speakers = speakers
        self.model = model
        self.sampling = sampling
        self.tts = tts
        self.player = player
        self.config = config
        self._on_event = on_event
        #: The end-of-turn model and its settings; None: turns end by the silence rule.
        both = turn_model is not None and turn_config is not None
        self.turn_model, self.turn_config = (turn_model, turn_config) if both else (None, None)
        #: The votes on the pause in progress (None: no pause, or no model).
        self._votes: _Votes | None = None
        #: End-of-turn model calls in flight (awaited when the loop ends).
        self._guessing: set[asyncio.Task] = set()
        self.state = LoopState.LISTENING
        #: The latest turn records (a ring: a robot runs for weeks; every record is also a TurnCompleted event).
        self.records: deque[TurnRecord] = deque(maxlen=config.records_kept)
        self.events: deque[LoopEvent] = deque(maxlen=config.events_kept)
        self._turn: asyncio.Task | None = None
        #: Prefills of the next prompt in flight (awaited when the loop ends).
        self._warming: set[asyncio.Task] = set()
        #: Microphone frames of the last ``mic_history_s`` seconds (for echo checks), trimmed by time.
        self._mic: deque[AudioFrame] = deque()
        self._echo_run = False
        self._last_said = ""
        self._last_spoke_end = -1e9
        self._turn_index = 0
        #: Speech of a turn the child talked over before the robot said anything: it is heard
        #: again together with what follows (a child pausing mid-sentence is one utterance).
        self._carry: Utterance | None = None
        self._spoke = False
        #: The turn in progress: its utterance and whether the endpointer has confirmed its end.
        self._pending: _Pending | None = None
        #: Hearing the words so far while the child talks: when the speech began, the task, and the
        #: speech seconds at which the next hearing is due.
        self._speech_t: float | None = None
        self._early: asyncio.Task | None = None
        self._early_next = 0.0

    # -- observation -----------------------------------------------------------------
    def _now(self) -> float:
        return asyncio.get_running_loop().time()

    def _emit(self, event: LoopEvent) -> None:
        self.events.append(event)
        if self._on_event is not None:
            self._on_event(event)

    def _set_state(self, state: LoopState) -> None:
        if state != self.state:
            self.state = state
            self._emit(StateChanged(state, self._now()))

    def is_idle(self) -> bool:
        """Listening, with no turn in progress and no speech being heard (for turn-taking sources)."""
        return self.state == LoopState.LISTENING and self._turn is None and not self.player.speaking

    # -- main loop ---------------------------------------------------------------------
    async def run(self, frames: AsyncIterator[AudioFrame]) -> list[TurnRecord]:
        """Listen until ``frames`` ends; returns the latest turn records (all of them for a bounded run)."""
        self._warm_next()
        try:
            async for frame in frames:
                self._hear(frame)
                for event in self.endpointer.push(frame):
                    self._on_endpoint(event)
                self._maybe_hear_so_far(frame)
            if self._turn is not None:
                await asyncio.gather(self._turn, return_exceptions=True)
            await self.player.drain()
        finally:
            if self._turn is not None and not self._turn.done():
                self._turn.cancel()
                await asyncio.gather(self._turn, return_exceptions=True)
            if self._early is not None and not self._early.done():
                self._early.cancel()
            for task in (*self._warming, *self._guessing, self._early):
                if task is not None:
                    await asyncio.gather(task, return_exceptions=True)
        return list(self.records)

    def _hear(self, frame: AudioFrame) -> None:
        self._mic.append(frame)
        while self._mic and self._mic[0].end < frame.end - self.config.mic_history_s:
            self._mic.popleft()

    def _robot_busy(self) -> bool:
        return self._turn is not None and not self._turn.done()

    def _on_endpoint(self, event) -> None:
        now = self._now()
        if isinstance(event, SpeechOnset):
            if self.player.speaking:
                mic = self._mic_since(event.t - 0.03)
                similarity = echo_similarity(mic, event.t - 0.03, self.player)
                if similarity >= self.config.echo_correlation:
                    self._echo_run = True
                    self._emit(EchoIgnored(round(similarity, 3), now))
                    return
                self._barge_in(event.t)
            elif self._robot_busy():
                self._barge_in(event.t)  # the child goes on talking before the robot answered
            self._echo_run = False
            self._set_state(LoopState.HEARING)
        elif isinstance(event, SpeechStarted):
            if not self._echo_run:
                self._emit(SpeechDetected(event.t))
                self._speech_t, self._early_next = event.t, self.config.early_prefill_s
        elif isinstance(event, SpeechRejected):
            self._echo_run = False
            if self.state == LoopState.HEARING and not self._robot_busy():
                self._set_state(LoopState.LISTENING)
        elif isinstance(event, SpeechPaused):
            if not self._echo_run:
                self._hear_pause(event)
        elif isinstance(event, UtteranceMaybeEnded):
            if not self._echo_run and (self._votes is None or self._votes.speech_end != event.utterance.speech_end):
                self._hear_pause(event)
            if not self._echo_run and not self._robot_busy():
                self._start_turn(event.utterance, confirmed=False)
            elif self._votes is not None and self._votes.speech_end == event.utterance.speech_end:
                self._words_known(self._votes, None)  # no speculative turn: no words will vote on this pause
        elif isinstance(event, SpeechResumed):
            self._votes = None
            pending = self._pending
            if pending is not None and not pending.confirmed.is_set() and self._robot_busy():
                self._drop_speculation(pending)
        elif isinstance(event, UtteranceEnded):
            self._speech_t = None
            utt = event.utterance
            self._emit(UtteranceCaptured(utt.speech_start, utt.speech_end, utt.forced, now))
            pending = self._pending
            if self._echo_run:
                self._echo_run = False
                self._emit(TurnDropped("echo", "", now))
                if pending is not None and not pending.confirmed.is_set() and self._robot_busy():
                    self._drop_speculation(pending)
                if not self._robot_busy():
                    self._set_state(LoopState.LISTENING)
                return
            if pending is not None and not pending.confirmed.is_set() and pending.speech_end == utt.speech_end \
                    and not utt.forced:
                pending.confirm(now)  # the speculative turn was right: let it speak
                if self._robot_busy():
                    self._set_state(LoopState.THINKING)
                elif not self.endpointer.in_speech:
                    self._set_state(LoopState.LISTENING)  # it already ended (noise, nothing to say)
                return
            if pending is not None and not pending.confirmed.is_set() and self._robot_busy():
                self._drop_speculation(pending)
            self._start_turn(utt, confirmed=True)
            self._set_state(LoopState.THINKING)

    # -- end of turn ------------------------------------------------------------------
    def _hear_pause(self, event: SpeechPaused | UtteranceMaybeEnded) -> None:
        """The child paused: the end-of-turn model hears the utterance so far (off the loop); until it
        answers, the pause may last the longest wait."""
        if self.turn_model is None:
            self._votes = None
            return
        votes = self._votes = _Votes(event.utterance.speech_end)
        self.endpointer.set_end_silence(self.turn_config.incomplete_ms, speech_end=votes.speech_end)
        audio = with_pause(event.utterance.audio, event.tail, self.turn_config.complete_ms / 1000)
        task = asyncio.get_running_loop().create_task(self._guess(votes, audio), name="turn-end")
        self._guessing.add(task)
        task.add_done_callback(self._guessing.discard)

    async def _guess(self, votes: _Votes, audio: np.ndarray) -> None:
        try:
            guess = await self.turn_model.guess(audio)
        except Exception as err:  # noqa: BLE001 - the silence rule still ends the turn
            log.warning("[TURN_MODEL_FAILED] the end-of-turn model failed; this pause ends by the silence rule: %r",
                        err)
            votes.failed = True
        else:
            votes.probability = guess.probability
            self._emit(TurnEndGuessed(votes.speech_end, round(guess.probability, 4), guess.model_ms, self._now()))
        if votes is self._votes:
            self._decide(votes)

    def _vote_text(self, speech_end: float, text: str, unfinished: bool, *, final: bool = True) -> _Votes | None:
        """The speculative transcript's vote on the pause after ``speech_end`` (None: no votes for it);
        ``unfinished``: ``looks_unfinished(text)``, for the silence rule. Not ``final``: the language model
        votes on these words next (``_probe_words``)."""
        votes = self._votes
        if votes is None or votes.speech_end != speech_end:
            return None
        votes.own_vote = text_vote(text)
        votes.text_unfinished = votes.own_vote if final else None
        votes.looks_unfinished = unfinished
        votes.heard = final
        if votes.probability is not None or votes.failed:
            self._decide(votes)
        return votes

    def _probe_words(self, votes: _Votes, brain: Brain, plan: TurnPlan) -> None:
        """The language model's vote on bare words (``Generator.ends_here``), queued on its worker before
        the reply, whose prefill it does; a fixed line, or a failure (logged), leaves the words no vote."""
        try:
            future = brain.ends_here(plan)
        except Exception as err:  # noqa: BLE001 - the turn goes on without this vote
            log.warning("[TURN_WORDS_FAILED] the language model could not vote on the words: %r", err)
            future = None
        if future is None:
            self._words_known(votes, None)
            return

        def done(f: asyncio.Future) -> None:
            p_end = None
            if not f.cancelled() and f.exception() is not None:
                log.warning("[TURN_WORDS_FAILED] the language model could not vote on the words: %r", f.exception())
            elif not f.cancelled():
                p_end = f.result()
            self._words_known(votes, p_end)

        future.add_done_callback(done)

    def _words_known(self, votes: _Votes, p_end: float | None) -> None:
        """The words' vote is final: the language model's (``p_end``), else the transcript's own."""
        if votes.heard:
            return
        votes.heard = True
        votes.p_end = p_end
        # Votes exist only with a turn model, so ``turn_config`` is set.
        votes.text_unfinished = votes.own_vote if p_end is None else probe_vote(p_end, self.turn_config.words_threshold)
        if votes is self._votes and (votes.probability is not None or votes.failed):
            self._decide(votes)

    def _decide(self, votes: _Votes) -> None:
        sure = votes.p_end is not None and votes.p_end >= self.turn_config.words_sure_threshold
        votes.wait = decide(self.turn_config, votes.probability, votes.text_unfinished, words_pending=not votes.heard,
                            words_sure=sure, looks_unfinished=votes.looks_unfinished,
                            silence_ms=self.endpointer.config.end_silence_ms,
                            unfinished_hold_ms=self.config.unfinished_hold_ms)
        self.endpointer.set_end_silence(votes.wait.wait_ms, speech_end=votes.speech_end)
        self._emit(TurnEndDecided(votes.speech_end, votes.wait.wait_ms, votes.wait.by, votes.probability,
                                  votes.text_unfinished, self._now()))

    def _no_words(self, speech_end: float) -> None:
        votes = self._votes
        if votes is not None and votes.speech_end == speech_end:
            self._words_known(votes, None)

    def _hold_ms(self, turn: _Turn) -> int:
        """Silence after the end of speech before the reply may start: the end-of-turn decision (the
        transcript's vote may come after the endpointer ended the utterance), else the silence rule."""
        wait = turn.votes.wait if turn.votes is not None else None
        if wait is None:
            wait = decide(None, None, None, looks_unfinished=turn.unfinished, silence_ms=0,
                          unfinished_hold_ms=self.config.unfinished_hold_ms)
        return wait.wait_ms

    def _start_turn(self, utt: Utterance, *, confirmed: bool) -> None:
        if self._early is not None and not self._early.done():
            self._early.cancel()  # the model's prefill stops at its next chunk: the turn needs the cores
        pending = self._confirmed(utt) if confirmed else _Pending(utt.speech_end, None)
        pending.carry_before = self._carry
        self._pending = pending
        self._turn = asyncio.get_running_loop().create_task(self._run_turn(utt, pending), name="turn")

    def _drop_speculation(self, pending: _Pending) -> None:
        """The child went on talking: the unconfirmed turn is cancelled; its words stay in the utterance."""
        pending.dropped = True
        self._carry = pending.carry_before
        if self._turn is not None:
            self._turn.cancel()
        self._emit(SpeculationDropped(self._now()))

    def _maybe_hear_so_far(self, frame: AudioFrame) -> None:
        """Every ``early_prefill_s`` of a child's speech, hear the words so far (one at a time, never
        while the robot is busy with a turn)."""
        every, start = self.config.early_prefill_s, self._speech_t
        if not every or start is None or self._echo_run or not self.endpointer.in_speech or self._robot_busy():
            return
        if self._early is not None and not self._early.done():
            return
        spoken = frame.end - start
        if spoken < self._early_next or spoken > self.config.mic_history_s - 0.25:
            return
        self._early_next = spoken + every
        audio = self._mic_since(start - 0.1)
        self._early = asyncio.get_running_loop().create_task(self._hear_so_far(audio), name="hear-so-far")

    async def _hear_so_far(self, audio: np.ndarray) -> None:
        """ASR of the speech so far, then the brain prefills the prompt those words begin. Only the
        model's cache changes: nothing is said, stored or decided. Cancelled when a turn starts."""
        try:
            transcript = await self.asr.transcribe(audio)
            if transcript.rejected or not transcript.text.strip():
                return
            self._emit(HeardSoFar(transcript.text, self._now()))
            await self.brain.prefill_heard_so_far(transcript.text)
        except asyncio.CancelledError:
            raise
        except Exception as err:  # noqa: BLE001 - an optimisation: the turn works without it
            log.warning("[EARLY_PREFILL_FAILED] could not prefill the words so far: %r", err)

    def _mic_since(self, t: float) -> np.ndarray:
        parts = [f.samples for f in self._mic if f.end > t]
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.float32)

    def _barge_in(self, onset_t: float) -> None:
        self.player.stop()
        self._emit(BargeIn(onset_t, self._now()))
        if self._turn is not None and not self._turn.done():
            self._turn.cancel()

    # -- one turn --------------------------------------------------------------------
    def _merge_carry(self, utt: Utterance) -> Utterance:
        carry, self._carry = self._carry, None
        if carry is None:
            return utt
        gap = np.zeros(int(0.3 * 16_000), dtype=np.float32)
        audio = np.concatenate([carry.audio, gap, utt.audio])
        limit = int(self.config.max_heard_s * 16_000)
        return Utterance(audio=audio[-limit:], t_audio=carry.t_audio, speech_start=carry.speech_start,
                         speech_end=utt.speech_end, forced=utt.forced)

    def _confirmed(self, utt: Utterance) -> _Pending:
        pending = _Pending(utt.speech_end, None)
        pending.confirm(self._now())
        return pending

    async def _run_turn(self, utt: Utterance, pending: _Pending | None = None) -> None:
        pending = pending or self._confirmed(utt)
        utt = self._merge_carry(utt)
        self._spoke = False
        try:
            await self._turn_body(utt, pending)
        except asyncio.CancelledError:
            if not self._spoke and not pending.dropped:
                self._carry = utt
            raise
        except CompanionError as err:
            log.error("[%s] turn failed: %s", err.code, err.message)
            self._emit(TurnFailed(err.code, err.message, self._now()))
            await self._say_oops(pending)
        except Exception as err:  # noqa: BLE001 - one bad turn must not end the robot
            log.exception("[TURN_FAILED] unexpected error in a turn")
            self._emit(TurnFailed("TURN_FAILED", repr(err), self._now()))
            await self._say_oops(pending)
        finally:
            if asyncio.current_task() is self._turn:
                self._turn = None
            if not self.endpointer.in_speech:
                self._set_state(LoopState.LISTENING)
            elif pending.dropped:
                self._set_state(LoopState.HEARING)

    async def _say_oops(self, pending: _Pending) -> None:
        try:
            speech = await self.tts.synthesize(OOPS)
            await pending.confirmed.wait()

            def on_start(t: float) -> None:
                self._set_state(LoopState.SPEAKING)
                self._emit(ClauseSpoken(OOPS, t))

            self.player.enqueue(speech.samples, speech.rate, tag=-1, on_start=on_start)
            await self.player.drain()
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001
            log.exception("[TTS_FAILED] could not even say the oops line")

    async def _turn_body(self, utt: Utterance, pending: _Pending | None = None) -> None:
        pending = pending or self._confirmed(utt)
        speech_ratio = utt.duration / max(1e-6, len(utt.audio) / 16_000)
        asr_start = self._now()
        who = self._identify(utt) if self.speakers is not None else None
        try:
            transcript = await self.asr.transcribe(utt.audio, speech_ratio=speech_ratio)
            now = self._now()
            if transcript.rejected:
                self._emit(TurnDropped(transcript.rejected, transcript.text, now))
                self._no_words(utt.speech_end)
                return
            if utt.speech_start - self._last_spoke_end < self.config.echo_tail_s and repeats_robot(
                    transcript.text, self._last_said):
                self._emit(TurnDropped("echo", transcript.text, now))
                self._no_words(utt.speech_end)
                return
            self._emit(Transcribed(transcript.text, transcript.asr_ms, now))
            speaker, speaker_t = await who if who is not None else (None, None)
        finally:
            if who is not None and not who.done():
                who.cancel()
        brain = self.brain if self.speakers is None else self.speakers.brain_for(speaker)
        unfinished = looks_unfinished(transcript.text)
        probing = needs_probe(transcript.text)
        votes = self._vote_text(utt.speech_end, transcript.text, unfinished, final=not probing)
        plan = await brain.plan(transcript.text)
        if votes is not None and probing:
            self._probe_words(votes, brain, plan)  # before the reply is asked for: it runs first
        turn = _Turn(plan=plan, utt=utt, asr_ms=transcript.asr_ms, asr_done=now, pending=pending,
                     asr_start=asr_start, unfinished=unfinished, votes=votes, brain=brain, speaker=speaker,
                     speaker_t=speaker_t, clauses=asyncio.Queue(maxsize=self.config.clause_queue))
        try:
            await _together(self._think(turn), self._speak(turn))
        except asyncio.CancelledError:
            self._emit(ReplyCancelled(self._now()))
            if self._spoke:  # cut short: remember what was actually said
                await self._record(turn, interrupted=True)
            raise
        await self._record(turn, interrupted=False)

    def _identify(self, utt: Utterance) -> asyncio.Task:
        """Whose voice the utterance is, on the encoder's thread while the ASR runs (None: nobody enrolled);
        a failure makes the turn a guest's (logged), it never fails the turn."""

        async def run() -> tuple[SpeakerGuess | None, float | None]:
            try:
                guess = await self.speakers.identify(utt.audio)
            except asyncio.CancelledError:
                raise
            except Exception as err:  # noqa: BLE001
                log.warning("[SPEAKER_ID_FAILED] could not tell who is talking; the turn is a guest's (nothing "
                            "of any child recalled): %r", err)
                guess = SpeakerGuess(None, None, "failed")
            if guess is not None:
                self._emit(SpeakerIdentified(utt.speech_end, guess, self._now()))
            return guess, self._now()

        return asyncio.get_running_loop().create_task(run(), name="speaker-id")

    async def _think(self, turn: _Turn) -> None:
        """The plan's reply, as checked clauses (brain/guard.py), into the bounded clause queue."""

        def observe(item: TokenEvent | GenerationResult) -> None:
            if isinstance(item, TokenEvent):
                turn.reply_tokens += 1
                turn.cached_tokens = item.cached_tokens
                turn.last_token_t = self._now()
                if turn.first_token_ms is None:
                    turn.first_token_ms = round((self._now() - turn.asr_done) * 1000, 1)
                    self._emit(FirstToken(turn.first_token_ms, self._now()))
            else:
                turn.drafted, turn.kept_drafts = item.drafted, item.accepted_drafts

        chunks = reply_chunks(turn.plan, self.model, self.sampling, gate=turn.gate, observe=observe)
        try:
            async for chunk in chunks:
                if turn.first_clause_t is None:
                    turn.first_clause_t = self._now()
                await turn.clauses.put(chunk)
        finally:
            await chunks.aclose()  # stops the model within one token if it is still writing
        await turn.clauses.put(None)

    async def _speak(self, turn: _Turn) -> None:
        tag = self._turn_index + 1
        queued: list[str] = []
        while (chunk := await turn.clauses.get()) is not None:
            if chunk.blocked is not None:
                # The unsafe clause was never queued; this is the redirect that replaces the rest.
                turn.blocked = chunk.blocked
                self._emit(ClauseBlocked(chunk.blocked.category or "output", self._now()))
            text = speakable(chunk.text)
            if not text:
                continue
            synth_start = self._now()
            first = turn.tts_first_ms is None
            if first:  # the child is waiting for this one: the model pauses so the TTS has both cores
                turn.gate.close()
            try:
                speech = await self.tts.synthesize(text)
            finally:
                turn.gate.open()
            if first:
                turn.tts_first_ms = speech.synth_ms
                turn.tts_first = (synth_start, self._now())
            await turn.pending.confirmed.wait()  # a speculative turn speaks only once the child has finished
            if not turn.said:  # "and so my fellow..." + a breath: the child may go on (see _hold_ms)
                hold = turn.utt.speech_end + self._hold_ms(turn) / 1000 - self._now()
                if hold > 0:
                    await asyncio.sleep(hold)
            self.player.enqueue(speech.samples * turn.plan.volume, speech.rate, tag=tag,
                                on_start=self._on_clause_start(turn, chunk))
            queued.append(chunk.text)
        if queued:  # all synthesised and queued: while it plays, the cores are free for the next prompt
            self._warm_next(SpokenReply(turn.plan, " ".join(queued), blocked=turn.blocked), turn.brain)
        await self.player.drain()

    def _on_clause_start(self, turn: _Turn, chunk: ReplyChunk) -> Callable[[float], None]:
        def on_start(t: float) -> None:
            if turn.first_audio_t is None:
                turn.first_audio_t = t
                self._spoke = True
                self._set_state(LoopState.SPEAKING)
            turn.said.append(chunk.text)
            self._emit(ClauseSpoken(chunk.text, t))
        return on_start

    async def _record(self, turn: _Turn, *, interrupted: bool) -> None:
        self._turn_index += 1
        reply = " ".join(turn.said)
        # Talk time for the parents' daily limit: from the child's first word to the end of the reply.
        spoken = SpokenReply(turn.plan, reply, interrupted=interrupted, blocked=turn.blocked,
                             talk_s=self._now() - turn.utt.speech_start)
        self._last_said = reply
        self._last_spoke_end = self._now()
        # Shielded: a second cancellation (the child barges in again) must not lose an acknowledged write.
        await asyncio.shield(turn.brain.remember(spoken))
        if self.speakers is not None:
            self.speakers.settle(turn.speaker)
            self.brain = self.speakers.current
        end = turn.utt.speech_end
        ttfa = None if turn.first_audio_t is None else round((turn.first_audio_t - end) * 1000, 1)
        record = TurnRecord(
            index=self._turn_index, child=turn.brain.child, heard=turn.plan.heard, reply=reply,
            interrupted=interrupted, safety=spoken.verdict.to_json(), tokens=turn.tokens(),
            timings=TurnTimings(speech_end=round(turn.utt.speech_end, 3), asr_ms=turn.asr_ms,
                                llm_first_token_ms=turn.first_token_ms, tts_first_chunk_ms=turn.tts_first_ms,
                                ttfa_ms=ttfa, trace=turn.trace()),
            turn_end=turn.turn_end(), speaker=None if turn.speaker is None else turn.speaker.to_json())
        self.records.append(record)
        self._emit(TurnCompleted(record, self._now()))
        # Again, now that it is remembered: a no-op prefill when the reply went as expected, but a reply
        # cut short, or a fact learned from the child's words (the facts block sits before the history),
        # changes the prefix warmed while it played.
        self._warm_next()

    def _warm_next(self, expected: SpokenReply | None = None, brain: Brain | None = None) -> None:
        """Prefill the next prompt's fixed part on the model's worker (off the loop): while the reply
        plays (``expected``: what it will have said, by ``brain``: the turn's speaker's conversation),
        and again once it is remembered (a no-op when it went as expected)."""
        brain = brain or self.brain
        task = asyncio.get_running_loop().create_task(brain.warm_next(expected), name="warm-next")

        def done(t: asyncio.Task) -> None:
            self._warming.discard(t)
            if not t.cancelled() and t.exception() is not None:
                log.warning("[LLM_WARM_FAILED] could not prefill the next prompt: %r", t.exception())

        self._warming.add(task)
        task.add_done_callback(done)


async def _together(*coros) -> None:
    """Run the coroutines as tasks; the first failure (or a cancellation) cancels the others."""
    tasks = [asyncio.get_running_loop().create_task(c) for c in coros]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        for task in done:
            if not task.cancelled() and task.exception() is not None:
                raise task.exception()
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


@dataclass
class _Pending:
    """A turn's standing: speculative until the endpointer confirms the utterance's end."""

    speech_end: float
    #: The carried-over speech this turn merged, put back if the speculation is dropped.
    carry_before: Utterance | None
    confirmed: asyncio.Event = field(default_factory=asyncio.Event)
    confirmed_t: float | None = None
    dropped: bool = False

    def confirm(self, t: float) -> None:
        self.confirmed_t = t
        self.confirmed.set()


@dataclass
class _Votes:
    """What is known about one pause: the model's probability and the transcript's vote (mutable, the loop's)."""

    speech_end: float
    probability: float | None = None
    #: The transcript's vote (voice/turn_end.py ``text_vote``, or ``probe_vote`` on bare words; None: no
    #: opinion or not heard yet).
    text_unfinished: bool | None = None
    #: The words' vote is final (or none is coming): until then a "finished" from the model waits.
    heard: bool = False
    #: The transcript's vote by its punctuation and last word (``text_vote``), before the language model's.
    own_vote: bool | None = None
    #: The language model's probability that the words end there (``Generator.ends_here``; None: not asked).
    p_end: float | None = None
    #: The transcript looks unfinished to the silence rule (bare words included).
    looks_unfinished: bool = False
    #: The model failed on this pause: the silence rule decides.
    failed: bool = False
    #: The decision from the votes so far (None: the model has not answered yet).
    wait: TurnWait | None = None


@dataclass
class _Turn:
    """Progress of the turn being answered (mutable, private to one turn task)."""

    plan: TurnPlan
    utt: Utterance
    asr_ms: float
    asr_done: float
    pending: _Pending
    asr_start: float
    #: Checked clauses waiting for synthesis (bounded: the model waits when it is full).
    clauses: asyncio.Queue[ReplyChunk | None]
    #: The conversation of the turn's speaker (remembers the turn).
    brain: Brain
    #: Who was talking, and when the encoder answered (None: voices not recognised, or it failed).
    speaker: SpeakerGuess | None = None
    speaker_t: float | None = None
    #: The transcript stops mid-phrase: the reply waits for a longer silence.
    unfinished: bool = False
    #: The votes on the pause this turn answers (None: no end-of-turn model, or no pause heard).
    votes: _Votes | None = None
    first_clause_t: float | None = None
    tts_first: tuple[float, float] | None = None
    reply_tokens: int = 0
    cached_tokens: int = 0
    #: Prompt-lookup draft tokens checked and kept (known when the model finished on its own).
    drafted: int = 0
    kept_drafts: int = 0
    last_token_t: float | None = None
    gate: Gate = field(default_factory=Gate)
    first_token_ms: float | None = None
    tts_first_ms: float | None = None
    first_audio_t: float | None = None
    said: list[str] = field(default_factory=list)
    blocked: SafetyVerdict | None = None

    def turn_end(self) -> dict:
        v = self.votes
        if v is None or v.wait is None:
            return {"by": "silence", "wait_ms": None, "probability": None, "text_unfinished": self.unfinished,
                    "words_end_p": None}
        return {"by": v.wait.by, "wait_ms": v.wait.wait_ms,
                "probability": None if v.probability is None else round(v.probability, 4),
                "text_unfinished": v.text_unfinished, "words_end_p": None if v.p_end is None else round(v.p_end, 4)}

    def tokens(self) -> dict:
        """Language-model tokens of the turn (prompt, reply) and the decode speed as the loop saw it."""
        rate = None
        if self.first_token_ms is not None and self.last_token_t is not None and self.reply_tokens > 1:
            span = self.last_token_t - (self.asr_done + self.first_token_ms / 1000)
            rate = round((self.reply_tokens - 1) / span, 1) if span > 0 else None
        return {"prompt": len(self.plan.prompt), "cached": self.cached_tokens, "reply": self.reply_tokens,
                "tok_s": rate, "drafted": self.drafted, "kept_drafts": self.kept_drafts}

    def trace(self) -> dict[str, float | None]:
        """When each stage of the turn happened, in ms from the end of the child's speech."""
        end = self.utt.speech_end

        def ms(t: float | None) -> float | None:
            return None if t is None else round((t - end) * 1000, 1)

        first_token = None if self.first_token_ms is None else self.asr_done + self.first_token_ms / 1000
        return {
            "speech_start": ms(self.utt.speech_start), "asr_start": ms(self.asr_start), "asr_end": ms(self.asr_done),
            "first_token": ms(first_token), "first_clause": ms(self.first_clause_t),
            "tts_start": ms(self.tts_first[0] if self.tts_first else None),
            "tts_end": ms(self.tts_first[1] if self.tts_first else None),
            "end_confirmed": ms(self.pending.confirmed_t), "first_audio": ms(self.first_audio_t),
            "speaker_end": ms(self.speaker_t),
        }

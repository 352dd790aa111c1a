"""The brain: what the robot says to a transcript, in hand-offs that never point back.

    Transcript -> TurnPlan (plan.py: parent gate, input safety, memory answer, prompt)
               -> ReplyChunk* (guard.py: the model's tokens, cut into clauses, capped, checked)
               -> SpokenReply (conversation.py: what was actually said, remembered)

``Conversation`` holds one child's session (history, memory access); the policy that
decides a turn is a pure function of the transcript and a snapshot of state.
"""

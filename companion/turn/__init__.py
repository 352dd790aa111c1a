"""End of turn: has the child finished, or only paused? (Smart Turn v3 on the audio, plus the transcript's vote.)"""

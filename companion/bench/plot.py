"""``companion bench --plot FILE``: the stage timeline of one turn as a PNG (matplotlib, headless)."""

from __future__ import annotations

from pathlib import Path

#: (label, start key, end key) on the turn's trace; times in ms from the end of the child's speech.
BARS = (
    ("child speaking", "speech_start", None),
    ("waiting for end of speech", None, "end_confirmed"),
    ("ASR (Whisper)", "asr_start", "asr_end"),
    ("LLM to first token", "asr_end", "first_token"),
    ("LLM to first clause", "first_token", "first_clause"),
    ("TTS first clause", "tts_start", "tts_end"),
)


def timeline_png(example: dict, path: Path, *, title: str = "") -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tr = example["trace"]
    fig, ax = plt.subplots(figsize=(9, 3.6), dpi=120)
    labels = []
    for i, (label, a, b) in enumerate(BARS):
        start = tr.get(a, 0.0) if a else 0.0
        end = tr.get(b, 0.0) if b else 0.0
        if start is None or end is None:
            continue
        ax.barh(i, end - start, left=start, height=0.6, color=f"C{i}")
        ax.text(max(end, -390) + 8, i, f"{end - start:.0f} ms", va="center", fontsize=8)
        labels.append((i, label))
    first_audio = tr.get("first_audio")
    if first_audio is not None:
        ax.axvline(first_audio, color="k", lw=1.5)
    ax.axvline(0, color="grey", lw=1, ls="--")
    right = max(v for v in tr.values() if v is not None) + 250
    ax.set_xlim(-400, right)  # the child's speech runs off to the left; its length is in its label
    ax.set_yticks([i for i, _ in labels], [lab for _, lab in labels])
    ax.invert_yaxis()
    ax.set_xlabel("ms from the end of the child's speech")
    heard = f"\u201c{example['heard']}\u201d"
    ax.set_title(title or (heard if first_audio is None else f"{heard}: first reply audio at {first_audio:.0f} ms "
                                                             f"(black line)"), fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path

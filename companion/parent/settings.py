"""What parents set on the dashboard, stored in the memory database and read by the loop every turn."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import asdict, dataclass, field

from companion.errors import ConfigError
from companion.memory.store import MemoryStore

KEY = "parent"
_HHMM = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")

#: What the robot says during quiet hours, and once a child's daily time is used up (fixed lines, never
#: the model's words).
RESTING_LINE = "Shh, it's quiet time and I'm resting now. Let's talk again later!"
WIND_DOWN_LINE = "We've had lots of fun talking today! Let's have a break now and chat again tomorrow."


@dataclass(frozen=True)
class ParentSettings:
    #: Quiet hours, "HH:MM" local time; the period may run past midnight. Both empty: none.
    quiet_start: str = ""
    quiet_end: str = ""
    #: Minutes a day each child may talk with the robot (absent or 0: no limit).
    daily_limit_min: dict[str, int] = field(default_factory=dict)
    #: Topics the robot steers away from (added to the config file's safety.deny_topics).
    deny_topics: tuple[str, ...] = ()
    #: Days transcripts are kept (0: the config file's memory.retention_days; the form shows it empty).
    retention_days: int = 0
    #: Speaker volume, percent of the voice's own level.
    volume: int = 100
    #: Persona file in configs/personas/ ("": the config file's).
    persona: str = ""
    #: The parents consent to recognising each child by voice (speaker/): voiceprints, biometric data
    #: about a child, are made and kept on the robot only while this is on; turning it off erases them.
    voice_id: bool = False

    def __post_init__(self) -> None:
        if bool(self.quiet_start) != bool(self.quiet_end):
            raise ConfigError("quiet hours need both a start and an end", code="PARENT_SETTING_INVALID")
        for t in (self.quiet_start, self.quiet_end):
            if t and not _HHMM.match(t):
                raise ConfigError(f"quiet hours must be HH:MM, not {t!r}", code="PARENT_SETTING_INVALID")
        if not 0 <= self.volume <= 100:
            raise ConfigError("volume must be 0-100", code="PARENT_SETTING_INVALID")
        if not 0 <= self.retention_days <= 3650:
            raise ConfigError("retention must be 0-3650 days", code="PARENT_SETTING_INVALID")
        if any(not 0 <= m <= 24 * 60 for m in self.daily_limit_min.values()):
            raise ConfigError("a daily limit must be 0-1440 minutes", code="PARENT_SETTING_INVALID")

    def to_json(self) -> dict:
        data = asdict(self)
        data["deny_topics"] = list(self.deny_topics)
        return data

    @classmethod
    def from_json(cls, data: dict | None) -> ParentSettings:
        if not data:
            return cls()
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        known["deny_topics"] = tuple(known.get("deny_topics", ()))
        known["daily_limit_min"] = {str(k): int(v) for k, v in known.get("daily_limit_min", {}).items()}
        return cls(**known)

    def quiet_now(self, now: dt.datetime) -> bool:
        if not self.quiet_start:
            return False
        start, end, t = self.quiet_start, self.quiet_end, now.strftime("%H:%M")
        return start <= t < end if start <= end else (t >= start or t < end)

    def retention_in_force(self, default_days: float) -> float:
        """Days transcripts are kept now: the parent's choice, else the config file's."""
        return float(self.retention_days) if self.retention_days else default_days

    def limit_s(self, child: str) -> float | None:
        minutes = self.daily_limit_min.get(child, 0)
        return minutes * 60.0 if minutes else None


def days_text(days: float) -> str:
    """``30.0`` -> "30 days": whole days as a parent reads them (a fraction only where the config has one)."""
    text = f"{days:.0f}" if float(days).is_integer() else f"{days:.1f}"
    return f"{text} day" if text == "1" else f"{text} days"


def parse_retention(raw: str) -> int:
    """The form's field: empty is the robot's default (stored as 0); a number is whole days, at least 1.
    "0" is refused rather than read as "the default": a parent who types 0 means something else."""
    raw = raw.strip()
    if not raw:
        return 0
    try:
        days = int(raw)
    except ValueError as err:
        raise ConfigError(f"keep transcripts for: {raw!r} is not a whole number of days",
                          code="PARENT_SETTING_INVALID") from err
    if days < 1:
        raise ConfigError("keep transcripts for at least 1 day, or leave it empty for the robot's default",
                          code="PARENT_SETTING_INVALID")
    return days


def load(store: MemoryStore) -> ParentSettings:
    try:
        return ParentSettings.from_json(store.setting(KEY))
    except (ConfigError, TypeError, ValueError):  # a hand-edited or damaged row: safe defaults, not a crash
        return ParentSettings()


def save(store: MemoryStore, settings: ParentSettings) -> None:
    """Store the settings; consent to recognise voices withdrawn erases every voiceprint with it."""
    store.put_setting(KEY, settings.to_json())
    if not settings.voice_id:
        store.delete_voiceprint()


def start_of_today(now: dt.datetime) -> float:
    return now.replace(hour=0, minute=0, second=0, microsecond=0).timestamp()


def gate(settings: ParentSettings, talk_s_today: float, child: str, now: dt.datetime) -> str | None:
    """The fixed line the robot says instead of answering ("quiet_hours", "daily_limit") or None.

    Pure: the caller reads today's talk time (``MemoryStore.talk_seconds`` since ``start_of_today``)."""
    if settings.quiet_now(now):
        return "quiet_hours"
    limit = settings.limit_s(child)
    if limit is not None and talk_s_today >= limit:
        return "daily_limit"
    return None


LINES = {"quiet_hours": RESTING_LINE, "daily_limit": WIND_DOWN_LINE}

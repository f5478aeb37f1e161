"""Who is speaking, per area: from the RTP audio-level header extension (RFC 6464) the publishers
send with every audio packet, read as the packets arrive (rooms/aiortc_hooks.py), nothing decoded.

The loudest unmuted voice of an area above THRESHOLD becomes its active speaker once it has been
the loudest for HOLD seconds, and the active speaker changes at most every MIN_GAP seconds, so a
cough or a word of assent does not move the highlight (docs/protocol.md, `speaker.active`)."""
from __future__ import annotations

import math
from typing import Optional

from .participant import LOBBY, Participant

SAMPLE = 0.1     # seconds between two looks at the levels
THRESHOLD = 55   # -dBov: louder than -55 dBov is a voice (127 is silence, 0 the loudest)
HOLD = 0.3       # the loudest this long before becoming the active speaker
MIN_GAP = 1.0    # at most one change per area this often


class SpeakerDetector:
    def __init__(self) -> None:
        self.active: dict[str, Optional[str]] = {}            # area -> participant id
        self._candidate: dict[str, tuple[str, float]] = {}    # area -> (participant id, loudest since)
        self._changed_at: dict[str, float] = {}

    def sample(self, participants: dict[str, Participant], now: float) -> dict[str, Optional[str]]:
        """Look at the levels heard since the last sample; returns the areas whose speaker changed."""
        loudest: dict[str, tuple[int, str]] = {}
        for p in participants.values():
            if p.area == LOBBY:
                continue
            for producer in p.producers.values():
                if producer.kind != "audio":
                    continue
                level = producer.take_level()
                if level is None or producer.paused or producer.closed or p.muted.get("audio") or level > THRESHOLD:
                    continue
                if p.area not in loudest or level < loudest[p.area][0]:
                    loudest[p.area] = (level, p.id)
        changes: dict[str, Optional[str]] = {}
        for area, pid in list(self.active.items()):  # the speaker left the area, or was muted
            who = participants.get(pid) if pid else None
            if pid and (who is None or who.area != area or who.muted.get("audio")):
                self.active[area] = changes[area] = None
        for area, (_level, pid) in loudest.items():
            if self.active.get(area) == pid:
                self._candidate.pop(area, None)
                continue
            candidate = self._candidate.get(area)
            if candidate is None or candidate[0] != pid:
                self._candidate[area] = (pid, now)
                continue
            if now - candidate[1] >= HOLD and now - self._changed_at.get(area, -math.inf) >= MIN_GAP:
                self.active[area] = changes[area] = pid
                self._changed_at[area] = now
                self._candidate.pop(area, None)
        return changes

"""Per-viewer adaptation: what each viewer's downlink carries, and which video it gets how.

Every TICK seconds the room measures, for each viewer (a subscribe connection), what the
server sent it (payload and RTP overhead, retransmissions included) and what its receiver
reports said (loss fraction, REMB, round trip), and keeps an estimate of its downlink:
unlimited until the link shows congestion (loss, a growing round trip, a REMB below what is
sent), then cut to what got through, and raised while the link stays clean, with a longer
wait after each raise that failed (so a narrow link is not probed into loss every few seconds:
audio suffers most from that). Once the wait is over the estimate steps straight to what the
next level needs, one level at a time with PROBE_HOLD between them, instead of creeping there:
levels are coarse, and creeping from the floor to everything in full took ~30 s after a link
widened again, on top of the wait. Within the estimate, audio of everyone in the viewer's
area comes first and is never touched; each video is forwarded FULL, REDUCED (temporal layer 0
of a VP8 stream published with L1T3: a quarter of the frames, about half the bits), SMALL (the
publisher's second, small encoding of the camera: a sixteenth of the pixels, a tenth of the
bits; without it a 150 kbit/s link could show no video at all, since even layer 0 of the camera
did not fit) or PAUSED, in priority order: the mediator's video first, then the others in the
order they joined; a shared screen (docs/protocol.md, "Screen sharing") comes before every camera.
A viewer who asked for audio only gets no video at all.

Each participant also gets a connection `quality` (good / fair / poor) from the loss and round
trip of its own links both ways and from what adaptation had to do for it. docs/protocol.md
("Link quality and adaptation") documents the figures and levels.
"""
from __future__ import annotations

import collections
import logging
import math
import time
from typing import TYPE_CHECKING, Optional

from . import aiortc_hooks as hooks
from .media import FULL, PAUSED, REDUCED, SMALL, Producer

if TYPE_CHECKING:
    from .participant import Participant
    from .peers import SubscribeSession

log = logging.getLogger("mediation.rooms.adaptation")

TICK = 0.5
FLOOR = 48_000            # bit/s: the estimate never goes below (two Opus streams and overhead)
# Loss alone means congestion only when it is heavy: random loss (3 %, 10 % on mobile data) is
# not cured by sending less, and reading it as congestion paused the video of a party on a 3 %
# lossy link (bench/network.py). A link that is full shows a queue (QUEUE_DELAY) or heavy loss.
CONGESTED_LOSS = 0.25     # loss fraction in a receiver report that means the link is full
CLEAN_LOSS = 0.12         # below it (and without a queue) the estimate may rise
RTT_WINDOW = 10.0         # s over which the link's own round trip is the minimum seen
QUEUE_DELAY = 0.25        # s of round trip above the link's own minimum: a queue is building
CUT = 0.85                # after congestion, the estimate is this share of what got through
RAISE = 1.06              # per tick while clean (about +12 %/s)
RAISE_WAIT = 4.0          # s after a cut before raising again; doubles when a raise fails
RAISE_WAIT_MAX = 32.0
UPGRADE_AFTER = 2         # ticks a higher level must fit before it is used
PROBE_HOLD = 3.0          # s a new level must stay clean before the estimate steps to the next
# Without congestion a level goes down only when it would not fit even in this much more than
# the estimate: the rates of what is forwarded vary (keyframes, motion), and the lab saw a
# viewer's videos flap between reduced and paused at a steady estimate on a clean link.
DOWN_SLACK = 1.25
QUEUE_TICKS = 2           # consecutive ticks with a queue before it counts (one late report on a
                          # busy host is not a queue)
# A report losing this much right after a clean one (or as a stream's first) is not trusted
# alone: after an outage the first report counts what was lost while the link was down, and an
# outage is not congestion (cutting on it paused a party's video for ~18 s, or for good, after a
# 6 s outage in the lab). A link really too narrow shows it again in the next report.
SPIKE_LOSS = 0.5
AUDIO_RESERVE = 1.25      # audio streams get this share over what they use (Opus varies)
SMALL_MIN_RATE = 8_000    # bit/s: a small encoding sending less is not there (the browser dropped it)
ORDER = {FULL: 3, REDUCED: 2, SMALL: 1, PAUSED: 0}


def _video(v: tuple) -> tuple:
    """A video to allocate: (producer id, full rate, layer-0 rate or None, small encoding's rate
    or None); the last may be left out."""
    return v if len(v) == 4 else (*v, None)


def cost(level: str, full: float, reduced: Optional[float], small: Optional[float]) -> float:
    return {FULL: full, REDUCED: reduced or 0.0, SMALL: small or 0.0}.get(level, 0.0)


def available(level: str, reduced: Optional[float], small: Optional[float]) -> bool:
    return level in (FULL, PAUSED) or (level == REDUCED and reduced is not None) or (level == SMALL and small is not None)


class Rate:
    """Bits per second of a growing byte counter, smoothed over about a second."""

    def __init__(self) -> None:
        self.value = 0.0
        self._last: Optional[tuple[float, int]] = None

    def update(self, now: float, total: int) -> float:
        if self._last is not None:
            dt = now - self._last[0]
            if dt > 0:
                sample = max(total - self._last[1], 0) * 8 / dt
                self.value = sample if self.value == 0 else 0.5 * self.value + 0.5 * sample
        self._last = (now, total)
        return self.value


def is_spike(fb) -> bool:
    """A report that loses SPIKE_LOSS or more right after a clean one (or as the first)."""
    return fb.loss >= SPIKE_LOSS and (fb.prev_loss is None or fb.prev_loss < CONGESTED_LOSS)


def reports_of(senders: list) -> list[tuple]:
    """What each forwarding sender's viewer reported: (ViewerFeedback or None, round trip or None,
    mean bytes per packet sent or None)."""
    return [(hooks.sender_feedback(sender), hooks.sender_rtt(sender), hooks.sender_packet_bytes(sender))
            for sender in senders]


def delivered(now: float, reports: list) -> float:
    """bit/s that reached the viewer by its receiver reports (packets received per second in each
    stream's latest window, times the mean packet size sent on it); 0 when nothing says."""
    total = 0.0
    for report in reports:
        fb, size = report[0], report[2] if len(report) > 2 else None
        if fb is not None and size and fb.loss_at is not None and now - fb.loss_at < hooks.LOSS_STALE:
            total += fb.received_pps * size * 8
    return total


class ViewerLink:
    """The estimate of one viewer's downlink, and what it was given."""

    def __init__(self) -> None:
        self.estimate: Optional[float] = None  # bit/s; None: no sign of a limit yet
        self.sent = Rate()
        self.loss = 0.0
        self.rtt: Optional[float] = None
        self.base_rtt: Optional[float] = None
        self.remb: Optional[int] = None
        self.audio_only = False
        self.levels: dict[str, str] = {}      # producer id -> level given
        self._pending: dict[str, int] = {}    # producer id -> ticks a higher level has fitted
        self._cut_at = -math.inf
        self._raised_at = -math.inf
        self._before_probe: Optional[float] = None  # what the levels before the latest step up need
        self._wait = RAISE_WAIT
        self._rtts: collections.deque = collections.deque()  # (time, rtt) of the last RTT_WINDOW s
        self._queue_ticks = 0
        self.congested = False
        self.next_need: Optional[float] = None  # estimate at which the next level up would fit

    def observe(self, now: float, sent_bytes: int, reports: list, demand: float, video_flowing: bool = True) -> bool:
        """Take in the latest counters and reports; True when the link is congested now.
        `reports`: (ViewerFeedback or None, the round trip or None[, bytes per packet]) per
        forwarding sender (see reports_of); `demand`: what this viewer would get with everything in full (bit/s);
        `video_flowing`: some video goes to it now (only then does its REMB say anything)."""
        sent = self.sent.update(now, sent_bytes)
        losses, rtts = [], []
        # The worst loss of a window that began after the last cut: one report cuts once, and a
        # window still counting what was sent before the cut (a queue draining) does not cut
        # again (two cuts a second apart took a 300 kbit/s link to 75 in the lab).
        new_loss = 0.0
        remb = None
        for fb, rtt, *_ in reports:
            if fb is not None and fb.loss_at is not None and now - fb.loss_at < 3:
                if not is_spike(fb):
                    losses.append(fb.loss)
                    if (fb.loss_from if fb.loss_from is not None else fb.loss_at) >= self._cut_at:
                        new_loss = max(new_loss, fb.loss)
            if fb is not None and fb.remb_at is not None and now - fb.remb_at < 3:
                remb = fb.remb
            if rtt is not None and rtt >= 0:  # aiortc's estimate can dip below 0 on a fast link
                rtts.append(rtt)
        self.loss = max(losses) if losses else 0.0
        self.remb = remb
        self.rtt = min(rtts) if rtts else None
        if self.rtt is not None:
            self._rtts.append((now, self.rtt))
            while self._rtts and now - self._rtts[0][0] > RTT_WINDOW:
                self._rtts.popleft()
            self.base_rtt = min(r for _, r in self._rtts)
        queued = self.rtt is not None and self.base_rtt is not None and self.rtt - self.base_rtt > QUEUE_DELAY
        self._queue_ticks = self._queue_ticks + 1 if queued else 0
        queueing = self._queue_ticks >= QUEUE_TICKS
        # The viewer's REMB is shown, not used: Chrome's receive-side estimate starts low and
        # climbs far slower than what a room sends a new viewer (and after a pause it describes
        # the audio alone), so it throttled healthy viewers; loss and queueing delay decide.
        congested = self.congested = new_loss >= CONGESTED_LOSS or queueing
        if congested:
            # Let the last cut take effect first (what was queued before it drains).
            if now - self._cut_at > 1.0 + (self.rtt or 0.0) and sent > 0:
                # What the receiver counted, where it says: the loss of a window filled while a
                # burst (keyframes after a level change) overflowed the queue, applied to what is
                # sent now, cut a 300 kbit/s link to 116 in the lab.
                arrived = delivered(now, reports)
                got_through = max(sent * (1 - self.loss), arrived)
                target = max(FLOOR, CUT * got_through)
                if self.estimate is None or target < self.estimate:
                    if now - self._raised_at < 5:  # the last raise did not fit: wait longer next time
                        self._wait = min(self._wait * 2, RAISE_WAIT_MAX)
                        # and go back to what the levels before it need: they held. The raise's
                        # own burst (a keyframe of the bigger stream overflowing the queue) made
                        # the loss, and cutting on it paused every video in the lab.
                        if self._before_probe is not None:
                            target = max(target, self._before_probe)
                    self._before_probe = None
                    log.info("viewer link cut to %.0f kbit/s: loss %.3f, rtt %s ms (base %s ms), sent %.0f kbit/s, "
                             "delivered %.0f kbit/s", target / 1000, self.loss,
                             None if self.rtt is None else round(self.rtt * 1000),
                             None if self.base_rtt is None else round(self.base_rtt * 1000), sent / 1000,
                             arrived / 1000)
                    self.estimate = target
                    self._cut_at = now
        elif self.estimate is not None and self.loss < CLEAN_LOSS and losses:  # raised on fresh reports only
            if now - self._cut_at > self._wait:
                self.estimate *= RAISE
                if self.next_need is not None and not self._pending and now - self._raised_at > PROBE_HOLD:
                    self.estimate = max(self.estimate, self.next_need)
            if now - self._cut_at > 30:
                self._wait = RAISE_WAIT
            if demand > 0 and self.estimate > 1.5 * demand and now - self._cut_at > 10:
                self.estimate = None  # room for everything in full, for a while: no limit known
        return congested

    def over_budget(self) -> bool:
        return self.estimate is not None and self.sent.value > 1.1 * self.estimate

    def allocate(self, now: float, audio: list[float], videos: list[tuple]) -> dict[str, str]:
        """Levels for this viewer's videos, given (producer id, full rate, reduced rate or None[,
        small encoding's rate or None]) in priority order and the rates of its audio streams."""
        self.next_need = None
        videos = [_video(v) for v in videos]
        if self.audio_only:
            return {v[0]: PAUSED for v in videos}
        if self.estimate is None:
            return {v[0]: FULL for v in videos}
        want = self._want(self.estimate, audio, videos)
        if any(level != FULL for level in want.values()):
            need = self.estimate  # the next estimate that gives some video more (levels are coarse)
            for _ in range(80):
                need *= RAISE
                if self._want(need, audio, videos) != want:
                    self.next_need = need
                    break
        if not self.congested:  # keep what it has, in order, while that fits in DOWN_SLACK more
            slack = self.estimate * DOWN_SLACK - AUDIO_RESERVE * sum(audio) \
                - sum(cost(want[pid], full, reduced, small) for pid, full, reduced, small in videos)
            for pid, full, reduced, small in videos:
                had = self.levels.get(pid, FULL)
                if not available(had, reduced, small):
                    continue
                extra = cost(had, full, reduced, small) - cost(want[pid], full, reduced, small)
                if extra > 0 and extra <= slack:
                    want[pid] = had
                    slack -= extra
        levels = self._step(now, want, videos)
        if any(ORDER[levels[v[0]]] > ORDER[self.levels.get(v[0], FULL)] for v in videos):
            self._before_probe = AUDIO_RESERVE * sum(audio) + sum(
                cost(self.levels.get(pid, FULL), full, reduced, small) for pid, full, reduced, small in videos)
        return levels

    @staticmethod
    def _want(estimate: float, audio: list[float], videos: list[tuple]) -> dict[str, str]:
        budget = estimate - AUDIO_RESERVE * sum(audio)
        want: dict[str, str] = {}
        for pid, full, reduced, small in videos:  # everyone the smallest that shows them, in order
            level = SMALL if small is not None else REDUCED if reduced is not None else FULL
            need = cost(level, full, reduced, small)
            if budget >= need:
                want[pid] = level
                budget -= need
            else:
                want[pid] = PAUSED
        for pid, full, reduced, small in videos:  # then better quality, in order, while it fits
            if want[pid] == PAUSED:
                continue
            have = cost(want[pid], full, reduced, small)
            for level in (FULL, REDUCED):
                if ORDER[level] <= ORDER[want[pid]] or not available(level, reduced, small):
                    continue
                extra = cost(level, full, reduced, small) - have
                if budget >= extra:
                    want[pid] = level
                    budget -= extra
                    break
        return want

    def _step(self, now: float, want: dict[str, str], videos: list) -> dict[str, str]:
        """What is given now: down at once, up only when it fitted for a while, and not while
        waiting after a cut."""
        levels = {}
        for pid, *_ in videos:
            had = self.levels.get(pid, FULL)
            if ORDER[want[pid]] > ORDER[had]:
                ticks = self._pending.get(pid, 0) + 1
                if ticks >= UPGRADE_AFTER and now - self._cut_at > self._wait:
                    levels[pid] = want[pid]
                    self._pending.pop(pid, None)
                    self._raised_at = now
                else:
                    self._pending[pid] = ticks
                    levels[pid] = had
            else:
                self._pending.pop(pid, None)
                levels[pid] = want[pid]
        return levels


class Adaptation:
    """The room's adaptation pass: rates of every producer, each viewer's link and levels,
    and each participant's quality. `enabled=False` measures but forwards everything
    (the benchmark's baseline, ADAPTATION=off)."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self._rates: dict[str, Rate] = {}
        self._base_rates: dict[str, Rate] = {}
        self._received: dict[str, tuple[int, int]] = {}   # producer id -> (expected, received) last tick
        self.loss_up: dict[str, float] = {}               # producer id -> loss fraction last window
        self.links: dict[str, ViewerLink] = {}            # viewer participant id -> its link

    def link(self, viewer_id: str) -> ViewerLink:
        link = self.links.get(viewer_id)
        if link is None:
            link = self.links[viewer_id] = ViewerLink()
        return link

    def forget(self, participant_id: str, producers: list[Producer]) -> None:
        self.links.pop(participant_id, None)
        for producer in [*producers, *(p.small for p in producers if p.small is not None)]:
            for table in (self._rates, self._base_rates, self._received, self.loss_up):
                table.pop(producer.id, None)

    def producer_rates(self, now: float, producer: Producer) -> tuple[float, Optional[float]]:
        """(full, layer-0 or None) bit/s with RTP overhead, of what the producer receives."""
        rate = self._rates.setdefault(producer.id, Rate())
        full = rate.update(now, producer.bytes_in + hooks.PACKET_OVERHEAD * producer.frames_in)
        if not producer.layered:
            return full, None
        base = self._base_rates.setdefault(producer.id, Rate()).update(now, producer.bytes_base)
        return full, base * 1.08  # layer-0 payload and its packets' overhead (~1,100-byte packets)

    def tick(self, participants: dict[str, "Participant"], now: Optional[float] = None) -> bool:
        """One pass; True when any level or quality changed (the room pushes its state)."""
        now = time.monotonic() if now is None else now
        rates: dict[str, tuple[float, Optional[float]]] = {}
        # Priority of each publisher's video: the mediator's first, then in the order they joined.
        rank = {p.id: (0 if p.role == "mediator" else 1, p.joined_at) for p in participants.values()}
        for participant in participants.values():
            for producer in participant.producers.values():
                if not producer.closed:
                    rates[producer.id] = self.producer_rates(now, producer)
                    self._measure_uplink(producer)
                    small = producer.small
                    if small is not None and not small.closed:
                        rates[small.id] = self.producer_rates(now, small)
        changed = False
        for participant in participants.values():
            session = participant.subscribe
            if session is None or session.closed:
                continue
            changed |= self._viewer(now, participant, session, rates, rank)
        for participant in participants.values():
            # The round trip its viewing legs measure paces the NACKs sent to it as a publisher
            # (rooms/aiortc_hooks.py, give_up_times): the same client, the same path.
            link = self.links.get(participant.id)
            rtt = link.rtt if link is not None else None
            for producer in participant.producers.values():
                producer.set_uplink_rtt(rtt)
        return changed

    def _measure_uplink(self, producer: Producer) -> None:
        receiver = producer.receiver
        if receiver is None:
            return
        expected, received = hooks.receiver_counts(receiver)
        before = self._received.get(producer.id)
        self._received[producer.id] = (expected, received)
        if before is not None and expected - before[0] >= 20:  # enough packets to say
            lost = (expected - before[0]) - (received - before[1])
            self.loss_up[producer.id] = min(max(lost / (expected - before[0]), 0.0), 1.0)

    def _viewer(self, now: float, participant: "Participant", session: "SubscribeSession",
                rates: dict[str, tuple[float, Optional[float]]], rank: dict[str, tuple]) -> bool:
        link = self.link(participant.id)
        consumers = [c for c in session.consumers.values() if not c.closed]
        audio = [rates.get(c.producer.id, (0.0, None))[0] for c in consumers if c.producer.kind == "audio"]
        demand = sum(audio) + sum(rates.get(c.producer.id, (0.0, None))[0] for c in consumers if c.producer.kind == "video")
        flowing = any(link.levels.get(c.producer.id, FULL) != PAUSED for c in consumers if c.producer.kind == "video")
        link.observe(now, session.bytes_out(), reports_of(session.senders()), demand, flowing)
        session.hold_retransmits(self.enabled and link.over_budget())
        # A shared screen first (like evidence, it is what everyone is looking at), then cameras.
        videos = sorted((c for c in consumers if c.producer.kind == "video"),
                        key=lambda c: (c.producer.role != "screen", rank.get(c.producer.participant_id, (2, 0.0))))
        levels = {pid: FULL for pid in (c.producer.id for c in videos)}
        if self.enabled:
            levels = link.allocate(now, audio, [(c.producer.id, *rates.get(c.producer.id, (0.0, None)),
                                                 self._small_rate(c.producer, rates)) for c in videos])
        changed = levels != link.levels
        if changed:
            log.info("viewer %s: %s (estimate %s kbit/s)", participant.id,
                     ", ".join(f"{pid} {level}" for pid, level in sorted(levels.items())),
                     None if link.estimate is None else round(link.estimate / 1000))
        link.levels = levels
        for consumer in videos:
            consumer.set_level(levels.get(consumer.producer.id, FULL))
        return changed

    @staticmethod
    def _small_rate(producer: Producer, rates: dict) -> Optional[float]:
        small = producer.small
        if small is None or small.closed:
            return None
        rate = rates.get(small.id, (0.0, None))[0]
        return rate if rate >= SMALL_MIN_RATE else None

    def quality(self, participant: "Participant") -> Optional[str]:
        """good / fair / poor from its links both ways and what adaptation did for it."""
        link = self.links.get(participant.id)
        ups = [self.loss_up[p.id] for p in participant.producers.values() if p.id in self.loss_up]
        if (link is None or link.sent.value == 0) and not ups:
            return None
        loss = max([*ups, link.loss if link else 0.0])
        rtt = link.rtt if link else None
        levels = list(link.levels.values()) if link and not link.audio_only else []
        if loss > 0.10 or (rtt is not None and rtt > 1.0) or PAUSED in levels:
            return "poor"
        if loss > 0.03 or (rtt is not None and rtt > 0.4) or REDUCED in levels or SMALL in levels:
            return "fair"
        return "good"

    def details(self, participant: "Participant", rates_of) -> dict:
        """The figures behind quality, for the mediator's page."""
        link = self.links.get(participant.id)
        ups = [self.loss_up[p.id] for p in participant.producers.values() if p.id in self.loss_up]
        up_rate = sum(rates_of(p) for p in participant.producers.values() if not p.closed)
        return {
            "rtt_ms": round(link.rtt * 1000) if link and link.rtt is not None else None,
            "loss_up": round(max(ups), 3) if ups else None,
            "loss_down": round(link.loss, 3) if link else None,
            "kbps_up": round(up_rate / 1000) if up_rate else None,
            "kbps_down": round(link.sent.value / 1000) if link and link.sent.value else None,
            "budget_kbps": round(link.estimate / 1000) if link and link.estimate is not None else None,
        }

    def rate_of(self, producer: Producer) -> float:
        rate = self._rates.get(producer.id)
        return rate.value if rate else 0.0


"""Process-wide media counters, read by the metrics endpoint (server/http/metrics.py).

Plain ints bumped on the forwarding hot path: an attribute increment costs tens of
nanoseconds, a prometheus_client call several times that plus a lock. They only grow;
the scrape turns them into Prometheus counters. Imports nothing of prometheus_client.
"""

from __future__ import annotations

import threading


class MediaStats:
    __slots__ = ("forwarded_frames", "forwarded_bytes", "forwarded_packets", "recorded_bytes", "_lock")

    def __init__(self) -> None:
        # Encoded frames (an Opus packet, a whole video picture) and their payload bytes
        # handed to viewers' senders. Event loop only: no lock needed.
        self.forwarded_frames = 0
        self.forwarded_bytes = 0
        # RTP packets those frames became on the viewers' senders (a video picture is several).
        self.forwarded_packets = 0
        # Bytes recording files grew by. Bumped from recorder writer threads (one per
        # recorder), hence the lock; that happens per muxer flush, not per frame.
        self.recorded_bytes = 0
        self._lock = threading.Lock()

    def add_recorded(self, n: int) -> None:
        with self._lock:
            self.recorded_bytes += n


STATS = MediaStats()

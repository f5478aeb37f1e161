"""The Router: the one place deciding which producers a participant consumes."""

from __future__ import annotations

from typing import Iterable

from .media import Producer
from .participant import LOBBY, Participant


class Router:
    """Same area only; the lobby gets nothing; no grant, no media; never oneself."""

    def __init__(self, participants: dict[str, Participant]) -> None:
        self._participants = participants

    def may_consume(self, subscriber: Participant, producer: Producer) -> bool:
        if producer.closed or subscriber.area == LOBBY or not subscriber.can("subscribe"):
            return False
        if producer.participant_id == subscriber.id:
            return False
        publisher = self._participants.get(producer.participant_id)
        return publisher is not None and publisher.area == subscriber.area

    def producers_for(self, subscriber: Participant) -> dict[str, Producer]:
        if subscriber.area == LOBBY or not subscriber.can("subscribe"):
            return {}
        wanted: dict[str, Producer] = {}
        for publisher in self._participants.values():
            if publisher is subscriber or publisher.area != subscriber.area:
                continue
            for producer in publisher.producers.values():
                if not producer.closed:
                    wanted[producer.id] = producer
        return wanted

    def audience(self, area: str) -> Iterable[Participant]:
        """Participants whose subscriptions may change when `area` changes."""
        if area == LOBBY:
            return ()
        return [p for p in self._participants.values() if p.area == area]

"""The ops suites reuse the signaling fixtures: a real server (`live`) with a session and join links."""
from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from tests.signaling.conftest import db_url, live, media, settings  # noqa: F401 - fixtures


class Scrape:
    """One parsed /metrics answer: sample values by name and labels."""

    def __init__(self, text: str):
        self.families = {f.name: f for f in text_string_to_metric_families(text)}
        self.samples = {(s.name, frozenset(s.labels.items())): s.value
                        for f in self.families.values() for s in f.samples}

    def __call__(self, name: str, **labels) -> float:
        return self.samples[(name, frozenset(labels.items()))]


async def scrape(http, base_url: str) -> Scrape:
    async with http.get(base_url + "/metrics") as r:
        assert r.status == 200, await r.text()
        assert r.headers["Content-Type"].startswith("text/plain")
        return Scrape(await r.text())

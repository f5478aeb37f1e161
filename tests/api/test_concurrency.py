"""Case numbers stay unique when many residents file at the same moment."""
from __future__ import annotations

import asyncio

from server.core import audit

from .helpers import case_body, seed


async def test_concurrent_filings_get_unique_sequential_numbers(client, db):
    w = await seed(db)
    n = 25
    responses = await asyncio.gather(*[client.post("/api/v1/cases", json=case_body(w.inst_a, title=f"并发 {i}"))
                                       for i in range(n)])
    bodies = [await r.json() for r in responses]
    assert [r.status for r in responses] == [201] * n, bodies
    numbers = sorted(b["case"]["number"] for b in bodies)
    year = numbers[0].split("-")[1]
    assert numbers == [f"CG-{year}-{i:06d}" for i in range(1, n + 1)]
    async with db.session() as s:
        assert await audit.verify_chain(s) == []

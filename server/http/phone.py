"""The telephone entry of a serving node (SIP_LISTEN): the SIP endpoint of phone/, given the dial-in
check of the services and this node's own URL, started and stopped with the app (create_app)."""
from __future__ import annotations

import logging

from phone.call import Verdict
from phone.endpoint import Endpoint, parse_listen
from phone.prompts import Prompts
from server.core.errors import Conflict, Unauthorized
from server.core.throttle import Caller, TooManyAttempts
from server.services.procedure import rules as procedure

log = logging.getLogger("mediation.phone")


def make_endpoint(system) -> Endpoint:
    settings = system.settings

    async def dial_in(number: str, pin: str, address: str, caller_digits: str) -> Verdict:
        try:
            async with system.db.session() as s:
                token = await procedure.dial_in(s, number, pin, Caller(address=address), secret=settings.secret_key,
                                                caller_digits=caller_digits)
            return Verdict("ok", token)
        except TooManyAttempts as exc:
            return Verdict("throttled", wait=exc.wait)
        except Conflict as exc:
            return Verdict("ended" if exc.code == "session_ended" else "wrong")
        except Unauthorized:
            return Verdict("wrong")

    return Endpoint(parse_listen(settings.sip_listen), prompts=Prompts(settings.data_dir / "phone-prompts"),
                    dial_in=dial_in, server_url=settings.node_url)

"""The case state machine: which action moves a case from which states to which state."""
from __future__ import annotations

from server.core.errors import IllegalTransition

STATUSES = [
    "filed", "accepted", "rejected", "transferred", "assigned", "in_mediation",
    "settled", "failed", "withdrawn", "archived",
]

OPEN_STATUSES = {"filed", "transferred", "accepted", "assigned", "in_mediation"}

# action -> (states it may start from, resulting state)
TRANSITIONS: dict[str, tuple[frozenset[str], str]] = {
    "accept": (frozenset({"filed", "transferred"}), "accepted"),
    "reject": (frozenset({"filed", "transferred"}), "rejected"),
    # 分流: before or after accepting, the case can go to a better-placed institution.
    "transfer": (frozenset({"filed", "transferred", "accepted"}), "transferred"),
    "assign": (frozenset({"accepted", "assigned"}), "assigned"),
    # A declared conflict of interest, or a granted recusal request, returns the case to intake.
    "unassign": (frozenset({"assigned", "in_mediation"}), "accepted"),
    # Opening a session starts mediation; later sessions keep the case in mediation.
    "open_session": (frozenset({"assigned", "in_mediation"}), "in_mediation"),
    "settle": (frozenset({"in_mediation"}), "settled"),
    "fail": (frozenset({"in_mediation"}), "failed"),
    "withdraw": (frozenset({"filed", "transferred", "accepted", "assigned", "in_mediation"}), "withdrawn"),
    "archive": (frozenset({"rejected", "settled", "failed", "withdrawn"}), "archived"),
}


def next_status(action: str, current: str) -> str:
    allowed_from, target = TRANSITIONS[action]
    if current not in allowed_from:
        raise IllegalTransition(
            f"A case that is '{current}' cannot be moved by '{action}'; "
            f"allowed from: {', '.join(sorted(allowed_from))}.",
            fields={"status": current, "action": action},
        )
    return target

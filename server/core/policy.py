"""Who may do what. The one place role checks live; the API, the pages and signaling call it."""
from __future__ import annotations

from dataclasses import dataclass

from server.core.audit import ActorRef
from server.core.errors import Forbidden, Unauthorized
from server.core.models import Case, User


@dataclass
class Actor:
    """The caller: a logged-in staff member, an applicant proven by access code, or nobody."""

    user: User | None = None
    applicant_case_id: int | None = None
    applicant_name: str = ""

    @property
    def role(self) -> str:
        if self.user:
            return self.user.role
        return "applicant" if self.applicant_case_id else "anonymous"

    @property
    def is_staff(self) -> bool:
        return self.user is not None

    def ref(self) -> ActorRef:
        if self.user:
            return ActorRef("staff", str(self.user.id), self.user.name or self.user.username)
        if self.applicant_case_id:
            return ActorRef("applicant", str(self.applicant_case_id), self.applicant_name)
        return ActorRef("anonymous", "", "")


ANONYMOUS = Actor()


def require_staff(actor: Actor, *roles: str) -> User:
    if not actor.user:
        raise Unauthorized("Please log in as staff.")
    if roles and actor.user.role not in roles:
        raise Forbidden(f"This needs one of the roles: {', '.join(roles)}.")
    return actor.user


def can_view_case(actor: Actor, case: Case) -> bool:
    if actor.applicant_case_id is not None:
        return actor.applicant_case_id == case.id
    u = actor.user
    if u is None:
        return False
    if u.role == "admin":
        return True
    if u.role == "mediator":
        return case.mediator_id == u.id
    if u.role == "clerk" and u.institution_id is None:
        return True  # a county-level clerk reads every institution's cases
    if u.role in ("intake", "clerk"):
        return u.institution_id == case.institution_id
    return False


def require_view(actor: Actor, case: Case) -> None:
    if not actor.user and actor.applicant_case_id is None:
        raise Unauthorized("Please log in as staff.")
    if not can_view_case(actor, case):
        raise Forbidden("You have no access to this case.")


def require_intake_for(actor: Actor, case: Case) -> User:
    """Accept, reject, transfer, assign, archive: intake staff of the case's institution, or admin."""
    u = require_staff(actor, "intake", "admin")
    if u.role == "intake" and u.institution_id != case.institution_id:
        raise Forbidden("This case belongs to another institution.")
    return u


# Roles invited with the party they accompany (its `party_id`): they go through the join steps,
# the lobby and the caucuses with that party (docs/procedure.md, "Interpreters and support persons").
ACCOMPANYING_ROLES = ("interpreter", "support")
# Roles whose link names a party: the party itself, or the party accompanied.
PARTY_LINK_ROLES = ("party", *ACCOMPANYING_ROLES)


def require_case_mediator(actor: Actor, case: Case) -> User:
    u = require_staff(actor, "mediator")
    if case.mediator_id != u.id:
        raise Forbidden("Only the mediator assigned to this case may do this.")
    return u


def case_scope(actor: Actor):
    """A SQL filter for the cases a staff member may list."""
    u = require_staff(actor)
    if u.role == "admin" or (u.role == "clerk" and u.institution_id is None):
        return None
    if u.role == "mediator":
        return Case.mediator_id == u.id
    return Case.institution_id == u.institution_id

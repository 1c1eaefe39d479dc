"""Member errors."""

from habitue.errors import Conflict, HabitueError, NotFound


class MemberNotFound(NotFound):
    type = "member-not-found"
    title = "Member not found"


class CardNotFound(NotFound):
    type = "card-not-found"
    title = "Card not found"


class InvalidCardNumber(HabitueError):
    status = 422
    type = "invalid-card-number"
    title = "Invalid card number"


class DuplicateMember(Conflict):
    type = "duplicate-member"
    title = "Member already exists"


class MemberNotActive(Conflict):
    type = "member-not-active"
    title = "Member is not active"


class CardBlocked(Conflict):
    type = "card-blocked"
    title = "Card is blocked"

"""Errors of the rules domain."""

from __future__ import annotations

from habitue.errors import Conflict, HabitueError, NotFound


class RuleValidationError(ValueError):
    """A rule that cannot be saved: `field` names the bad field, `message` says why.

    `line` and `column` (1-based) point into the CEL source when the error is inside an
    expression and the position is known.
    """

    def __init__(
        self, field: str, message: str, *, line: int | None = None, column: int | None = None
    ) -> None:
        self.field = field
        self.message = message
        self.line = line
        self.column = column
        where = f" (line {line}, column {column})" if line is not None else ""
        super().__init__(f"{field}: {message}{where}")

    def as_dict(self) -> dict[str, object]:
        """The error as a JSON-ready mapping for a problem+json `errors` entry."""
        out: dict[str, object] = {"field": self.field, "message": self.message}
        if self.line is not None:
            out["line"] = self.line
            out["column"] = self.column
        return out


class InvalidRule(HabitueError):
    """A rule that cannot be saved (422): the entry names the field and the CEL position."""

    status = 422
    type = "invalid-rule"
    title = "Invalid rule"

    @classmethod
    def of(cls, exc: RuleValidationError) -> InvalidRule:
        """The problem for a `RuleValidationError`."""
        return cls(str(exc), errors=[exc.as_dict()])


class RuleNotFound(NotFound):
    """No rule with that code in the program (or it was deleted)."""


class RuleExists(Conflict):
    """A live rule already has that code."""

    type = "rule-exists"


class BudgetExhausted(Conflict):
    """A concurrent event used the rule's remaining budget first: retrying decides again."""

    type = "rule-budget-race"

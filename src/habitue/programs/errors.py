"""Program errors."""

from habitue.errors import Conflict, NotFound


class ProgramNotFound(NotFound):
    type = "program-not-found"
    title = "Program not found"


class ProgramExists(Conflict):
    type = "program-exists"
    title = "Program already exists"


class ApiKeyNotFound(NotFound):
    type = "api-key-not-found"
    title = "API key not found"

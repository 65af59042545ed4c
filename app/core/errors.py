"""The project's small exception tree: every failure a user can meet is one of these."""

from __future__ import annotations


class PipelineError(Exception):
    """Base class: a failure with a message meant for the person running the command."""


class ConfigError(PipelineError):
    """Configuration is missing or contradicts itself (unknown ENV, no database URL...)."""


class ProdGuardError(PipelineError):
    """A destructive or populating command was asked for under ENV=PROD."""


class LiveKeyError(PipelineError):
    """A live Stripe key (sk_live_...) was given to a command that only works in test mode."""


class InputFileError(PipelineError):
    """An input file cannot be read as Stripe JSON at all (missing, not JSON, wrong shape)."""

    def __init__(self, path: object, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason
        self.partial: object = None  # what was loaded before the file broke off, if anything


class TransformError(PipelineError):
    """One Stripe object cannot become a row: it is set aside, the rest go on."""

    def __init__(self, resource: str, object_id: str | None, reason: str) -> None:
        super().__init__(f"{resource} {object_id or '<no id>'}: {reason}")
        self.resource = resource
        self.object_id = object_id
        self.reason = reason


class FetchError(PipelineError):
    """Stripe (or the sandbox) answered in a way the fetch cannot go on from."""


def first_line(exc: BaseException) -> str:
    """An exception's first line: database errors run on with context the user does not need."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__

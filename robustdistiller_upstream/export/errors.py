"""The one error of the exporters."""

from robustdistiller_upstream.errors import UserError


class ExportError(UserError):
    """An export that cannot be made or that failed its own check (nothing is left at the output path)."""

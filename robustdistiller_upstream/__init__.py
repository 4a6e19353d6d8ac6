"""robustdistiller: robust distillation of self-supervised speech models, as an s3prl upstream plugin.

Kept free of heavy imports: the site-packages hook imports this package at every interpreter start.
"""

from robustdistiller_upstream.version import __version__

__all__ = ["__version__", "register"]


def register() -> None:
    """Adds our hub functions to ``s3prl.hub`` (done automatically when s3prl.hub is imported)."""
    from robustdistiller_upstream.s3prl_plugin.registration import register_into_s3prl_hub

    register_into_s3prl_hub()

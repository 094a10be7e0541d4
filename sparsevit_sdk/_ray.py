"""Ray is an optional dependency: import it on first use, with a message that says how to get it."""

from __future__ import annotations

from types import ModuleType

INSTALL_HINT = "pip install 'sparsevit-sdk[ray]'"


def require_ray(feature: str) -> ModuleType:
    """The ``ray`` module, or an ImportError naming ``feature`` and the install command."""
    try:
        import ray
    except ImportError as err:
        raise ImportError(f"{feature} needs Ray, which is not installed; install it with: {INSTALL_HINT}") from err
    return ray

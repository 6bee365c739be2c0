"""Exact-name model registry.

Each model name is a small builder function registered with :func:`register_model`. Names are looked up
exactly (case-insensitively, plus explicit aliases such as the original ``MTNet_xs``); an unknown name
raises with the closest registered names instead of silently building something else, which is what the
original SRTG code's substring dispatch did (``srtg_r3d_50`` built a plain ``r3d_50``).
"""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Callable
from dataclasses import dataclass, field

import torch.nn as nn

__all__ = ["ModelInfo", "register_model", "create_model", "list_models", "model_info", "UnknownModelError"]


class UnknownModelError(KeyError):
    """Raised for a model name that is not registered; the message lists the closest names."""

    def __str__(self) -> str:  # KeyError quotes its message otherwise
        return str(self.args[0])


@dataclass(frozen=True)
class ModelInfo:
    """What the registry knows about one model name.

    Attributes:
        name: canonical lower-case name, e.g. ``srtg_r3d_50``.
        builder: function ``builder(num_classes=..., **options) -> nn.Module``.
        family: family tag, e.g. ``r3d``, ``srtg_r3d``, ``mtnet``, ``efficient3d``.
        paper: one citation line (paper title and arXiv id).
        depth: depth or size tag the name claims (``50``, ``xs``, ``1.0x``), checked by the registry tests.
        aliases: other accepted spellings (the original code's names).
        defaults: builder keyword defaults recorded for documentation (e.g. ``{"width_mult": 1.0}``).
    """

    name: str
    builder: Callable[..., nn.Module]
    family: str
    paper: str = ""
    depth: str = ""
    aliases: tuple[str, ...] = ()
    defaults: dict = field(default_factory=dict)


_MODELS: dict[str, ModelInfo] = {}
_ALIASES: dict[str, str] = {}


def register_model(
    name: str,
    *,
    family: str,
    paper: str = "",
    depth: str = "",
    aliases: tuple[str, ...] = (),
    **defaults,
) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Register a builder under an exact lower-case name.

    Args:
        name: canonical name (lower case).
        family: family tag.
        paper: citation line.
        depth: depth/size tag the name claims.
        aliases: extra accepted spellings, matched case-insensitively.
        **defaults: keyword arguments bound to the builder for this name (lets one builder serve many names).

    Raises:
        ValueError: the name or an alias is already taken, or the name is not lower case.
    """
    if name != name.lower():
        raise ValueError(f"model names are lower case: {name!r}")

    def decorator(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        keys = [name, *(a.lower() for a in aliases)]
        for key in keys:
            if key in _MODELS or key in _ALIASES:
                raise ValueError(f"model name {key!r} is registered twice")
        _MODELS[name] = ModelInfo(name, fn, family, paper, depth, tuple(aliases), dict(defaults))
        for alias in aliases:
            _ALIASES[alias.lower()] = name
        return fn

    return decorator


def _resolve(name: str) -> str:
    key = name.lower()
    if key in _MODELS:
        return key
    if key in _ALIASES:
        return _ALIASES[key]
    candidates = list(dict.fromkeys([*_MODELS, *_ALIASES]))
    close = difflib.get_close_matches(key, candidates, n=5, cutoff=0.5)
    hint = f"; closest: {', '.join(close)}" if close else ""
    raise UnknownModelError(f"unknown model {name!r}{hint} (see `vidnet models`)")


def model_info(name: str) -> ModelInfo:
    """Return the :class:`ModelInfo` for a name or alias."""
    _ensure_loaded()
    return _MODELS[_resolve(name)]


def create_model(name: str, num_classes: int = 400, **options) -> nn.Module:
    """Build a registered model by exact name.

    Args:
        name: model name or alias (case-insensitive), e.g. ``srtg_r3d_50`` or ``MTNet_xs``.
        num_classes: size of the classifier output.
        **options: builder options; they override the name's registered defaults.

    Raises:
        UnknownModelError: the name is not registered (the message lists the closest names).
    """
    info = model_info(name)
    kwargs = {**info.defaults, **options}
    return info.builder(num_classes=num_classes, **kwargs)


def list_models(pattern: str | None = None) -> list[str]:
    """Sorted registered names, optionally filtered by a shell-style wildcard (``srtg_*``)."""
    _ensure_loaded()
    names = sorted(_MODELS)
    if pattern:
        pat = pattern.lower()
        names = [n for n in names if fnmatch.fnmatchcase(n, pat)]
    return names


def resolve_names(spec: str | None) -> list[str]:
    """Names from a comma list of exact names, aliases and shell wildcards (``r3d_18,srtg_*``), in the order
    given, without repeats; None or empty: every registered name.

    Raises:
        UnknownModelError: an exact name that is not registered (with the closest names) or a wildcard that
            matches nothing.
    """
    if not spec or not spec.strip():
        return list_models()
    names: list[str] = []
    for part in (p.strip() for p in spec.split(",")):
        if not part:
            continue
        if any(ch in part for ch in "*?["):
            found = list_models(part)
            if not found:
                raise UnknownModelError(f"no registered model matches {part!r} (see `vidnet models`)")
            names += found
        else:
            names.append(model_info(part).name)
    return list(dict.fromkeys(names))


def _ensure_loaded() -> None:
    # Model modules register themselves on import; importing the package imports them all.
    import vidnet.network  # noqa: F401

"""Forward hooks that read or overwrite one module's activations (Post 02 §5–§9 gate inputs, drift and
patching; Post 01 §3 activation patching).

:func:`capture` records what a module receives or returns on every call inside a ``with`` block;
:func:`overwrite` replaces its output by ``fn(output)`` (activation patching, steering). Both remove
their hook on exit, also when the block raises.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Callable, Iterator

import torch


def _first(x: Any) -> torch.Tensor:
    return x[0] if isinstance(x, (tuple, list)) else x


@contextmanager
def capture(module: torch.nn.Module, what: str = "output") -> Iterator[list[torch.Tensor]]:
    """Yield a list that collects ``module``'s first input (``what="input"``) or its output (the first element
    of a tuple output) on every call, detached, in call order."""
    if what not in ("input", "output"):
        raise ValueError(f"capture(what={what!r}): expected 'input' or 'output'")
    seen: list[torch.Tensor] = []
    if what == "input":
        handle = module.register_forward_pre_hook(lambda _m, args: seen.append(_first(args).detach()))
    else:
        handle = module.register_forward_hook(lambda _m, _a, out: seen.append(_first(out).detach()))
    try:
        yield seen
    finally:
        handle.remove()


@contextmanager
def overwrite(module: torch.nn.Module, fn: Callable[[torch.Tensor], torch.Tensor]) -> Iterator[None]:
    """Replace ``module``'s output (its first element, for tuple outputs) by ``fn(output)`` inside the block."""
    def hook(_m, _a, out):
        if isinstance(out, tuple):
            return (fn(out[0]), *out[1:])
        return fn(out)

    handle = module.register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()

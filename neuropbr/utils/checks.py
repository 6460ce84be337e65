"""Input checks that fail with the name, the expected and the actual shape, so the message says
what to fix without a debugger."""

from __future__ import annotations

from torch import Tensor


def check_shape(x: Tensor, spec: str, name: str, **known: int) -> dict[str, int]:
    """Check ``x`` against a space-separated shape spec and return the bound sizes.

    Each token of ``spec`` is a letter (any size, bound on first use and then enforced), a
    number (exact size) or ``LETTER=number`` (exact size with a name for the message). ``known``
    pins letters to sizes the caller already knows.

    >>> import torch
    >>> check_shape(torch.zeros(2, 3, 3, 8, 8), "B V 3 H W", "views")
    {'B': 2, 'V': 3, 'H': 8, 'W': 8}

    Raises:
        ValueError: ``views: expected (B, V=3, 3, H, W), got (4, 2, 3, 64, 64)``.
    """
    tokens = spec.split()
    bound: dict[str, int] = dict(known)
    pretty: list[str] = []
    for token in tokens:
        letter, _, fixed = token.partition("=")
        if letter.isdigit():
            pretty.append(letter)
        elif fixed:
            bound.setdefault(letter, int(fixed))
            pretty.append(f"{letter}={fixed}")
        elif letter in known:
            pretty.append(f"{letter}={known[letter]}")
        else:
            pretty.append(letter)

    def fail() -> ValueError:
        return ValueError(f"{name}: expected ({', '.join(pretty)}), got {tuple(x.shape)}")

    if x.ndim != len(tokens):
        raise fail()
    out: dict[str, int] = {}
    for token, size in zip(tokens, x.shape):
        letter = token.partition("=")[0]
        if letter.isdigit():
            if size != int(letter):
                raise fail()
            continue
        expected = bound.get(letter)
        if expected is not None and size != expected:
            raise fail()
        bound[letter] = size
        out[letter] = size
    return out

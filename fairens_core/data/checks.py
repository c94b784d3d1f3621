"""Checks of loader options: a bad value is a ValueError naming the option and what is allowed."""

from __future__ import annotations

import inspect
from typing import Callable

import numpy as np


def check_choice(param: str, value, allowed) -> None:
    if value not in allowed:
        raise ValueError(f"{param}={value!r}: allowed values are {list(allowed)}")


def check_int(param: str, value, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{param}={value!r}: allowed values are integers >= {minimum}")


def check_fraction(param: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 1:
        raise ValueError(f"{param}={value!r}: allowed values are numbers strictly between 0 and 1")


def check_number(param: str, value, minimum: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= minimum:
        raise ValueError(f"{param}={value!r}: allowed values are numbers >= {minimum}")


def check_bool(param: str, value) -> None:
    check_choice(param, value, (False, True))


def check_image_size(value) -> tuple[int, int] | None:
    """``None``, an int ``s`` or a pair ``(h, w)`` as ``(h, w)``; anything else is a ValueError."""
    if value is None:
        return None
    pair = (value, value) if isinstance(value, (int, np.integer)) else value
    if (
        not isinstance(pair, (tuple, list))
        or len(pair) != 2
        or not all(isinstance(s, (int, np.integer)) and not isinstance(s, bool) and s > 0 for s in pair)
    ):
        raise ValueError(f"image_size={value!r}: allowed values are None, a positive int or a pair (h, w)")
    return int(pair[0]), int(pair[1])


def check_options(name: str, loader: Callable, options: dict) -> None:
    """Unknown keyword options are a ValueError listing the options the loader accepts."""
    allowed = [p.name for p in inspect.signature(loader).parameters.values() if p.kind is p.KEYWORD_ONLY]
    for option in options:
        if option not in allowed:
            raise ValueError(f"unknown option {option!r} for dataset {name!r}: allowed options are {allowed}")

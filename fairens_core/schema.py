"""Parameter specs: what each parameter may be, declared once, checked the same way everywhere.

A :class:`Spec` gives a parameter's kind (int, float, bool, str, tuple, list, dict), its range,
allowed values and whether None is allowed. ``spec.check(name, value)`` returns the value
normalised or raises ``ValueError("name=value: what is allowed")``:

- numpy scalars become Python numbers (``np.int64(3)`` -> ``3``);
- a string spelling a literal becomes that literal where a number, bool, list or dict is wanted
  (papermill's ``-p`` and the command line hand over text: ``"[2, 3]"`` -> ``[2, 3]``);
- ``"None"`` is None where None is allowed;
- a lone value where a tuple or list is wanted is a one-item one (``"crop"`` -> ``("crop",)``);
  text that is no literal is split at commas there (``"crop,flip"`` -> ``("crop", "flip")``).

An int stays an int where a float is wanted: a record's cache key hashes the JSON of its config,
where ``1`` and ``1.0`` differ.
"""

from __future__ import annotations

import ast
import json
import math
import os
import re
from dataclasses import dataclass

import numpy as np

KINDS = ("int", "float", "bool", "str", "tuple", "list", "dict")


class _Rejected(Exception):
    """Raised inside a check; `Spec.check` turns it into the ValueError that names the parameter."""


def plain(value):
    """numpy scalars (and 0-d arrays) as the Python number, bool or str they hold."""
    if isinstance(value, np.generic) or (isinstance(value, np.ndarray) and value.ndim == 0):
        return value.item()
    return value


def literal(text: str):
    """The Python or JSON literal `text` spells (``"None"``, ``"null"``, ``"[1, 2]"``); else _Rejected."""
    try:
        return ast.literal_eval(text.strip())
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        pass
    try:
        return json.loads(text)
    except ValueError:
        raise _Rejected from None


def _number(x) -> str:
    return f"{x:g}" if isinstance(x, float) else str(x)


@dataclass(frozen=True)
class Spec:
    kind: str  # one of KINDS; "tuple" and "list" say which container a sequence comes back as
    low: float | None = None
    high: float | None = None
    low_open: bool = False  # True: low itself is excluded
    high_open: bool = False
    choices: tuple | None = None
    pattern: str | None = None  # str: must match this regex in full
    item: "Spec | None" = None  # tuple / list: the spec of every item
    fields: "tuple[Spec, ...] | None" = None  # tuple / list of fixed length: the spec of each position
    min_items: int = 0
    max_items: int | None = None
    optional: bool = False  # None is allowed
    allowed: str = ""  # replaces the generated description of what is allowed
    note: str = ""  # appended to the description, e.g. "(-1: all)"

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"kind={self.kind!r}: one of {list(KINDS)}")
        if self.kind in ("tuple", "list") and (self.item is None) == (self.fields is None):
            raise ValueError(f"a {self.kind} spec needs an item spec or the specs of its fields")

    # ------------------------------------------------------------------ description
    def describe(self) -> str:
        """What is allowed, in words: 'an integer >= 1', "one of ['sgd', 'adam']", ..."""
        text = self.allowed or self._generated()
        if self.optional and not self.allowed:
            text += " or None"
        return f"{text} {self.note}" if self.note else text

    def _generated(self) -> str:
        if self.choices is not None:
            return f"one of {list(self.choices)}"
        if self.fields is not None:
            return f"a list [{', '.join(f.describe() for f in self.fields)}]"
        if self.kind in ("tuple", "list"):
            size = ""
            if self.max_items is not None and self.max_items == self.min_items:
                size = f" of {self.min_items}"
            elif self.min_items:
                size = f" of at least {self.min_items}"
            return f"a list{size}, each {self.item.describe()}"
        base = {"int": "an integer", "float": "a finite number", "bool": "True or False",
                "str": "a string", "dict": "a dict"}[self.kind]
        return base + self._range()

    def _range(self) -> str:
        if self.low is not None and self.high is not None:
            left, right = "(" if self.low_open else "[", ")" if self.high_open else "]"
            return f" in {left}{_number(self.low)}, {_number(self.high)}{right}"
        if self.low is not None:
            return f" {'>' if self.low_open else '>='} {_number(self.low)}"
        if self.high is not None:
            return f" {'<' if self.high_open else '<='} {_number(self.high)}"
        return ""

    # ------------------------------------------------------------------ checking
    def check(self, name: str, value):
        """`value` normalised; ValueError naming `name`, the value and what is allowed if it is not."""
        try:
            return self.convert(value)
        except _Rejected:
            raise ValueError(f"{name}={value!r}: {self.describe()}") from None

    def accepts(self, value) -> bool:
        try:
            self.convert(value)
        except _Rejected:
            return False
        return True

    def convert(self, value):
        """`value` normalised; raises _Rejected if the spec does not allow it."""
        value = plain(value)
        if isinstance(value, str) and self.kind != "str":
            value = self._from_text(value)
        elif isinstance(value, str) and value == "None" and self.optional:  # the command line's and papermill's spelling of None
            value = None
        if value is None:
            if self.optional:
                return None
            raise _Rejected
        value = getattr(self, f"_as_{self.kind}")(value)
        if self.choices is not None and value not in self.choices:
            raise _Rejected
        return value

    def _from_text(self, text: str):
        try:
            return plain(literal(text))
        except _Rejected:
            if self.kind in ("tuple", "list") and self.item is not None and self.item.kind == "str":
                return [part.strip() for part in text.split(",")]
            raise

    def _as_bool(self, value):
        if not isinstance(value, bool):
            raise _Rejected
        return value

    def _as_int(self, value):
        if isinstance(value, bool) or not isinstance(value, int):
            raise _Rejected
        return self._in_range(value)

    def _as_float(self, value):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise _Rejected
        return self._in_range(value)

    def _as_str(self, value):
        if isinstance(value, os.PathLike):
            value = os.fspath(value)
        if not isinstance(value, str) or (self.pattern and not re.fullmatch(self.pattern, value)):
            raise _Rejected
        return value

    def _as_dict(self, value):
        if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
            raise _Rejected
        return {k: plain(v) for k, v in value.items()}

    def _as_tuple(self, value):
        if isinstance(value, np.ndarray):
            value = value.tolist()
        if self.fields is not None:
            if not isinstance(value, (list, tuple)) or len(value) != len(self.fields):
                raise _Rejected
            return tuple(spec.convert(v) for spec, v in zip(self.fields, value))
        if not isinstance(value, (list, tuple)):
            value = [value]  # a lone value: a one-item sequence
        if len(value) < self.min_items or (self.max_items is not None and len(value) > self.max_items):
            raise _Rejected
        return tuple(self.item.convert(v) for v in value)

    def _as_list(self, value):
        return list(self._as_tuple(value))

    def _in_range(self, x):
        if self.low is not None and (x < self.low or (self.low_open and x == self.low)):
            raise _Rejected
        if self.high is not None and (x > self.high or (self.high_open and x == self.high)):
            raise _Rejected
        return x


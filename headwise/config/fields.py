"""The strict mapping reader that every section parser uses, and the error it raises."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Mapping
from typing import Any, NoReturn

from headwise.errors import ConfigError

NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")


class Fields:
    """Reads a mapping strictly and builds messages that name the file and the field."""

    def __init__(self, source: str, path: str, value: Any, allowed: Iterable[str]):
        self.source, self.path = source, path
        if not isinstance(value, Mapping):
            self.fail(f"expected a mapping, got {type(value).__name__}")
        unknown = sorted(set(value) - set(allowed))
        if unknown:
            self.fail(f"unknown key(s) {unknown}; allowed: {sorted(allowed)}", field=unknown[0])
        self.value = value

    def fail(self, message: str, field: str | None = None) -> NoReturn:
        where = f"{self.path}.{field}" if field and self.path else (field or self.path)
        raise ConfigError(f"{self.source}: {where}: {message}")

    def get(self, key: str, kind, default=dataclasses.MISSING):
        if key not in self.value:
            if default is dataclasses.MISSING:
                self.fail("is required", field=key)
            return default
        value = self.value[key]
        if value is None and default is not dataclasses.MISSING:
            return default  # an explicit `null` means "not set"
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if kind is int and isinstance(value, bool):
            self.fail(f"expected int, got {value!r}", field=key)
        if not isinstance(value, kind):
            names = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
            self.fail(f"expected {names}, got {value!r}", field=key)
        return value

    def choice(self, key: str, options: Iterable[str], default=dataclasses.MISSING, what="value"):
        value = self.get(key, str, default)
        if value not in options:
            self.fail(f"unknown {what} {value!r}; choose one of {list(options)}", field=key)
        return value

    def int_list(self, key: str, default=()):
        values = self.get(key, list, list(default))
        if not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in values):
            self.fail(f"expected a list of positive ints, got {values!r}", field=key)
        return tuple(values)


def check_name(fields: Fields, key: str) -> str:
    """The name under `key`: letters, digits and '_', starting with a letter."""
    value = fields.get(key, str)
    if not NAME_RE.match(value):
        fields.fail(f"{value!r} is not a valid name "
                    "(letters, digits, '_'; starts with a letter)", key)
    return value

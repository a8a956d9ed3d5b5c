"""The one way lnl reads YAML it is given: presets, ``key=value`` override values, a run's config.yaml.

PyYAML's safe loader still expands aliases and recurses once per nesting level, so a few hundred bytes
of nested aliases (a "billion laughs") can build gigabytes of values, and 5,000 brackets overflow the
stack. This loader refuses aliases, bounds nesting and text length, and turns every failure, including
a scalar its tag cannot hold (a 5,000-digit integer, the date 2024-13-45), into one :class:`YamlError`.
"""

from __future__ import annotations

from typing import Any

import yaml

MAX_CHARS = 1 << 20   # a preset is a few hundred bytes; a mebibyte is plenty
MAX_DEPTH = 32        # nested mappings and lists; the deepest config value is a list of lists


class YamlError(Exception):
    """Text that lnl does not read as YAML; `problem` says why, `line` (1-based) where, when known.
    `refused`: the text is YAML, or may be, but beyond what lnl reads (an alias, deep nesting, size);
    otherwise it is simply not YAML (a caller may then take it as plain text)."""

    def __init__(self, problem: str, line: int | None = None, refused: bool = False):
        self.problem, self.line, self.refused = problem, line, refused
        super().__init__(problem if line is None else f"line {line}: {problem}")


class _Refused(yaml.MarkedYAMLError):
    """Valid YAML that lnl will not read (an alias, too deep)."""


class _BoundedLoader(yaml.SafeLoader):
    """The safe loader, with aliases refused and nesting bounded while the document is composed."""

    def __init__(self, stream: str):
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            raise _Refused(problem="YAML aliases (*name) are not supported; write the value out, or share "
                                   "settings between presets with `extends`",
                           problem_mark=self.peek_event().start_mark)
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise _Refused(problem=f"YAML nested deeper than {MAX_DEPTH} levels",
                               problem_mark=self.peek_event().start_mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def load_yaml(text: str) -> Any:
    """The value of one YAML document (safe tags only); a YamlError for anything else."""
    if len(text) > MAX_CHARS:
        raise YamlError(f"longer than {MAX_CHARS} characters", refused=True)
    loader = None
    try:
        loader = _BoundedLoader(text)  # the reader checks every character here
        return loader.get_single_data()
    except _Refused as exc:
        raise YamlError(str(exc.problem), _line(exc), refused=True) from None
    except yaml.YAMLError as exc:
        detail = getattr(exc, "problem", None) or type(exc).__name__
        raise YamlError(f"not valid YAML ({detail})", _line(exc)) from None
    except (ValueError, TypeError, OverflowError, RecursionError) as exc:
        # A scalar its tag cannot hold: int() of 5,000 digits, a timestamp with month 13.
        reason = str(exc).splitlines()[0][:120] if str(exc).strip() else type(exc).__name__
        raise YamlError(f"a value that YAML cannot construct ({reason})") from None
    finally:
        if loader is not None:
            loader.dispose()


def _line(exc: yaml.YAMLError) -> int | None:
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    return mark.line + 1 if mark is not None else None

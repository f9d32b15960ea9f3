""".helmignore rules, matched as helm's `pkg/ignore` matches them. Pure.

helm loads a chart directory (`loader.LoadDir`) skipping every path its root `.helmignore`
ignores (plus helm's default `templates/.?*`); an ignored directory is skipped whole. Herd
reads a chart's `crds/` itself (`herd.helm.chart_crds`), so it must skip the same files, or it
would apply CRDs that `helm template` (and so the render check) never saw.

helm's rules, kept here: blank lines and `#` comments are skipped; `!` negates; a trailing
`/` matches directories only; a leading `/` anchors the pattern at the chart root; a pattern
with a `/` matches the whole relative path, one without matches the base name; `**` is
refused by helm (the chart fails to load) and never matches here. Matching is Go's
`filepath.Match`: `*` and `?` never cross a `/`.

Bounded: at most `MAX_RULES` rules; each is translated once into a regular expression
built only of literals, classes and `[^/]*`, matched against a path of bounded length.

Callers: `herd.helm.chart_crds`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

MAX_RULES = 1000
DEFAULT_RULES = ("templates/.?*",)  # helm's AddDefaults


@dataclass(frozen=True)
class _Rule:
    pattern: re.Pattern[str]
    negate: bool
    directory_only: bool
    base_name: bool  # no "/" in the rule: match the path's last element


class Rules:
    """The parsed `.helmignore` of one chart root."""

    def __init__(self, text: str = "") -> None:
        lines = [*DEFAULT_RULES, *text.splitlines()]
        self._rules = [r for r in (_parse(line) for line in lines[: MAX_RULES + 1]) if r]

    def ignored(self, path: str, is_dir: bool) -> bool:
        """helm's `Rules.Ignore` for `path` relative to the chart root ("/"-separated)."""
        if path in ("", ".", "./"):
            return False
        for rule in self._rules:
            name = path.rsplit("/", 1)[-1] if rule.base_name else path
            if rule.negate:
                if rule.directory_only and not is_dir:
                    return True
                if not rule.pattern.fullmatch(name):
                    return True
                continue
            if rule.directory_only and not is_dir:
                continue
            if rule.pattern.fullmatch(name):
                return True
        return False

    def ignored_file(self, path: str) -> bool:
        """A file is ignored when it or any directory above it is (helm skips such a dir)."""
        parts = path.split("/")
        return any(self.ignored("/".join(parts[:i]), True) for i in range(1, len(parts))) or (
            self.ignored(path, False)
        )


def _parse(line: str) -> _Rule | None:
    rule = line.strip()
    if not rule or rule.startswith("#") or "**" in rule:
        return None
    negate = rule.startswith("!")
    rule = rule.removeprefix("!")
    directory_only = rule.endswith("/")
    rule = rule.rstrip("/")
    base_name = "/" not in rule
    rule = rule.removeprefix("/")
    pattern = _go_match(rule)
    if pattern is None:
        return None  # a malformed pattern: Go's filepath.Match errs, and helm skips it
    return _Rule(pattern, negate, directory_only, base_name)


def _go_match(rule: str) -> re.Pattern[str] | None:
    """Go's `filepath.Match` pattern as a regular expression (None when malformed)."""
    out: list[str] = []
    i = 0
    while i < len(rule):
        char = rule[i]
        if char == "*":
            out.append("[^/]*")
        elif char == "?":
            out.append("[^/]")
        elif char == "\\" and i + 1 < len(rule):
            i += 1
            out.append(re.escape(rule[i]))
        elif char == "[":
            end = rule.find("]", i + 2)
            if end < 0:
                return None
            body = rule[i + 1 : end]
            negated = body.startswith("^")
            body = re.sub(r"([\\\]\[])", r"\\\1", body.removeprefix("^"))
            out.append(f"[{'^/' if negated else ''}{body}]")
            i = end
        else:
            out.append(re.escape(char))
        i += 1
    try:
        return re.compile("".join(out), re.DOTALL)
    except re.error:
        return None

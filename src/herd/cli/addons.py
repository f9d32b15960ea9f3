"""Add-ons in the CLI: `--addons FILE`, the operator's add-on configuration as a file.

The file holds the same ConfigMap and Secret documents the operator reads from its
namespace (`examples/addons-config.yaml.sample`); `load` parses them with the operator's
parser (`AddonCatalog.from_file`), so `herd apply` and `herd plan` prepend exactly the
NeuVector and SUSE Observability agent charts, with the same per-cluster values, as the
operator would. Without the file, `NoAddons` stands in: a Stack that enables an add-on
is invalid input (exit 2) naming the add-on and the flag; the CLI never skips an add-on.

The Secret's values reach helm on stdin only. `Redactor` keeps them out of everything
the CLI prints (rows, progress, errors), should a chart's error message echo one.

Callers: `herd.cli.fleet`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from herd.addons.catalog import AddonCatalog
from herd.addons.config import AddonConfigError
from herd.api.charts import ChartSpec
from herd.api.v1 import Stack, StackSpec, Toggle
from herd.cli.constants import ADDONS_FLAG, ADDONS_SAMPLE
from herd.errors import PermanentError, Problem, SpecError
from herd.plan.clusters import Cluster
from herd.plan.releases import Values
from herd.plan.results import ReleaseResult

FLAG, SAMPLE = ADDONS_FLAG, ADDONS_SAMPLE
REDACTED = "[redacted]"

_ADDONS = (
    ("spec.security", "security", "NeuVector"),
    ("spec.observability", "observability", "the SUSE Observability agent"),
)


class AddonFileError(PermanentError):
    """`--addons FILE` is unusable; `lines` say why (keys and documents, never values)."""

    def __init__(self, *lines: str) -> None:
        self.lines = lines
        super().__init__("; ".join(lines))


def load(path: Path) -> AddonCatalog:
    """The add-on catalog from `--addons FILE`; raises `AddonFileError`."""
    if not path.is_file():
        raise AddonFileError(f"{FLAG} {path}: file not found")
    try:
        return AddonCatalog.from_file(path)
    except AddonConfigError as error:
        raise AddonFileError(
            f"{FLAG} {path}: not a usable add-on configuration:",
            *(f"  {problem}" for problem in error.problems),
        ) from None
    except (OSError, UnicodeDecodeError) as error:
        raise AddonFileError(f"{FLAG} {path}: cannot be read ({type(error).__name__})") from None


class NoAddons:
    """`herd.engine.engine.AddOns` when no `--addons` is given: no add-on can be planned."""

    async def refresh(self) -> None:
        return None

    def charts(self, spec: StackSpec) -> list[ChartSpec]:
        problems = [
            Problem(
                field,
                f"{toggle}: enabled deploys {addon} first, which needs Herd's add-on "
                f"configuration: give it with {FLAG} FILE (the ConfigMap and Secret "
                f"documents of {SAMPLE}); the CLI never skips an add-on",
            )
            for field, toggle, addon in _ADDONS
            if getattr(spec, toggle) is Toggle.ENABLED
        ]
        if problems:
            raise SpecError(problems)
        return []

    def stack_charts(self, stack: Stack) -> list[ChartSpec]:
        return []  # `charts` refused every Stack that enables an add-on

    def cluster_values(self, cluster: Cluster, chart: ChartSpec) -> Values:
        return {}


class Redactor:
    """Replaces every add-on secret value in text the CLI prints."""

    def __init__(self, secrets: Sequence[str] = ()) -> None:
        # Longest first, so a secret containing another is replaced whole.
        self._secrets = sorted({s for s in secrets if s}, key=len, reverse=True)

    @classmethod
    def of(cls, catalog: AddonCatalog | None) -> Redactor:
        return cls(catalog.credentials.secret_values() if catalog else ())

    def text(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, REDACTED)
        return text

    def result(self, result: ReleaseResult) -> ReleaseResult:
        if not self._secrets:
            return result
        message = self.text(result.message)
        return result if message == result.message else replace(result, message=message)

"""Reading a config file (YAML or TOML) into a checked `PathwatchConfig`.

Every problem of a file is reported in one run: syntax errors and duplicate
keys (`pathwatch.runtime.configtext`), structural errors of every key (`schemas.decode`),
semantic errors and warnings (`schemas.validate`), each with its file, line,
column and key path.
"""

import hashlib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from pathwatch.runtime.configtext import ParsedText, locate, parse_text
from schemas.config import PathwatchConfig
from schemas.decode import decode
from schemas.problems import KeyPath, Problem, is_under
from schemas.validate import check

DEFAULT_CONFIG_NAME = "pathwatch.yaml"


class ConfigError(Exception):
    """A config that must be refused: every error (file, line, column, key path, what was
    expected) and the warnings found with them."""

    def __init__(
        self, source: str, problems: list[Problem], warnings: list[Problem] | None = None
    ) -> None:
        self.source = source
        self.problems = problems
        self.warnings = warnings or []
        lines = "\n".join(f"  {p}" for p in [*problems, *self.warnings])
        super().__init__(f"{source}: invalid configuration\n{lines}")


@dataclass(frozen=True)
class LoadedConfig:
    config: PathwatchConfig
    source: str
    digest: str
    warnings: list[Problem] = field(default_factory=list)


def default_config_text() -> str:
    """The embedded default config (loopback only), shipped in the package."""
    return resources.files("pathwatch.defaults").joinpath(DEFAULT_CONFIG_NAME).read_text()


def _about_repaired(problem: Problem, repaired: list[KeyPath]) -> bool:
    """True when a semantic finding is about a part the decoder had to repair."""
    return any(
        is_under(keys, part) for keys in (problem.keys, *problem.refers) for part in repaired
    )


def _problems(parsed: ParsedText) -> tuple[PathwatchConfig | None, list[Problem]]:
    """The model (when one could be made) and every problem of the parsed text."""
    problems = list(parsed.problems)
    if parsed.data is None:
        return None, problems
    if not isinstance(parsed.data, dict):
        return None, [*problems, Problem((), "expected a mapping at the top level")]
    decoded = decode(parsed.data, PathwatchConfig)
    problems += decoded.problems
    if decoded.model is not None:
        semantic = check(decoded.model)
        problems += [p for p in semantic if not _about_repaired(p, decoded.repaired)]
    return decoded.model, problems


def _by_place(problem: Problem) -> tuple[int, int]:
    return problem.line or 0, problem.column or 0


def parse_config(text: str, source: str = "<config>") -> LoadedConfig:
    """Parse and check config text; raises ConfigError with every error found."""
    parsed = parse_text(text, source)
    config, found = _problems(parsed)
    located = sorted((locate(p, parsed.spots, source) for p in found), key=_by_place)
    errors = [p for p in located if p.severity == "error"]
    warnings = [p for p in located if p.severity != "error"]
    if errors or config is None:
        raise ConfigError(source, errors, warnings)
    digest = hashlib.sha256(text.encode()).hexdigest()[:16]
    return LoadedConfig(config, source, digest, warnings)


def load_config(path: str | Path | None) -> LoadedConfig:
    """Load `path`, or the embedded default when None."""
    if path is None:
        return parse_config(default_config_text(), f"<embedded {DEFAULT_CONFIG_NAME}>")
    file = Path(path)
    try:
        text = file.read_text()
    except OSError as exc:
        problem = Problem((), f"cannot read file: {exc.strerror}", source=str(file))
        raise ConfigError(str(file), [problem]) from None
    return parse_config(text, str(file))

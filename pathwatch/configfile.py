"""Reading a config file (YAML or TOML) into a checked `PathwatchConfig`."""

import hashlib
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import msgspec
import yaml

from schemas.config import PathwatchConfig
from schemas.validate import Problem, check

DEFAULT_CONFIG_NAME = "pathwatch.yaml"


class ConfigError(Exception):
    """A config that must be refused: names the file, the key path and what was expected."""

    def __init__(self, source: str, problems: list[Problem]) -> None:
        self.source = source
        self.problems = problems
        lines = "\n".join(f"  {p}" for p in problems)
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


def _parse(text: str, source: str) -> object:
    try:
        if source.endswith(".toml"):
            return tomllib.loads(text)
        return yaml.safe_load(text) or {}
    except (yaml.YAMLError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(source, [Problem("$", f"cannot parse: {exc}")]) from None


def _name_dict_keys(raw: object, info: msgspec.inspect.Type, prefix: str) -> str | None:
    """Re-run validation piece by piece to name the dict key msgspec shows as `[...]`."""
    if isinstance(info, msgspec.inspect.StructType) and isinstance(raw, dict):
        for fld in info.fields:
            if fld.encode_name in raw:
                found = _name_dict_keys(
                    raw[fld.encode_name], fld.type, f"{prefix}.{fld.encode_name}"
                )
                if found:
                    return found
        return None
    if isinstance(info, msgspec.inspect.DictType) and isinstance(raw, dict):
        value_info = info.value_type
        for key, value in raw.items():
            if isinstance(value_info, msgspec.inspect.StructType):
                try:
                    msgspec.convert(value, value_info.cls, str_keys=True)
                except msgspec.ValidationError as exc:
                    deeper = _name_dict_keys(value, value_info, f"{prefix}.{key}")
                    path = str(exc).partition(" - at `")[2].rstrip("`").removeprefix("$")
                    return deeper or f"{prefix}.{key}{path}"
            else:
                found = _name_dict_keys(value, value_info, f"{prefix}.{key}")
                if found:
                    return found
        return None
    return None


def parse_config(text: str, source: str = "<config>") -> LoadedConfig:
    """Parse and check config text; raises ConfigError with every error found."""
    raw = _parse(text, source)
    if not isinstance(raw, dict):
        raise ConfigError(source, [Problem("$", "expected a mapping at the top level")])
    try:
        config = msgspec.convert(raw, PathwatchConfig, str_keys=True)
    except msgspec.ValidationError as exc:
        message, _, path = str(exc).partition(" - at `")
        path = path.rstrip("`") or "$"
        if "[...]" in path:
            path = _name_dict_keys(raw, msgspec.inspect.type_info(PathwatchConfig), "$") or path
        raise ConfigError(source, [Problem(path, message)]) from None
    problems = check(config)
    errors = [p for p in problems if p.severity == "error"]
    if errors:
        raise ConfigError(source, errors)
    digest = hashlib.sha256(text.encode()).hexdigest()[:16]
    return LoadedConfig(config, source, digest, [p for p in problems if p.severity != "error"])


def load_config(path: str | Path | None) -> LoadedConfig:
    """Load `path`, or the embedded default when None."""
    if path is None:
        return parse_config(default_config_text(), f"<embedded {DEFAULT_CONFIG_NAME}>")
    file = Path(path)
    try:
        text = file.read_text()
    except OSError as exc:
        raise ConfigError(str(file), [Problem("$", f"cannot read file: {exc.strerror}")]) from None
    return parse_config(text, str(file))

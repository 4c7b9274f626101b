"""Typed configs: dataclasses loaded from YAML with dotted ``key=value`` overrides.

OmegaConf does the merging and type checks (an unknown key or a wrong type is an error naming
the key); each dataclass validates its values in ``__post_init__``. The resolved config is
written next to every run with :func:`save_config`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence, Type, TypeVar

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

T = TypeVar("T")


class ConfigError(ValueError):
    """A config that cannot be used; the message names the file and key."""


def load_config(
    cls: Type[T],
    path: str | Path | None = None,
    overrides: Sequence[str] = (),
    *,
    base_files: Mapping[str, str] | None = None,
    start: T | None = None,
) -> T:
    """Build ``cls`` from its defaults, then the YAML file at ``path``, then ``key=value`` overrides.

    base_files: ``{node: key}`` (dotted paths): when the config (file or overrides) sets ``key``
    to a YAML path, that file is the starting point of ``node``, under what the config itself says
    of ``node`` (a sweep's ``train_config: configs/train/tiny.yaml`` fills ``train``). Entries are
    taken in order, and a later ``key`` may be set by an earlier entry's file (the train YAML's
    ``benchmarks_config`` fills ``train.benchmarks``).
    start: a ``cls`` instance to start from instead of its defaults (a run's saved settings).
    """
    where = str(path) if path else "defaults"
    try:
        merged = OmegaConf.structured(cls if start is None else start)
        layers = []
        if path is not None:
            layers.append(read_yaml(path))
        for override in overrides:
            if "=" not in override:
                raise ConfigError(f"override {override!r} must look like key=value (e.g. data.limit=100)")
        if overrides:
            layers.append(OmegaConf.from_dotlist(list(overrides)))
        for node, key in (base_files or {}).items():
            base = next((found for layer in reversed(layers) if (found := OmegaConf.select(layer, key))), None)
            if base is not None:
                base = shipped_path(base)
                if not Path(base).is_file():
                    raise ConfigError(f"{where}: {key}: config file not found: {base}")
                # Under everything found so far: a base file's own keys override the ones it names.
                layers.insert(0, _nested(node, read_yaml(base)))
        for layer in layers:
            check_sections(cls, layer, where)
            merged = OmegaConf.merge(merged, layer)
        return map_path_fields(OmegaConf.to_object(merged), shipped_path)
    except OmegaConfBaseException as error:
        key = getattr(error, "full_key", None)
        prefix = f"{where}: key {key!r}: " if key else f"{where}: "
        raise ConfigError(prefix + _first_line(error)) from None
    except ValueError as error:
        if isinstance(error, ConfigError):
            raise
        raise ConfigError(f"{where}: {error}") from None


# Relative paths the project's own defaults use, and the packages that carry them in a wheel.
SHIPPED = {"configs/": "lambda_dpo.configs", "lambda_dpo/": "lambda_dpo"}


def shipped_path(value: str | None) -> str | None:
    """``value`` unchanged, unless it is a relative path that does not exist here but names a file
    the package ships (``configs/…``, ``lambda_dpo/…``): then that file's path in the installed
    package, so the defaults work outside a checkout."""
    if not value or Path(value).is_absolute() or Path(value).exists():
        return value
    from importlib import resources

    for prefix, package in SHIPPED.items():
        if value.startswith(prefix):
            try:
                candidate = Path(str(resources.files(package).joinpath(value[len(prefix) :])))
            except ModuleNotFoundError:  # a source tree not installed: configs/ sits beside the package
                candidate = Path(__file__).parents[1] / value
            if candidate.exists():
                return str(candidate)
    return value


SHIPPED_CONFIG_KINDS = ("train", "sweep", "eval")
SUMMARY_CHARS = 110  # a config's one-line summary in `configs list`


def shipped_configs() -> dict[str, Path]:
    """The YAML configs the package ships, by name (``train/tiny``), from the installed package or
    this checkout's configs/."""
    root = Path(shipped_path("configs/train/tiny.yaml")).parents[1]
    return {f"{kind}/{path.stem}": path for kind in SHIPPED_CONFIG_KINDS for path in sorted((root / kind).glob("*.yaml"))}


def shipped_config(name: str) -> Path:
    """A shipped config by name: ``train/tiny``, ``train/tiny.yaml`` or, when only one kind has it, ``tiny``."""
    configs = shipped_configs()
    stem = name.removesuffix(".yaml").removeprefix("configs/")
    matches = [key for key in configs if key == stem or key.split("/", 1)[1] == stem]
    if len(matches) == 1:
        return configs[matches[0]]
    if matches:
        raise ConfigError(f"{name!r} names {len(matches)} shipped configs ({', '.join(matches)}): give the kind too, e.g. {matches[0]}")
    raise ConfigError(f"no shipped config {name!r}; `lambda-dpo configs list` shows them ({', '.join(configs)})")


def config_summary(path: Path) -> str:
    """The first sentence of a YAML file's leading comment (at most ``SUMMARY_CHARS`` characters)."""
    words = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        if not line.startswith("#"):
            break
        words.append(line.lstrip("#").strip())
    text = " ".join(words)
    end = re.search(r"\.(\s|$)", text)
    text = text[: end.start() + 1] if end else text
    return text if len(text) <= SUMMARY_CHARS else text[: SUMMARY_CHARS - 1].rsplit(" ", 1)[0] + " …"


def map_path_fields(config: T, function) -> T:
    """``config`` with ``function`` applied to every ``setting(path=True)`` value, in nested configs
    and to each item of a list."""
    changes = {}
    for item in dataclasses.fields(config):
        value = getattr(config, item.name)
        if dataclasses.is_dataclass(value):
            changes[item.name] = map_path_fields(value, function)
        elif item.metadata.get("path"):
            changes[item.name] = [function(v) for v in value] if isinstance(value, list) else function(value)
    return dataclasses.replace(config, **changes)


def read_yaml(path: str | Path):
    """A YAML config file as an OmegaConf mapping; a missing file, a syntax error (with its line) or
    a file that is not a mapping of keys is a one-line ConfigError naming the file."""
    import yaml

    path = shipped_path(str(path))
    if not Path(path).is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        loaded = OmegaConf.load(path)
    except OSError as error:  # OmegaConf's "Invalid loaded object type" for a scalar document
        raise ConfigError(f"{path}: a config file must be a mapping of keys (key: value lines), not a single value ({error})") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise ConfigError(f"{path}: not valid YAML{where}: {problem}") from None
    if loaded is None or (OmegaConf.is_dict(loaded) and not loaded):  # all defaults would train on the hub's UltraFeedback
        raise ConfigError(f"{path}: the config file is empty; write the keys to set (`lambda-dpo config show` lists them)")
    if not OmegaConf.is_dict(loaded):
        raise ConfigError(f"{path}: a config file must be a mapping of keys (key: value lines), not a {type(OmegaConf.to_container(loaded)).__name__}")
    return loaded


def check_sections(cls, layer, where: str, prefix: str = "") -> None:
    """A ConfigError naming the key where ``layer`` gives a plain value to a section (``optim: 3``),
    which OmegaConf reports without the key, or uses a key the section's ``RENAMED_KEYS`` lists."""
    import typing

    if not dataclasses.is_dataclass(cls) or not OmegaConf.is_dict(layer):
        return
    for old, new in getattr(cls, "RENAMED_KEYS", {}).items():
        if old in layer:
            raise ConfigError(f"{where}: key {prefix + old!r} was renamed {prefix + new!r}: rename it in the file or the override")
    hints = typing.get_type_hints(cls)
    for item in dataclasses.fields(cls):
        kind = hints.get(item.name)
        if not dataclasses.is_dataclass(kind) or item.name not in layer:
            continue
        value = layer[item.name]
        if value is not None and not OmegaConf.is_dict(value):
            raise ConfigError(f"{where}: key {prefix + item.name!r} is a section: give it keys (e.g. {prefix + item.name}.<key>: …), not {value!r}")
        check_sections(kind, value, where, f"{prefix}{item.name}.")


def _nested(node: str, value):
    for part in reversed(node.split(".")):
        value = {part: value}
    return OmegaConf.create(value)


def _first_line(error: Exception) -> str:
    return str(error).strip().splitlines()[0]


@dataclass(frozen=True)
class Interval:
    """The values a numeric setting may take: ``low``/``high`` (None = unbounded), ``closed`` says
    which ends belong (``both``, ``left``, ``right``, ``neither``), as scikit-learn's ``Interval``."""

    low: float | None = None
    high: float | None = None
    closed: str = "both"

    def __contains__(self, value: float) -> bool:
        left_closed, right_closed = self.closed in ("both", "left"), self.closed in ("both", "right")
        if self.low is not None and (value < self.low or (value == self.low and not left_closed)):
            return False
        return self.high is None or value < self.high or (value == self.high and right_closed)

    def __str__(self) -> str:
        """How a message says it: "> 0", "≥ 1", "in [0, 1)"."""
        left_closed, right_closed = self.closed in ("both", "left"), self.closed in ("both", "right")
        if self.high is None and self.low is not None:
            return f"{'≥' if left_closed else '>'} {self.low:g}"
        if self.low is None and self.high is not None:
            return f"{'≤' if right_closed else '<'} {self.high:g}"
        if self.low is None:
            return "any number"
        return f"in {'[' if left_closed else '('}{self.low:g}, {self.high:g}{']' if right_closed else ')'}"


POSITIVE = Interval(0, None, "neither")  # > 0
NON_NEGATIVE = Interval(0, None)  # ≥ 0
AT_LEAST_ONE = Interval(1, None)  # whole numbers ≥ 1
UNIT = Interval(0, 1)  # [0, 1]


def setting(default=dataclasses.MISSING, *, help: str = "", choices: tuple[str, ...] | None = None, path: bool = False,
            within: Interval | None = None, **kwargs):
    """A config field with its help text (``lambda-dpo config show`` prints it), its choices when it
    takes one of a few names, the interval its numbers must lie in (``within``), and ``path=True``
    when it may name a local file or directory (:func:`with_absolute_paths` makes those absolute for
    processes that run elsewhere). :func:`check_settings` enforces choices and intervals."""
    if default is not dataclasses.MISSING:
        kwargs["default"] = default
    return field(metadata={"help": help, "choices": choices, "path": path, "within": within}, **kwargs)


def check_settings(config, node: str = "") -> None:
    """Raise ValueError naming ``node.key`` for the first field of ``config`` (not its nested
    configs, which check themselves) whose value is not one of its choices, is a non-finite
    number, or lies outside its declared interval. Each config calls it first in ``__post_init__``,
    so one declaration per field is the whole rule."""
    for item in dataclasses.fields(config):
        value = getattr(config, item.name)
        key = f"{node}.{item.name}" if node else item.name
        choices, within = item.metadata.get("choices"), item.metadata.get("within")
        if choices and value not in choices:
            raise ValueError(f"{key} must be one of {', '.join(map(str, choices))}; got {value!r}")
        numbers = value if isinstance(value, (list, tuple)) else [value]
        for number in numbers:
            if isinstance(number, bool) or not isinstance(number, (int, float)):
                continue
            if not math.isfinite(number):
                raise ValueError(f"{key} must be a finite number; got {value!r}")
            if within is not None and number not in within:
                raise ValueError(f"{key} must be {within}; got {value!r}")


def with_absolute_paths(config: T) -> T:
    """``config`` with every path field that names an existing local path made absolute (for processes
    that run elsewhere, as Ray's trials do); hub ids and other names are left alone."""
    return map_path_fields(config, lambda value: str(Path(value).absolute()) if value and Path(value).exists() else value)


def describe_config(config, indent: int = 0) -> list[str]:
    """The resolved config as YAML lines, each key followed by its help and choices (``config show``)."""
    lines = []
    for item in dataclasses.fields(config):
        value = getattr(config, item.name)
        note = item.metadata.get("help", "")
        if item.metadata.get("choices"):
            note += f" [one of: {', '.join(item.metadata['choices'])}]"
        if dataclasses.is_dataclass(value):
            lines.append(" " * indent + f"{item.name}:" + (f"  # {note}" if note else ""))
            lines += describe_config(value, indent + 2)
            continue
        # Lists inline (JSON is YAML), so the help stays on the key's own line.
        text = f"{item.name}: {json.dumps(value, ensure_ascii=False)}" if isinstance(value, (list, dict)) else OmegaConf.to_yaml({item.name: value}).strip()
        lines.append(" " * indent + text + (f"  # {note}" if note else ""))
    return lines


def config_to_yaml(config) -> str:
    return OmegaConf.to_yaml(OmegaConf.structured(config))


def save_config(config, directory: str | Path, name: str = "config.yaml") -> Path:
    """Write the resolved config as YAML into ``directory`` and return its path."""
    if not dataclasses.is_dataclass(config):
        raise TypeError(f"expected a config dataclass, got {type(config).__name__}")
    path = Path(directory) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(config_to_yaml(config))
    return path

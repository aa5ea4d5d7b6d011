"""Config checks before any work: unknown keys, wrong types and impossible sizes end in one line.

``check_overrides`` composes the command line as Hydra will and compares each ``key=value`` with the
type of the value it replaces; ``check_values`` checks sizes, counts and fractions by key name.
Both raise ``ConfigError`` naming the key, the value and what was expected.
"""

import functools
import math
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, get_args

from hydra import compose, initialize_config_dir
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override, OverrideType, ValueType
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from ddpm.errors import ConfigError

CONF = Path(__file__).resolve().parents[1] / "conf"
SAMPLING_ENTRY_POINTS = {"sample", "evaluate", "serve"}  # they read their own keys only: a +key would go unread

# key name -> (lowest, highest) allowed; ints for the names in INTEGER.
INTEGER = {
    "batch_size": (1, None),
    "n": (1, None),
    "timesteps": (1, None),
    "base_channels": (1, None),
    "emb_dim": (1, None),
    "embed_channels": (1, None),
    "mlp_dims": (1, None),
    "num_heads": (1, None),
    "num_layers": (1, None),
    "num_mlp_layers": (1, None),
    "num_res_blocks": (1, None),
    "decoder_layers": (1, None),
    "encoder_hidden": (1, None),
    "decoder_hidden": (1, None),
    "z_dim": (1, None),
    "frames": (1, None),
    "shards": (1, None),
    "every_n_epochs": (1, None),
    "every_n_train_steps": (1, None),
    "log_every_n_steps": (1, None),
    "render_n": (0, None),
    "infill_track": (0, None),
    "num_workers": (0, None),
    "workers": (0, None),
    "max_epochs": (-1, None),
    "max_steps": (-1, None),
    "patience": (0, None),
    "seed": (0, 2**32 - 1),
    "split_seed": (0, 2**32 - 1),
    "port": (0, 65535),
}
LIMITS = {"max_epochs", "max_steps"}  # INTEGER names that null switches off
REAL = {
    "lr": (0.0, None),
    "qpm": (0.0, None),
    "noise_level_scale": (0.0, None),
    "min_snr_gamma": (0.0, None),
    "input_perturbation": (0.0, None),
    "val_fraction": (0.0, 1.0),
    "eval_fraction": (0.0, 1.0),
    "ema_decay": (0.0, 1.0),
    "temperature": (0.0, 2.0),
    "kl_threshold": (0.0, None),
}
# REAL intervals that hold an end
CLOSED = {"ema_decay": "[)", "temperature": "[]", "kl_threshold": "[)", "input_perturbation": "[)"}
POSITIVE_LISTS = {"input_shape", "channel_mults"}
TRAINERS = ("trainer.", "prepare.musicvae.trainer.")  # where the LOOSE keys are Lightning's
LOOSE = {"devices", "precision", "accelerator", "strategy"}  # Lightning takes several types: see _lightning


def _precisions() -> set:
    from lightning.fabric.connector import _PRECISION_INPUT

    return {value for group in get_args(_PRECISION_INPUT) for value in get_args(group)}


def _lightning(name: str, value: Any) -> str | None:
    """What a Trainer's ``devices``/``precision``/``accelerator`` should be, or None when ``value`` is one."""
    if name == "devices":
        ints = isinstance(value, list) and value and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
        number = isinstance(value, int) and not isinstance(value, bool) and (value >= 1 or value == -1)  # -1: all
        text = isinstance(value, str) and (value == "auto" or re.fullmatch(r"-1|\d+(,\d+)*,?", value))
        return None if ints or number or text else "a number of devices, a list of device indices or auto"
    if name == "precision":
        ok = isinstance(value, str | int) and value in _precisions()
        return None if ok else f"one of {sorted(map(str, _precisions()))}"
    if name == "accelerator":
        from lightning.pytorch.accelerators import AcceleratorRegistry

        names = {"auto", "gpu", *AcceleratorRegistry.available_accelerators()}
        return None if isinstance(value, str) and value in names else f"one of {sorted(names)}"
    return None


def _flat(message: str) -> str:
    return " ".join(message.split())


def _leaves(node: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """(dotted key, value) of every leaf of a plain container."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _leaves(value, f"{prefix}.{key}" if prefix else str(key))
    else:
        yield prefix, node


def _lookup(node: Any, key: str) -> tuple[bool, Any]:
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return False, None
        node = node[part]
    return True, node


def _unset(value: Any) -> bool:
    """None, a missing value (``???``) or an interpolation (``${...}``): nothing to check."""
    if isinstance(value, list):  # e.g. input_shape: [${prepare.frames}, ...]
        return any(_unset(v) for v in value)
    return value is None or (isinstance(value, str) and (value == "???" or "${" in value))


def check_values(cfg: DictConfig | dict) -> None:
    """Sizes, counts, seeds and fractions anywhere in ``cfg`` are numbers in their range."""
    plain = OmegaConf.to_container(cfg, resolve=False) if isinstance(cfg, DictConfig) else cfg
    for key in (f"{prefix}{name}" for prefix in TRAINERS for name in LOOSE - {"strategy"}):
        found, value = _lookup(plain, key)
        if found and isinstance(value, dict):  # a mapping where Lightning takes one value; _leaves reads inside it
            raise ConfigError(f"{key}={value!r}: expected {_lightning(key.rsplit('.', 1)[-1], value)}")
    for key, value in _leaves(plain):
        name = key.rsplit(".", 1)[-1]
        if _unset(value):
            continue
        if name in LOOSE and key.startswith(TRAINERS):
            expected = _lightning(name, value)
            if expected:
                raise ConfigError(f"{key}={value!r}: expected {expected}")
        elif name in INTEGER:
            lo, hi = INTEGER[name]
            ok = isinstance(value, int) and not isinstance(value, bool)
            if not ok or value < lo or (hi is not None and value > hi):
                expected = f"an integer >= {lo}" + (f" and <= {hi}" if hi is not None else "")
                raise ConfigError(f"{key}={value!r}: expected {expected}")
        elif name in REAL:
            lo, hi = REAL[name]
            left, right = CLOSED.get(name, "()")
            ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
            if (
                not ok
                or value < lo
                or (value == lo and left == "(")
                or (hi is not None and (value > hi or (value == hi and right == ")")))
            ):
                interval = f"{left}{lo}, {hi if hi is not None else 'inf'}{right}"
                raise ConfigError(f"{key}={value!r}: expected a number in {interval}")
        elif name in POSITIVE_LISTS:
            if not isinstance(value, list) or not all(
                isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value
            ):
                raise ConfigError(f"{key}={value!r}: expected a list of positive integers")


def _expected(name: str, old: Any, new: Any) -> str | None:
    """What ``new`` should have been to replace ``old`` at key ``name``, or None when it fits.

    ``null`` may replace anything (it switches a callback or a limit off) except a size or count.
    """
    if old == "???":  # a required value (a checkpoint path): one value, not a list or node
        return "a value (a path, a number)" if isinstance(new, list | dict) else None
    if _unset(old) or name in LOOSE:
        return None
    if new is None:  # a limit may be switched off (trainer.max_epochs=null: train by steps), a size may not
        return "an integer" if name in INTEGER and name not in LIMITS else "a number" if name in REAL else None
    if isinstance(old, bool):
        return None if isinstance(new, bool) else "true or false"
    if isinstance(old, int):
        return None if isinstance(new, int) and not isinstance(new, bool) else "an integer"
    if isinstance(old, float):
        return None if isinstance(new, int | float) and not isinstance(new, bool) else "a number"
    if isinstance(old, str):
        return None if isinstance(new, str | int | float) and not isinstance(new, bool) else "a string"
    if isinstance(old, list):
        return None if isinstance(new, list) else "a list [a,b,...]"
    if isinstance(old, dict):
        return None if isinstance(new, dict) else "a config node {key: value} or null"
    return None


def _first_job(overrides: list[Override]) -> list[str]:
    """The overrides of a sweep's first job (``seed=0,1`` -> ``seed=0``)."""
    strings = []
    for o in overrides:
        text = o.input_line
        if o.is_sweep_override():
            text = f"{o.get_key_element()}={next(iter(o.sweep_string_iterator()))}"
        strings.append(text)
    return strings


def _compose(config_name: str, overrides: list[str], hydra: bool = False) -> DictConfig:
    try:
        with initialize_config_dir(version_base="1.3", config_dir=str(CONF)):
            return compose(config_name, overrides=overrides, return_hydra_config=hydra)
    except Exception as e:  # ValueError: a group set to null; Hydra's own settings: whatever OmegaConf raises
        if not (hydra or isinstance(e, HydraException | OmegaConfBaseException | ValueError)):
            raise
        message = str(e).split("Config search path:")[0] or type(e).__name__
        cause = f" ({_flat(str(e.__cause__)).split(' full_key')[0]})" if e.__cause__ else ""
        raise ConfigError(f"bad command line {' '.join(overrides)}: {_flat(message)}{cause}") from None


class _HydraOwn(Exception):
    """Hydra's parser would exit here (``--version``): the command is Hydra's."""


def _hydra_command(config_name: str, argv: list[str]) -> list[str] | None:
    """The overrides of ``argv`` as Hydra's own parser reads them (its flags, abbreviations and ``--``
    included), or None when a flag of Hydra's asks for something other than a run (``--cfg``, ``--help``,
    ``-cn`` ...); a flag it does not know is a ``ConfigError`` instead of argparse's usage text."""
    from hydra._internal.utils import get_args_parser

    parser = get_args_parser()

    def refuse(message: str):
        hint = f"{config_name}.py takes settings as key=value, e.g. seed=1; --help: Hydra's flags"
        raise ConfigError(f"{message} ({hint})")

    def own(status: int = 0, message: str | None = None):
        raise _HydraOwn

    parser.error, parser.exit, parser._print_message = refuse, own, lambda *a, **k: None
    try:
        parsed = parser.parse_args(argv)
    except _HydraOwn:
        return None
    runs = {"overrides", "run", "multirun"}  # flags that still run a job: its command line is checked
    defaults = vars(get_args_parser().parse_args([]))
    if any(value != defaults[key] for key, value in vars(parsed).items() if key not in runs):
        return None
    return list(parsed.overrides)


def _is_group(o: Override) -> bool:
    """Whether the override picks a config group's option (``model=dense``) rather than sets a value."""
    return (CONF / o.key_or_group).is_dir()


def _check_value(o: Override, text: str, base: dict) -> None:
    """A value set on the command line (``text``, for ``o``'s key): of its default's type and in range."""
    found, old = _lookup(base, o.key_or_group)
    new = _parser().parse_override(text).value()
    expected = _expected(o.key_or_group.rsplit(".", 1)[-1], old, new) if found else None
    if expected:
        raise ConfigError(f"{text}: expected {expected} for {o.key_or_group} (default {old!r}), got {new!r}")
    nested: Any = new
    for part in reversed(o.key_or_group.split(".")):  # as it sits in the config: check_values reads paths
        nested = {part: nested}
    check_values(nested)


@functools.cache
def _parser() -> OverridesParser:
    return OverridesParser.create()  # building one takes about 60 ms


def check_overrides(config_name: str, argv: list[str]) -> DictConfig | None:
    """Compose ``conf/<config_name>.yaml`` with the command line ``argv``; raise ``ConfigError`` on the
    first unknown key, unparsable or mistyped value, size out of range or missing required value.

    Returns the composed config (of a sweep's first job), or None when ``argv`` holds Hydra's own flags,
    which leave the command to Hydra (``--help``, ``--cfg``, ``-cn`` ...; ``-m`` and ``--run`` do not); a
    flag Hydra does not know is a ``ConfigError`` (argparse would print its usage). Every value of a
    sweep is checked, as its own job would be.
    """
    command = _hydra_command(config_name, argv)
    if command is None:
        return None
    args = [a for a in command if not a.lstrip("+~").startswith("hydra")]
    hydra_args = [a for a in command if a.lstrip("+~").startswith("hydra")]  # Hydra's own settings
    try:
        parsed = _parser().parse_overrides(args)
        hydra_parsed = _parser().parse_overrides(hydra_args)
    except HydraException as e:
        raise ConfigError(
            f"cannot parse the command line {' '.join(command)!r}: {_flat(str(e).splitlines()[0])}"
        ) from None
    if any(o.is_sweep_override() and o.value_type == ValueType.GLOB_CHOICE_SWEEP for o in parsed):
        return None  # glob(*) lists config files: Hydra's sweeper expands it, and checks each job's groups itself
    overrides = _first_job(parsed)
    groups = [s for o, s in zip(parsed, overrides) if _is_group(o)]
    hydra_first = _first_job(hydra_parsed)  # checked against Hydra's own schema and groups, once
    base = _compose(config_name, groups + hydra_first, hydra=bool(hydra_args))  # the defaults, groups as chosen
    base = OmegaConf.to_container(base, resolve=False)
    for i, o in enumerate(parsed):  # a sweep's other values, before job 0 runs: a group's choice as its own job,
        if o.is_sweep_override():  # a value by its type and range (composing each of 50 seeds took 12 s)
            for value in list(o.sweep_string_iterator())[1:]:
                text = f"{o.get_key_element()}={value}"
                if _is_group(o):
                    check_overrides(config_name, [*overrides[:i], text, *overrides[i + 1 :]])
                else:
                    _check_value(o, text, base)
    cfg = _compose(config_name, overrides)
    for o, text in zip(parsed, overrides):
        if o.type in (OverrideType.ADD, OverrideType.FORCE_ADD) and config_name in SAMPLING_ENTRY_POINTS:
            if not o.key_or_group.startswith("sampler.") and not _lookup(base, o.key_or_group)[0]:
                where = f"{config_name}.py has no key {o.key_or_group}"  # their own keys only: it would go unread
                raise ConfigError(f"{text}: {where} (conf/{config_name}.yaml lists them; + adds a key nothing reads)")
        if "${" in text:  # an interpolation the command line brought: resolved now, not in the middle of the run
            try:
                OmegaConf.select(cfg, o.key_or_group, throw_on_resolution_failure=True)
            except OmegaConfBaseException as e:
                if "HydraConfig was not set" not in str(e):  # ${hydra:...} resolves inside the run only
                    raise ConfigError(f"{text}: cannot be resolved ({_flat(str(e).splitlines()[0])})") from None
        elif o.type == OverrideType.CHANGE and not _is_group(o):
            _check_value(o, text, base)
    check_values(cfg)
    missing = [k for k, v in _leaves(OmegaConf.to_container(cfg, resolve=False)) if v == "???"]
    if missing:
        raise ConfigError(f"{missing[0]} is required: add {missing[0]}=<value> to the command line")
    return cfg

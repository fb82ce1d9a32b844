"""Every cell of a grid sweep composed from one base, so that checking a 200-cell study takes seconds.

Hydra composes a config from its defaults list, about 0.2 s a cell here: 40 s for a 192-cell study before
its first step. Most sweeps only set values (`seed=3`, `segments=4`), which Hydra applies, after composing,
onto the config that the command's fixed overrides give. So the base is composed once and each cell's
values are set on a copy of it, as Hydra sets them, with the two fields Hydra derives from a job's
overrides (`hydra.overrides.task`, `hydra.job.override_dirname`); a cell whose overrides choose a config
group, add or delete a key, touch `hydra`, or set a key the fixed overrides also set is composed in full.
`tests/test_sweeps.py` checks that both routes give the same config for every study.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from pathlib import Path

from hydra._internal.config_loader_impl import get_overrides_dirname
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override, OverrideType, ValueType
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

_ABSENT = object()


def _related(a: str, b: str) -> bool:
    return a == b or a.startswith(f"{b}.") or b.startswith(f"{a}.")


def settable(override: Override, base: DictConfig, fixed_keys: Sequence[str], conf_dir: Path) -> bool:
    """Whether Hydra would only set this value on the composed config (no group, add, delete or hydra key)."""
    key = override.key_or_group
    return (
        override.type == OverrideType.CHANGE
        and override.package is None
        and override.value_type == ValueType.ELEMENT
        and not override.is_hydra_override()
        and "/" not in key
        and not (conf_dir / key.replace(".", "/")).is_dir()
        and OmegaConf.select(base, key, default=_ABSENT, throw_on_missing=False) is not _ABSENT
        and not any(_related(key, fixed) for fixed in fixed_keys)
    )


def compose_cells(
    base: DictConfig,
    fixed: Sequence[str],
    jobs: Sequence[Sequence[str]],
    compose: Callable[[list[str]], DictConfig],
    conf_dir: Path,
) -> list[DictConfig]:
    """Each job's config: `base` (composed from the `fixed` overrides) with the job's other values set, or,
    where that is not what Hydra would do, `compose(job)`."""
    parser = OverridesParser.create()
    fixed_keys = [o.key_or_group for o in parser.parse_overrides(list(fixed))]
    dirname = base.hydra.job.config.override_dirname
    cells = []
    for job in jobs:
        parsed = parser.parse_overrides(list(job))
        extra = [o for o in parsed if o.input_line not in fixed]
        if not all(settable(o, base, fixed_keys, conf_dir) for o in extra):
            cells.append(compose(list(job)))
            continue
        cfg = copy.deepcopy(base)
        try:
            for override in extra:
                OmegaConf.update(cfg, override.key_or_group, override.value(), merge=True)
        except OmegaConfBaseException:
            cells.append(compose(list(job)))  # Hydra's own composition raises the error the user should see
            continue
        task = [o for o in parsed if not o.is_hydra_override()]
        cfg.hydra.overrides.task = [o.input_line for o in task]
        cfg.hydra.job.override_dirname = get_overrides_dirname(
            overrides=task, kv_sep=dirname.kv_sep, item_sep=dirname.item_sep, exclude_keys=dirname.exclude_keys
        )
        cells.append(cfg)
    return cells

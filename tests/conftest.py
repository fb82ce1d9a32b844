"""Shared fixtures: composed configs, the CLI in a subprocess, and what a study folder holds.

Each is a factory fixture (it returns a function), so a test composes or runs exactly what it needs.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from xablate.__main__ import MALLOC_ENV
from xablate.spec.resolvers import register_resolvers
from xablate.spec.schema import register_configs
from xablate.sweep.check import CONF_DIR


@functools.cache
def compose_config(*overrides: str, hydra_node: bool = False) -> DictConfig:
    """`conf/config.yaml` composed with `overrides` in its own Hydra context, as each CLI process does.

    Cached (composing takes a quarter of a second): callers only read the result."""
    register_configs()
    register_resolvers()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides), return_hydra_config=hydra_node)


@pytest.fixture(scope="session")
def compose_cfg() -> Callable[..., DictConfig]:
    return compose_config


def isolated_env(home: Path, *, fast_start: bool = True) -> dict[str, str]:
    """The environment of a CLI test: W&B pointed at a closed local port with throw-away config folders.

    `fast_start` presets the allocator variables the CLI otherwise sets by re-executing itself, which saves a
    second start-up of Python and torch; tests that leave it off check the path a user's plain command takes."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_") and k != "HYDRA_FULL_ERROR"}
    env = {k: v for k, v in env.items() if k not in MALLOC_ENV}
    if fast_start:
        env.update(MALLOC_ENV)
    env.update(WANDB_BASE_URL="http://127.0.0.1:9", NETRC=str(home / "netrc"))
    env.update({f"WANDB_{kind}_DIR": str(home / kind.lower()) for kind in ("CONFIG", "CACHE", "DATA")})
    return env


CONSOLE_SCRIPT = Path(sys.executable).parent / "xablate"
"""The `xablate` command `pip install` puts beside the interpreter (`[project.scripts]`)."""


def run_cli(
    cwd: Path,
    *args: str,
    out_dir: Path | None = None,
    fast_start: bool = True,
    timeout: float = 600,
    console: bool = False,
    **kwargs: Any,
) -> subprocess.CompletedProcess[str]:
    """`python -m xablate ARGS out_dir=<cwd>/runs` (or `out_dir`; with `console`, the `xablate` command, and
    `out_dir=None` adds no `out_dir`) in `cwd`, output captured."""
    cwd.mkdir(parents=True, exist_ok=True)
    program = [str(CONSOLE_SCRIPT)] if console else [sys.executable, "-m", "xablate"]
    out_dir = cwd / "runs" if out_dir is None and not console else out_dir
    cmd = [*program, *args, *([f"out_dir={out_dir}"] if out_dir is not None else [])]
    env = kwargs.pop("env", None) or isolated_env(cwd / "wandb_home", fast_start=fast_start)
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, **kwargs)


@pytest.fixture(scope="session")
def xablate_cli() -> Callable[..., subprocess.CompletedProcess[str]]:
    return run_cli


def read_summaries(study_dir: Path) -> dict[str, dict[str, Any]]:
    """Every cell's `summary.json` in a study folder, by folder name."""
    return {p.parent.name: json.loads(p.read_text()) for p in sorted(study_dir.glob("*/summary.json"))}


@pytest.fixture(scope="session")
def summaries() -> Callable[[Path], dict[str, dict[str, Any]]]:
    return read_summaries


def cell_dirs(study_dir: Path) -> dict[str, Path]:
    """The cell folders a Hydra job wrote in a study folder (those with `.hydra/`), by folder name."""
    return {p.parent.name: p.parent for p in sorted(study_dir.glob("*/.hydra"))}


@pytest.fixture(scope="session")
def run_dirs() -> Callable[[Path], dict[str, Path]]:
    return cell_dirs

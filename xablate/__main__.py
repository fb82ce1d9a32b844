"""`python -m xablate`: the Hydra application over `run(cfg)`."""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig

from .config import register_configs
from .errors import ConfigError
from .preflight import check_command
from .runs import register_resolvers


def _fail(err: ConfigError) -> None:
    print(f"xablate: error: {err}", file=sys.stderr)
    sys.exit(2)


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def _hydra_main(cfg: DictConfig) -> None:
    from .run import run

    try:
        run(cfg)
    except ConfigError as err:
        _fail(err)


def main() -> None:
    register_configs()
    register_resolvers()
    try:
        check_command(sys.argv[1:])
    except ConfigError as err:
        _fail(err)
    _hydra_main()


if __name__ == "__main__":
    main()

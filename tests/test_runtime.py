"""Where jobs compute: GPU and thread shares of parallel sweeps (pure functions, tested on the CPU), and the
`trainer.compile_mode` knob."""

from __future__ import annotations

from collections import Counter

import pytest
import torch
from omegaconf import OmegaConf

from xablate import ConfigError
from xablate.cell.reuse import setting_mismatch
from xablate.engine.build import build_engine
from xablate.engine.jobs import gpu_for_job, thread_share
from xablate.engine.runtime import execution_setting, hardware
from xablate.spec.cell import run_key
from xablate.spec.validate import validate

from .conftest import compose_config as compose_cfg


@pytest.mark.parametrize(("n_jobs", "gpus"), [(2, 2), (4, 2), (8, 2), (8, 4), (3, 2), (8, 3)])
def test_parallel_jobs_share_gpus_round_robin(n_jobs: int, gpus: int) -> None:
    placed = [gpu_for_job(job, n_jobs, gpus) for job in range(n_jobs)]
    assert placed == [job % gpus for job in range(n_jobs)]
    load = Counter(placed)
    assert set(load) == set(range(min(n_jobs, gpus))) and max(load.values()) - min(load.values()) <= 1


def test_later_jobs_of_a_long_sweep_keep_cycling() -> None:
    assert [gpu_for_job(job, 4, 2) for job in range(4, 8)] == [0, 1, 0, 1]


@pytest.mark.parametrize(("n_jobs", "gpus"), [(None, 4), (4, 1), (4, 0), (None, 0)])
def test_sequential_sweeps_and_single_gpus_keep_the_configured_device(n_jobs: int | None, gpus: int) -> None:
    assert gpu_for_job(3, n_jobs, gpus) is None


@pytest.mark.parametrize(("n_jobs", "cores", "threads"), [(1, 2, 2), (2, 2, 1), (4, 2, 1), (-1, 16, 1), (4, 16, 4),
                                                           (3, 16, 5), (8, 16, 2)])  # fmt: skip
def test_parallel_jobs_split_the_cores(n_jobs: int, cores: int, threads: int) -> None:
    assert thread_share(n_jobs, cores) == threads
    assert thread_share(n_jobs, cores) * min(cores, n_jobs if n_jobs > 0 else cores) <= cores


@pytest.mark.parametrize("mode", ["default", "reduce-overhead", "max-autotune"])
def test_a_valid_compile_mode_is_the_mode_torch_compile_gets(mode: str, monkeypatch: pytest.MonkeyPatch) -> None:
    modes: list[str | None] = []
    monkeypatch.setattr(torch, "compile", lambda model, mode=None: modes.append(mode) or model)
    cfg = compose_cfg("data=synthetic", "trainer.compile=true", f"trainer.compile_mode={mode}")
    build_engine(cfg, validate(cfg), torch.device("cpu"))
    assert modes == [mode]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (("trainer.compile=true", "trainer.compile_mode=fastest"), "fastest"),
        (("trainer.compile_mode=reduce-overhead",), "needs trainer.compile=true"),
    ],
)
def test_bad_compile_modes_fail_validation(overrides: tuple[str, ...], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        validate(compose_cfg(*overrides))


def test_unset_compile_mode_keeps_earlier_run_keys() -> None:
    compiled = compose_cfg("trainer.compile=true")
    assert compiled.trainer.compile_mode is None
    assert run_key(compose_cfg("trainer.compile=true", "trainer.compile_mode=reduce-overhead")) != run_key(compiled)
    before = OmegaConf.to_container(compose_cfg.__wrapped__())
    del before["trainer"]["compile_mode"]
    assert run_key(OmegaConf.create(before)) == run_key(compose_cfg())


def test_a_run_on_another_kind_of_cpu_is_not_a_twin() -> None:
    here = execution_setting(compose_cfg("trainer.threads=2", "trainer.device=cpu"))
    assert here["hardware"] == hardware(torch.device("cpu"))
    assert here["hardware"].endswith(f"({torch.backends.cpu.get_cpu_capability()})")
    there = {**here, "hardware": "AMD EPYC 7B13 (AVX2)"}
    assert setting_mismatch(there, here) == f"trained on AMD EPYC 7B13 (AVX2) there, {here['hardware']} here"
    unknown = {k: v for k, v in here.items() if k != "hardware"}
    assert setting_mismatch(unknown, here) == f"trained on (not recorded) there, {here['hardware']} here"


def test_a_run_is_a_twin_only_when_trained_the_same_way() -> None:
    here = execution_setting(compose_cfg("trainer.threads=2", "trainer.device=cpu"))
    assert setting_mismatch(dict(here), here) is None
    assert setting_mismatch({**here, "threads": 1}, here) == "trained with 1 threads there, 2 here"
    fast = execution_setting(compose_cfg("trainer.threads=2", "trainer.device=cpu", "trainer.fast_backward=true"))
    assert setting_mismatch(here, fast) == "trained with trainer.fast_backward=False there, True here"
    # A summary written before the backward route was recorded used the library's: it still matches.
    older = {k: v for k, v in here.items() if k != "fast_backward"}
    assert setting_mismatch(older, here) is None and setting_mismatch(older, fast) is not None

"""regexplain/runtime.py: where code runs. Device names are checked against what torch and this machine
offer (one line naming --device otherwise); threads follow the config, then REGEXPLAIN_THREADS; seeding
repeats every generator's draws."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from regexplain import runtime
from regexplain.errors import UsageError


def test_default_device_is_cuda_exactly_when_torch_sees_one():
    assert runtime.select_device() == torch.device("cuda" if torch.cuda.is_available() else "cpu")
    assert runtime.select_device("") == runtime.select_device(None)


@pytest.mark.parametrize("name", ["cpu", "cpu:0"])
def test_cpu_names(name):
    assert runtime.select_device(name).type == "cpu"


@pytest.mark.parametrize("name, message", [
    ("bogus", "--device 'bogus': not a device; use cpu, cuda or cuda:N"),
    ("cuda:x", "--device 'cuda:x': not a device; use cpu, cuda or cuda:N"),
    ("meta", "--device 'meta': only cpu and cuda devices are supported"),
])
def test_impossible_names_are_refused_naming_the_option(name, message):
    with pytest.raises(UsageError) as e:
        runtime.select_device(name)
    assert str(e.value) == message


def test_cuda_names_against_the_gpus_present(monkeypatch):
    if not torch.cuda.is_available():   # this machine as it is
        with pytest.raises(UsageError) as e:
            runtime.select_device("cuda")
        assert str(e.value) == "--device 'cuda': no CUDA GPU is available here; use --device cpu"
    # a machine with two GPUs, as torch would report it (nothing is allocated on them)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert runtime.select_device() == torch.device("cuda")
    assert runtime.select_device("cuda") == torch.device("cuda")
    assert runtime.select_device("cuda:1") == torch.device("cuda", 1)
    with pytest.raises(UsageError) as e:
        runtime.select_device("cuda:2")
    assert str(e.value) == "--device 'cuda:2': this machine has 2 CUDA GPU(s) (cuda:0..cuda:1)"


@pytest.fixture
def threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("n, env, want", [
    (0, None, "unchanged"),      # torch's default stays
    (0, "", "unchanged"),
    (0, "1", 1),                 # REGEXPLAIN_THREADS when the config says 0
    (2, "1", 2),                 # the config's count wins
    (1, None, 1),
])
def test_set_threads(threads, monkeypatch, n, env, want):
    if env is None:
        monkeypatch.delenv("REGEXPLAIN_THREADS", raising=False)
    else:
        monkeypatch.setenv("REGEXPLAIN_THREADS", env)
    torch.set_num_threads(3)
    runtime.set_threads(n)
    assert torch.get_num_threads() == (3 if want == "unchanged" else want)


def test_seed_everything_repeats_every_generator():
    def draws():
        gen = runtime.seed_everything(7)
        return (random.random(), float(np.random.rand()), float(torch.rand(1)),
                float(torch.rand(1, generator=gen)))

    first, again = draws(), draws()
    assert first == again
    runtime.seed_everything(8)
    assert random.random() != first[0] and float(torch.rand(1)) != first[2]

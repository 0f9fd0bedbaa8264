"""The CUDA training path (never run on this project's CPU machines): `make gpu-check` runs these."""

from __future__ import annotations

import pytest
import torch

pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]


@pytest.mark.parametrize("amp, fmt", [(False, "contiguous"), (True, "contiguous"), (True, "channels_last")])
def test_trainer_on_cuda_trains_and_writes_a_run(tmp_path, amp, fmt):
    from test_train import blobs

    from regexplain.config import load_config
    from regexplain.registration.checkpoint import read_checkpoint
    from regexplain.registration.train import Trainer

    cfg = load_config("smoke", overrides={"train": {"steps": 3, "amp": amp, "memory_format": fmt,
                                                    "processes": 2}})   # processes: CPU only, 1 here
    tr = Trainer(cfg, tmp_path / "run", False, "cuda", (blobs(8, seed=0), blobs(4, seed=1)), False)
    metrics = tr.loop()
    assert tr.device.type == "cuda" and next(tr.model.parameters()).is_cuda
    assert metrics["steps"] == 3 and metrics["world_size"] == 1
    assert 0.0 <= metrics["dice_after"] <= 1.0
    assert all(torch.isfinite(v).all() for v in read_checkpoint(tmp_path / "run")["model"].values())


def test_cuda_float32_step_matches_cpu():
    """The same batch and weights: the float32 CUDA loss and head gradient equal the CPU ones to 1e-4."""
    from regexplain.config import load_config
    from regexplain.registration.losses import registration_loss
    from regexplain.registration.model import RegistrationNet
    from regexplain.registration.spatial import one_hot

    cfg = load_config("smoke")
    torch.manual_seed(0)
    net = RegistrationNet.from_config(cfg)
    torch.nn.init.normal_(net.decoder.head.weight, std=0.05)
    g = torch.Generator().manual_seed(1)
    m, f = (torch.rand(2, 1, 16, 16, 16, generator=g) for _ in range(2))
    moh, foh = (one_hot(torch.randint(0, 3, (2, 1, 16, 16, 16), generator=g), 3) for _ in range(2))
    out = []
    for dev in ("cpu", "cuda"):
        n = net.to(dev)
        loss, _ = registration_loss(n(m.to(dev), f.to(dev)), m.to(dev), f.to(dev), moh.to(dev), foh.to(dev),
                                    cfg.loss)
        grad = torch.autograd.grad(loss, n.decoder.head.weight)[0]
        out.append((float(loss), grad.cpu()))
    assert out[1][0] == pytest.approx(out[0][0], abs=1e-4)
    torch.testing.assert_close(out[1][1], out[0][1], atol=1e-4, rtol=1e-3)

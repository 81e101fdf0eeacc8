"""pretrain (through imix_teach.accel.speed_path) keeps freed CPU memory for the next step (glibc): activations are not page-faulted in every step."""
import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from imix_teach import train
from imix_teach.accel import memory as _memory
from imix_teach.data.augment import ImageAugment
from imix_teach.methods import build_method
from imix_teach.models import SmallConvNet
from imix_teach.train import Mixing, Optim, Runtime

ROOT = Path(__file__).resolve().parents[1]


def _page_faults_per_step(steps: int = 3) -> float:
    """Minor page faults per i-Mix N-pair step of the small ConvNet, batch 128 of 32 px images, channels_last."""
    torch.manual_seed(0)
    method = build_method("npair", SmallConvNet(3, 32), proj_hidden=256, proj_dim=64).to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(method.parameters(), lr=0.01)
    x = torch.randint(0, 256, (128, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    aug, gen = ImageAugment((32, 32), (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)), torch.Generator().manual_seed(0)
    options = train.StepOptions(Mixing(alpha=1.0), channels_last=True)
    for _ in range(3):
        train.train_step(method, x, aug, opt, gen, options)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(steps):
        train.train_step(method, x, aug, opt, gen, options)
    return (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / steps


@pytest.mark.slow  # eight steps of a batch of 128 at 32 px: a few seconds
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc: Linux only")
def test_training_steps_reuse_freed_activations_instead_of_page_faulting_them_in():
    # In a fresh process: a test worker's page faults depend on whatever ran in it before.
    code = ("import sys; sys.path.insert(0, 'tests'); from imix_teach.accel import memory; import test_memory; "
            "print('kept' if memory.keep_freed_memory() else 'not glibc', test_memory._page_faults_per_step(5))")
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-2000:]
    kept, faults = done.stdout.split()
    if kept != "kept":
        pytest.skip("not glibc: malloc left as it is")
    # with glibc's defaults 4,000-10,000 pages (16-40 MiB) per step were handed back and faulted in again
    assert float(faults) < 3000


def test_pretrain_calls_it_on_a_cpu(monkeypatch):
    calls = []
    monkeypatch.setattr(_memory, "keep_freed_memory", lambda: calls.append(1) or True)
    torch.manual_seed(0)
    method = build_method("npair", SmallConvNet(3, width=4), proj_hidden=8, proj_dim=4)
    train.pretrain(method, torch.rand(8, 3, 8, 8), lambda v, g=None: v, optim=Optim(epochs=1, batch_size=4),
                   runtime=Runtime(progress=False))
    assert calls == [1]

"""What the first code cell of every notebook calls: seeds, device, quick mode, data root.

    from imix_teach.course import setup
    device = setup()            # prints one line a reader can check, returns the device
"""
from __future__ import annotations

import contextlib
import os

import torch

from .config import pick_device, quick_mode, seed_everything

COLAB_CELL = '''# Colab only: install this course's package (it keeps Colab's own torch) and turn on widgets.
import sys
if "google.colab" in sys.modules:
    !pip install -q "imix-teach @ git+https://github.com/imix-teach/imix-teach"
    from google.colab import output
    output.enable_custom_widget_manager()'''


def setup(seed: int = 0, device: str | torch.device | None = None) -> torch.device:
    """Seed everything, pick the device (CUDA, then MPS, then CPU), set plot defaults; print a summary.

    The summary names where data comes from without printing machine paths, so committed
    notebook outputs stay portable.
    """
    seed_everything(seed)
    dev = pick_device(device)
    with contextlib.suppress(ImportError):  # plotting is optional for library use
        import matplotlib.pyplot as plt

        plt.rcParams.update({"figure.dpi": 90, "savefig.dpi": 90, "figure.figsize": (6.4, 3.6)})
    data = "$IMIX_DATA" if os.environ.get("IMIX_DATA") else "per-user cache (downloads on first use)"
    mode = "QUICK (IMIX_QUICK=1: smallest honest run)" if quick_mode() else "full"
    print(f"imix-teach | torch {torch.__version__.split('+')[0]} | device: {dev.type} | mode: {mode} | data: {data}")
    return dev

"""What the first code cell of every notebook calls: seeds, device, quick mode, data root.

    from imix_teach.course import setup
    device = setup()            # prints one line a reader can check, returns the device
"""
from __future__ import annotations

import contextlib
import os

import torch

from .config import pick_device, quick_mode, seed_everything

# The first code cell of every notebook (scripts/sync_notebooks.py fills in {repository} from
# pyproject.toml's [project.urls]). It must run before imix_teach exists, so it cannot import it.
# No other braces may appear in it: the script fills the template with str.format.
COLAB_CELL = '''# Installs this course's package where it is missing (Colab, a Jupyter without it), keeping the runtime's own
# torch: from a wheel (`make bundle`) in this folder or in Google Drive, else from the repository.
import glob, importlib, importlib.util, os, subprocess, sys

REPOSITORY = "{repository}"
DRIVE = "/content/drive/MyDrive/"  # where Colab mounts Google Drive
FOLDERS = ["", DRIVE, DRIVE + "*/", DRIVE + "Colab Notebooks/*/"]  # "": the working folder
if importlib.util.find_spec("imix_teach"):
    print("imix-teach is already installed, so this cell installed nothing.")
else:
    wheels = [path for folder in FOLDERS for path in glob.glob(folder + "imix_teach-*.whl")]
    source = max(wheels, key=os.path.getmtime) if wheels else "imix-teach @ git+" + REPOSITORY
    if subprocess.run([sys.executable, "-m", "pip", "install", "-q", source]).returncode:
        raise RuntimeError("Could not install imix-teach from " + source + ". Put imix_teach-*.whl (from `make bundle`) "
                           "in this folder (Colab: the Files pane) or in Google Drive, mounted, and run this cell again.")
    importlib.invalidate_caches()
    print("Installed imix-teach from " + source + ".")
if "google.colab" in sys.modules:  # Colab draws ipywidgets only through its custom widget manager
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

"""Reference solutions of the notebooks' exercises, one function each (printed by ``show_solution``).

Notebook authors: add one function per exercise, named after the notebook (``nb01_...``).
"""
from __future__ import annotations

import torch

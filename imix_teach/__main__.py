"""``python -m imix_teach ...`` is the ``imix-teach`` command (also under ``torchrun -m imix_teach``)."""
import sys

from .cli import main

sys.exit(main())

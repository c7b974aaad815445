"""``python -m hf_spurious.cli`` runs the ``hf-spurious`` command (torchrun and accelerate launch use it)."""

import sys

from hf_spurious.cli import main

sys.exit(main())

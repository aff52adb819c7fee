"""``python -m engine.cli``: the ``labelengine`` command (job workers start this way)."""

import os

from engine.cli import main

os.environ.setdefault("PYTHONUNBUFFERED", "1")
main()

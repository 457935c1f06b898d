"""The site's unit tests: the fake site and containers (``site_fakes.py``) live next to this
file; make them importable however pytest is started (the suite uses importlib mode)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

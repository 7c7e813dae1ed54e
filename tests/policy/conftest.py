"""Policy tests import the pack's rules (``policy/mlpolicy``) the way the pack process does: from
the pack directory on ``sys.path`` (the CLI runs the pack with ``policy/`` as working directory)."""

from __future__ import annotations

import sys
from pathlib import Path

POLICY_DIR = Path(__file__).resolve().parents[2] / "policy"
if str(POLICY_DIR) not in sys.path:
    sys.path.insert(0, str(POLICY_DIR))

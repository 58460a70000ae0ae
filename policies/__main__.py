"""Serve the policy pack, as the engine starts it: ``python -m pulumi.policy <engine> .``.

The engine runs this file with the pack's directory as the working directory; the project root
(where ``domain`` and ``policies`` live) is found from this file, not from the working directory.
"""

import sys
from pathlib import Path

ROOT = str(Path(__file__).resolve().parents[1])
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from pulumi_policy import PolicyPack  # noqa: E402 (the path above must be set first)

from policies import pack  # noqa: E402

PolicyPack(
    name=pack.NAME,
    description=pack.DESCRIPTION,
    enforcement_level=pack.DEFAULT_LEVEL,
    policies=pack.POLICIES,
)

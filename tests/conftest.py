"""Every test prices with the bundled table, whatever a developer has refreshed on this machine.

``domain.prices.current`` reads ``$QWEN_STRESS_PRICES`` and ``$QWEN_STRESS_PRICES_DIR``; both
are pointed away from the user's cache before any test (or subprocess it starts) runs.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile

from domain import prices

os.environ.pop(prices.PRICES_ENV, None)
_EMPTY = tempfile.mkdtemp(prefix="qwen-stress-prices-")
atexit.register(shutil.rmtree, _EMPTY, True)
os.environ[prices.PRICES_DIR_ENV] = _EMPTY

"""``python -m sensor``: the ``cgsentry-sensor`` CLI, which lives in the composition root.

An entry script, imported by nothing: the import-direction test counts it with ``sensor.agent``.
"""

import sys

from sensor.agent.cli import main

sys.exit(main())

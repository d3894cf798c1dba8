"""``python -m benchmarks``: the benchmark harness (``wavis bench``; see wavis/bench/__init__.py)."""

import sys

from wavis.bench import main

sys.exit(main())

"""The draft worker process's entry point: `python -m specbranch.transport SETTINGS_JSON`.

A module of its own (not `process.py` itself), because importing the package already imports
`process.py`; running that as `__main__` would load it twice.
"""

import json
import sys

from specbranch.transport.process import WorkerOptions, draft_worker_main

settings = json.loads(sys.argv[1])
settings["options"] = WorkerOptions(**settings["options"])
draft_worker_main(**settings)

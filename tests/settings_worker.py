"""The other process of the runtime-settings test (run as a script, not collected).

Usage: ``python settings_worker.py URL SCHEMA READY GO``. It connects with
connect-time routing rules of its own, captures a lead (so it has read the
tenant's settings once), touches READY, waits for GO (the test changes a
routing rule meanwhile, in its own process), captures another lead in a new
session and prints one JSON line: who got each lead and which rule decided.
"""

from __future__ import annotations

import json
import sys
import time
import traceback
from pathlib import Path

import pycrm


def main() -> None:
    url, schema, ready, go = sys.argv[1:5]
    crm = pycrm.connect(
        url,
        schema=schema or None,
        routing_rules=[{"name": "connect-time", "pick": "first"}],
        load_plugins=False,
    )
    with crm.session(crm.system_actor) as s:
        before = s.leads.capture("Before", source="api")
    Path(ready).touch()
    deadline = time.monotonic() + 60
    while not Path(go).exists():
        if time.monotonic() > deadline:
            raise SystemExit("the go signal never came")
        time.sleep(0.005)
    with crm.session(crm.system_actor) as s:
        after = s.leads.capture("After", source="api")
    crm.close()
    print(
        json.dumps(
            {
                "before": [before.owner_id, before.assigned_by],
                "after": [after.owner_id, after.assigned_by],
            }
        )
    )


if __name__ == "__main__":
    try:
        main()
    except BaseException:
        traceback.print_exc()
        sys.exit(1)

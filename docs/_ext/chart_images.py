"""Draw the charts that docs/analytics.md shows, from the demo's data.

Run it from the repository root after changing the charts or the demo, and
commit the images it writes::

    .venv/bin/python docs/_ext/chart_images.py

It runs the demo in memory on a fixed clock, imports the sample leads file
the demo suggests (as Mia from marketing), and draws each report into
``docs/images/charts/<report>.png``. The same code and data give the same
images, so the docs build needs neither a database nor the network.
"""

from __future__ import annotations

import csv
import io
import sys
from datetime import UTC, datetime
from pathlib import Path

from rich.console import Console

import pycrm
from pycrm.charts import save
from pycrm.demo import SAMPLE_LEADS, run_demo
from pycrm.reports import REPORTS, build_report
from pycrm.testing import FakeClock

#: Where the guide expects the images.
FOLDER = Path(__file__).resolve().parents[1] / "images" / "charts"

#: The demo's tenant in the images.
TENANT = "demo"


def draw(folder: Path = FOLDER) -> list[Path]:
    """Write one PNG per report into ``folder``; return their paths."""
    clock = FakeClock(datetime(2026, 3, 2, 9, 0, tzinfo=UTC))
    with pycrm.connect("memory://", clock=clock) as crm:
        figures = run_demo(crm, TENANT, Console(file=io.StringIO()))
        mia = next(
            email for _, email, department, _ in figures["users"] if department == "marketing"
        )
        with crm.session(crm.system_actor, tenant=TENANT) as s:
            mia_id = s.org.find_user(mia).id
        with crm.session(mia_id, tenant=TENANT) as s:
            s.importer.leads(csv.DictReader(io.StringIO(SAMPLE_LEADS)), default_region="DE")
        written = []
        with crm.session(crm.system_actor, tenant=TENANT) as s:
            for name in REPORTS:
                path = folder / f"{name}.png"
                save(build_report(s, name), path)
                written.append(path)
    return written


if __name__ == "__main__":
    for path in draw(Path(sys.argv[1]) if len(sys.argv) > 1 else FOLDER):
        print(path)

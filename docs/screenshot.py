"""Make docs/report.png, the README's picture of the report: three nightly snapshots from the
simulators (their clock moved a day between runs), the report, and a headless Chromium screenshot.

    .venv/bin/python docs/screenshot.py
"""

from __future__ import annotations

import os
import sys
import tempfile
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from exporter.report import ReportOptions, write_report  # noqa: E402
from exporter.sandbox.tradesync import tradesync_simulator  # noqa: E402
from tests.browser import screenshot  # noqa: E402
from tests.helpers import make_job, run  # noqa: E402

DAY = 86_400


def main() -> None:
    today = datetime.now(UTC).replace(hour=2, minute=0, second=0, microsecond=0)
    with tempfile.TemporaryDirectory() as tmp:
        os.chdir(tmp)  # the report's header names the output as given: "output"
        output = Path("output")
        job = make_job({"tradesync": {"rps": 0, "concurrency": 8}}, name="nightly")
        with tradesync_simulator(accounts=1500, trades_per_account=10, rate_limit_rps=0,
                                 new_accounts_per_hour=2) as (url, _):
            env = {"TRADESYNC_API_KEY": "sim-key", "TRADESYNC_API_SECRET": "sim-secret", "TRADESYNC_BASE_URL": url}
            for day in range(5):
                run(job, output, env, now=today - timedelta(days=4 - day))
                request = urllib.request.Request(f"{url}/_sim/advance?seconds={DAY}", method="POST")
                urllib.request.urlopen(request).close()
        page = Path(write_report(str(output), None, ReportOptions()))
        screenshot(page, ROOT / "docs" / "report.png", width=1280, height=2700)
    print(ROOT / "docs" / "report.png")


if __name__ == "__main__":
    main()

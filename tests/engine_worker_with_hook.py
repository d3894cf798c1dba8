"""``wavis worker`` with a completion hook that logs every completion into
``engine_test_completions`` (created by the test): the scale-out tests count rows per job to
prove each job completed exactly once across workers, reclaims and kills. Not a test module."""

from __future__ import annotations

import sys

from wavis.service import jobs


async def record(conn, job, outcome) -> None:
    await conn.execute("INSERT INTO engine_test_completions (job_id, attempt, status, worker) VALUES ($1, $2, $3, $4)",
                       job.id, job.attempt, outcome.status, sys.argv[1] if len(sys.argv) > 1 else "")


jobs.register_completion_hook(record)

if __name__ == "__main__":
    from wavis.cli import main

    sys.exit(main(["worker"]))

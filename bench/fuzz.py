"""Input fuzzing, the long run: the property suites and schemathesis of tests/fuzz with many more
examples than CI's (hypothesis profile `bench`, random rather than derandomized).

    .venv/bin/python bench/fuzz.py [--examples 150] [--only api,events,schemathesis] [--db sqlite|postgresql]

Prints how many inputs were tried per route and per event, on each database, and what failed;
writes its section of docs/benchmarks.md. Needs what the tests need (TEST_POSTGRES_URL,
TEST_REDIS_URL; see ./run.sh test). The suites are the same files CI runs (tests/fuzz), so the
long run and CI check the same properties (docs/api.md, "Input in CI").
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.scale import write_section  # noqa: E402

HEADING = "## Input fuzzing"
SUITES = {"api": "tests/fuzz/test_api_properties.py", "events": "tests/fuzz/test_event_properties.py",
          "schemathesis": "tests/fuzz/test_schemathesis.py"}
TITLES = {"api": "property suite, HTTP API (route)", "events": "property suite, socket.io (event)",
          "schemathesis": "schemathesis, OpenAPI document (operation)"}


def run(examples: int, only: list[str], db: str | None, report: Path) -> tuple[int, float]:
    env = {**os.environ, "HYPOTHESIS_PROFILE": "bench", "FUZZ_EXAMPLES": str(examples), "FUZZ_REPORT": str(report)}
    args = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *[SUITES[s] for s in only]]
    if db:
        args += ["-k", db]
    t0 = time.monotonic()
    rc = subprocess.run(args, cwd=ROOT, env=env).returncode
    return rc, time.monotonic() - t0


def tables(data: dict) -> tuple[str, int, list[str]]:
    lines, total, failures = [], 0, []
    for suite, runs in data.items():
        keys = sorted({k for r in runs.values() for k in r["tried"]})
        dbs = sorted(runs)
        lines += ["", f"{TITLES.get(suite, suite)}:", "",
                  "| " + " | ".join(["input", *dbs, "failed"]) + " |", "|---" * (len(dbs) + 2) + "|"]
        for k in keys:
            failed = [db for db in dbs if k in runs[db]["failed"]]
            lines.append(f"| `{k}` | " + " | ".join(str(runs[db]["tried"].get(k, 0)) for db in dbs)
                         + f" | {', '.join(failed) or '-'} |")
        sums = [sum(runs[db]["tried"].values()) for db in dbs]
        total += sum(sums)
        lines.append("| **all** | " + " | ".join(map(str, sums)) + " | |")
        for db in dbs:
            for k, what in sorted(runs[db]["failed"].items()):
                failures.append(f"{suite} {db} {k}: {what}")
    return "\n".join(lines), total, failures


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--examples", type=int, default=150, help="hypothesis examples per route, event or operation")
    ap.add_argument("--only", default="api,events,schemathesis", help="comma-separated: " + ", ".join(SUITES))
    ap.add_argument("--db", choices=["sqlite", "postgresql"], help="one database only (default both)")
    ap.add_argument("--no-write", action="store_true", help="do not update docs/benchmarks.md")
    args = ap.parse_args()
    only = [s.strip() for s in args.only.split(",") if s.strip()]
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        rc, seconds = run(args.examples, only, args.db, report)
        data = json.loads(report.read_text()) if report.exists() else {}
    body, total, failures = tables(data)
    print(body)
    print(f"\n{total} inputs in {seconds:.0f} s; pytest exit code {rc}")
    print("failed:" if failures else "nothing failed")
    for f in failures:
        print("  " + f[:400])
    if not args.no_write:
        section = "\n".join([
            HEADING, "",
            f"`bench/fuzz.py --examples {args.examples}` ({dt.date.today().isoformat()}, {seconds:.0f} s on this host): "
            f"{total} inputs tried by the suites of tests/fuzz (hypothesis profile `bench`; CI runs the same suites "
            "with the derandomized `ci` profile, 8 examples each). Counts per route or event and database; "
            "an input counts once it is sent.",
            body, "",
            (f"Failed ({len(failures)}):\n\n" + "\n".join(f"- {f[:300]}" for f in failures)) if failures
            else "Nothing failed: no 5xx, no `internal_error`, every refusal in the documented shape and changing "
                 "nothing, `mediation audit verify` passing afterwards.",
        ])
        write_section(ROOT / "docs" / "benchmarks.md", section, HEADING)
    return 0 if rc == 0 and not failures else 1


if __name__ == "__main__":
    sys.exit(main())

"""After ``mutmut run``: fail unless every surviving mutant is a listed equivalent one.

Reads ``mutmut results --all true`` and tests/mutation/EQUIVALENT.md (a bullet list whose lines start
with the mutant's name in backticks). Prints the counts per module, every unlisted survivor (with
``mutmut show <name>`` to see it) and every listed name that no longer survives (stale: remove it).

mutmut caches verdicts per function and does not re-test a cached survivor when only the tests changed,
so ``--rerun`` first re-tests every unlisted survivor against the current tests.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
EQUIVALENT = Path(__file__).with_name("EQUIVALENT.md")
# Statuses that mean no test noticed the mutant.
NOT_CAUGHT = {"survived", "no tests", "suspicious"}


def listed_equivalents() -> set[str]:
    return set(re.findall(r"^- `([^`]+)`", EQUIVALENT.read_text(encoding="utf-8"), flags=re.MULTILINE))


MUTMUT = str(Path(sys.executable).with_name("mutmut"))


def results() -> dict[str, str]:
    out = subprocess.run(
        [MUTMUT, "results", "--all", "true"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    found = {}
    for line in out.splitlines():
        name, sep, status = line.strip().rpartition(": ")
        if sep and "__mutmut_" in name:
            found[name] = status
    return found


def module_of(name: str) -> str:
    return name.split(".x", 1)[0]


def main() -> int:
    statuses = results()
    if not statuses:
        print("web-chat: error: no mutmut results: run `mutmut run` first", file=sys.stderr)
        return 2
    equivalent = listed_equivalents()
    if "--rerun" in sys.argv[1:]:
        again = sorted(n for n, s in statuses.items() if s in NOT_CAUGHT and n not in equivalent)
        if again:
            print(f"re-testing {len(again)} cached survivors against the current tests")
            subprocess.run([MUTMUT, "run", "--max-children", "2", *again], cwd=ROOT, check=True)
            statuses = results()
    per_module: dict[str, Counter[str]] = {}
    for name, status in statuses.items():
        per_module.setdefault(module_of(name), Counter())[
            "equivalent" if status in NOT_CAUGHT and name in equivalent else status
        ] += 1
    for module, counts in sorted(per_module.items()):
        print(
            f"{module}: {sum(counts.values())} mutants, "
            + ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
        )
    missed = sorted(n for n, s in statuses.items() if s in NOT_CAUGHT and n not in equivalent)
    stale = sorted(n for n in equivalent if statuses.get(n) not in NOT_CAUGHT)
    for name in stale:
        print(f"stale entry in {EQUIVALENT.name} (no longer a surviving mutant): {name}")
    for name in missed:
        print(f"not caught ({statuses[name]}): {name}    (mutmut show {name})")
    print(
        f"{len(missed)} mutants not caught outside {EQUIVALENT.name}, {len(equivalent)} listed as equivalent"
    )
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())

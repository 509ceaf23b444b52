#!/usr/bin/env python3
"""SyTest as a ratchet: fail when a test outside the expected-failure list fails.

    sytest_ratchet.py TAP EXPECTED [--update]

TAP is SyTest's output (``make sytest`` writes it); EXPECTED is the checked-in
list of tests still expected to fail (``conformance/expected-failures.txt``:
one test name per line, ``#`` comments). A test fails when its TAP line is
``not ok`` (SyTest's blacklisted expected failures, ``# TODO``, count as
failures here too: the list is ours, not Synapse's). A test that never ran
(a prerequisite failed) is not in the TAP and is not judged.

Exit 1 when a test fails that the list does not name (a regression). Tests on
the list that now pass are printed: take them off the list (``--update``
rewrites it as what failed this run), so the list only ever shrinks.
"""

from __future__ import annotations

import re
import sys

_LINE = re.compile(r"^(ok|not ok) \d+ (.*?)(\s+# (TODO|SKIP).*)?$")


def results(tap_path: str) -> dict[str, bool]:
    """Test name -> passed, from a SyTest TAP file."""
    out: dict[str, bool] = {}
    with open(tap_path, encoding="utf-8", errors="replace") as f:
        for line in f:
            m = _LINE.match(line.rstrip("\n"))
            if m:
                name = re.sub(r" \(\d+ subtests\)$", "", m.group(2))
                out[name] = m.group(1) == "ok" and m.group(4) != "TODO"
    return out


def expected_failures(path: str) -> list[str]:
    with open(path, encoding="utf-8") as f:
        return [line.rstrip("\n") for line in f
                if line.strip() and not line.startswith("#")]


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print(__doc__)
        return 2
    tap_path, expected_path = argv[0], argv[1]
    ran = results(tap_path)
    if not ran:
        print(f"sytest_ratchet: no test results in {tap_path}")
        return 1
    failed = sorted(n for n, ok in ran.items() if not ok)
    if "--update" in argv[2:]:
        with open(expected_path, "w", encoding="utf-8") as f:
            f.write("# SyTest tests still expected to fail (scripts/sytest_ratchet.py): the list\n"
                    "# only shrinks. One test name per line, as SyTest prints it.\n")
            f.writelines(n + "\n" for n in failed)
        print(f"sytest_ratchet: {len(failed)} expected failures written to {expected_path}")
        return 0
    expected = set(expected_failures(expected_path))
    regressions = [n for n in failed if n not in expected]
    fixed = sorted(n for n in expected if ran.get(n) is True)
    passed = sum(1 for ok in ran.values() if ok)
    for name in regressions:
        print(f"REGRESSION: {name}")
    for name in fixed:
        print(f"now passes (take it off {expected_path}): {name}")
    print(f"sytest_ratchet: {passed} passed, {len(failed)} failed, "
          f"{len(regressions)} not on the expected list")
    return 1 if regressions else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

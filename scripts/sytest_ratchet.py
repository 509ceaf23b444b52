#!/usr/bin/env python3
"""SyTest as a ratchet: fail when a test outside the expected-failure list fails.

    sytest_ratchet.py TAP EXPECTED [--update] [--retry -- RUN-COMMAND...]

TAP is SyTest's output (``make sytest`` writes it, its progress log beside it
as TAP.log); EXPECTED is the checked-in list of tests still expected to fail
(``conformance/expected-failures.txt``: one test name per line, ``#``
comments). A test fails when its TAP line is ``not ok`` or when SyTest skipped
it for a failing fixture; SyTest's blacklisted expected failures (``# TODO``)
count as failures too: the list is ours, not Synapse's. A test that never ran,
or that SyTest skips on purpose (a feature this implementation does not
claim), is not judged.

With ``--retry``, the files holding tests that failed off the list run once
more (RUN-COMMAND is the SyTest command line without its test files; the
second TAP goes to TAP.retry): SyTest drives real servers and a few of its
tests race, so a test judged a regression must fail twice.

Exit 1 when a test fails that the list does not name (a regression). Tests on
the list that now pass are printed: take them off the list (``--update``
rewrites it as what failed this run), so the list only ever shrinks.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

_LINE = re.compile(r"^(ok|not ok) \d+ (?:\(expected fail\) )?(.*?)(\s+# (TODO|skip|SKIP)(.*))?$")
_FILE = re.compile(r"^(tests/\S+\.pl):$")
_TEST = re.compile(r"^\s+Test \d+ (.*?)\.\.\. ")

PASS, FAIL, UNJUDGED = "pass", "fail", "unjudged"


def results(tap_path: str) -> dict[str, str]:
    """Test name -> PASS, FAIL or UNJUDGED, from a SyTest TAP file."""
    out: dict[str, str] = {}
    with open(tap_path, encoding="utf-8", errors="replace") as f:
        for line in f:
            m = _LINE.match(line.rstrip("\n"))
            if not m:
                continue
            name = re.sub(r" \(\d+ subtests\)$", "", m.group(2))
            directive, reason = (m.group(4) or "").lower(), m.group(5) or ""
            if m.group(1) == "not ok" or directive == "todo":
                out[name] = FAIL if m.group(1) == "not ok" or "passed" not in reason else PASS
            elif directive == "skip":
                out[name] = FAIL if "failing fixture" in reason else UNJUDGED
            else:
                out[name] = PASS
    return out


def files_of(log_path: str, names: set[str]) -> list[str]:
    """The SyTest files (``tests/...pl``) that hold ``names``, from the progress log."""
    files: list[str] = []
    current = None
    with open(log_path, encoding="utf-8", errors="replace") as f:
        for line in f:
            m = _FILE.match(line.rstrip("\n"))
            if m:
                current = m.group(1)
                continue
            m = _TEST.match(line)
            if m and current and m.group(1) in names and current not in files:
                files.append(current)
    return files


def expected_failures(path: str) -> list[str]:
    with open(path, encoding="utf-8") as f:
        return [line.rstrip("\n") for line in f
                if line.strip() and not line.startswith("#")]


def write_list(path: str, failed: list[str]) -> None:
    with open(path, "w", encoding="utf-8") as f:
        f.write("# SyTest tests still expected to fail (scripts/sytest_ratchet.py): the list\n"
                "# only shrinks. One test name per line, as SyTest prints it. Why each one\n"
                "# fails: docs/conformance.md.\n")
        f.writelines(n + "\n" for n in failed)


def retry(tap_path: str, command: list[str], names: list[str]) -> dict[str, str]:
    """Run the files holding ``names`` once more; their results."""
    log = tap_path + ".log"
    files = files_of(log, set(names)) if os.path.exists(log) else []
    if not files:
        return {}
    retry_tap = tap_path + ".retry"
    print(f"sytest_ratchet: {len(names)} unexpected failures; running "
          f"{' '.join(files)} once more", flush=True)
    subprocess.run([*command, "--output", retry_tap, *files], check=False)
    return results(retry_tap) if os.path.exists(retry_tap) else {}


def main(argv: list[str]) -> int:
    command: list[str] = []
    if "--retry" in argv:
        at = argv.index("--retry")
        argv, command = argv[:at], argv[at + 1:]
        if command[:1] == ["--"]:
            command = command[1:]
    if len(argv) < 2:
        print(__doc__)
        return 2
    tap_path, expected_path = argv[0], argv[1]
    ran = results(tap_path)
    if not ran:
        print(f"sytest_ratchet: no test results in {tap_path}")
        return 1
    failed = sorted(n for n, r in ran.items() if r == FAIL)
    if "--update" in argv[2:]:
        write_list(expected_path, failed)
        print(f"sytest_ratchet: {len(failed)} expected failures written to {expected_path}")
        return 0
    expected = set(expected_failures(expected_path))
    regressions = [n for n in failed if n not in expected]
    if regressions and command:
        again = retry(tap_path, command, regressions)
        for name in regressions:
            if again.get(name) == PASS:
                print(f"passed when run again (a race in the test or in us): {name}")
        regressions = [n for n in regressions if again.get(n) != PASS]
    fixed = sorted(n for n in expected if ran.get(n) == PASS)
    passed = sum(1 for r in ran.values() if r == PASS)
    for name in regressions:
        print(f"REGRESSION: {name}")
    for name in fixed:
        print(f"now passes (take it off {expected_path}): {name}")
    print(f"sytest_ratchet: {passed} passed, {len(failed)} failed, "
          f"{sum(1 for r in ran.values() if r == UNJUDGED)} skipped on purpose, "
          f"{len(regressions)} failed and are not on the expected list")
    return 1 if regressions else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""Reads a JUnit XML report with junitparser (an independent JUnit parser from PyPI).

usage: read_junit.py <report.xml>

Prints {"tests", "failures", "errors", "skipped": the suite's counts as junitparser recomputes
them from the testcases, "declared": the counts the report itself declares, "cases": {name:
[result kinds]}}.
"""
import json
import sys

from junitparser import JUnitXml


def main():
    report = JUnitXml.fromfile(sys.argv[1])
    suites = list(report) if isinstance(report, JUnitXml) else [report]
    cases = {}
    declared = {"tests": report.tests, "failures": report.failures, "errors": report.errors, "skipped": report.skipped}
    for suite in suites:
        for case in suite:
            cases[case.name] = [type(result).__name__ for result in case.result]
    report.update_statistics()
    print(json.dumps({
        "tests": report.tests,
        "failures": report.failures,
        "errors": report.errors,
        "skipped": report.skipped,
        "declared": declared,
        "cases": cases,
    }))


if __name__ == "__main__":
    main()

"""How the reference comparisons read a value: dates and timestamps as ISO text, lists item by
item, and numbers equal within 1e-9 (relative)."""
import datetime
import math


def normal(value):
    if isinstance(value, datetime.datetime):
        return value.replace(tzinfo=None).isoformat()
    if isinstance(value, datetime.date):
        return value.isoformat()
    if isinstance(value, list):
        return [normal(item) for item in value]
    return value


def same(left, right):
    numbers = (int, float)
    if isinstance(left, numbers) and isinstance(right, numbers) and not isinstance(left, bool):
        return math.isclose(float(left), float(right), rel_tol=1e-9, abs_tol=1e-12)
    return left == right


def differences(table, columns, ours, theirs, other):
    """What differs between two lists of rows (in the same order), each line naming the table,
    the column, the row's first value and both values."""
    found = []
    for mine, reference in zip(ours, theirs):
        for column, left, right in zip(columns, mine, reference):
            left, right = normal(left), normal(right)
            if not same(left, right):
                found.append(f"{table}.{column} (key {reference[0]!r}): tidemark {left!r}, {other} {right!r}")
    return found

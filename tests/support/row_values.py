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

"""Checks that tidemark's scorecard and alerts equal DuckDB's, value by value (within 1e-9).

Usage: python3 compare.py PROJECT_DIR   (tidemark's warehouse/ and DuckDB's out/ are in it)
Prints one JSON object: rows compared, values compared, mismatches (with the first few).
"""
import json
import sys

import duckdb

project = sys.argv[1]
tolerance = 1e-9
db = duckdb.connect()
db.execute("set threads = 2")
tidemark_scorecard = f"read_parquet('{project}/warehouse/main/learner_scorecard/*/data.parquet', hive_partitioning = true)"
tidemark_alerts = f"read_parquet('{project}/warehouse/main/learner_scorecard_alerts/*/data.parquet', hive_partitioning = true)"
duckdb_scorecard = f"read_parquet('{project}/out/scorecard.parquet')"
duckdb_alerts = f"read_parquet('{project}/out/alerts.parquet')"

numeric = [
    f"{measure}_{window}d"
    for measure in ["events", "active_days", "completions", "social_score", "voluntary_hours", "avg_score"]
    for window in [90, 30, 7]
] + ["cohort_size", "activity_vs_team_reference", "activity_vs_team", "hours_per_active_day", "completion_share"]
text = ["team_id", "role", "department"]

report = {"tolerance": tolerance, "mismatches": []}


def differences(left, right, keys, numeric, text, label):
    on = " and ".join(f"t.{k} = d.{k}" for k in keys)
    checks = [
        f"not (t.{c} is null and d.{c} is null) and (t.{c} is null or d.{c} is null or abs(cast(t.{c} as double) - cast(d.{c} as double)) > {tolerance} * greatest(1, abs(cast(d.{c} as double))))"
        for c in numeric
    ] + [f"t.{c} is distinct from d.{c}" for c in text]
    counts = db.execute(
        f"select count(*) filter (where t.{keys[0]} is null), count(*) filter (where d.{keys[0]} is null), count(*) "
        f"from (select * replace (cast(period_end as date) as period_end) from {left}) as t "
        f"full outer join (select * replace (cast(period_end as date) as period_end) from {right}) as d on {on}"
    ).fetchone()
    report[f"{label}_rows"] = counts[2]
    report[f"{label}_values"] = counts[2] * (len(numeric) + len(text))
    if counts[0] or counts[1]:
        report["mismatches"].append(f"{label}: {counts[0]} rows only in DuckDB, {counts[1]} only in tidemark")
    for column, check in zip(numeric + text, checks):
        rows = db.execute(
            f"select {', '.join('t.' + k for k in keys)}, t.{column}, d.{column} "
            f"from (select * replace (cast(period_end as date) as period_end) from {left}) as t "
            f"join (select * replace (cast(period_end as date) as period_end) from {right}) as d on {on} where {check} limit 3"
        ).fetchall()
        for row in rows:
            report["mismatches"].append(f"{label}.{column} at {row[:len(keys)]}: tidemark {row[-2]!r}, DuckDB {row[-1]!r}")


differences(tidemark_scorecard, duckdb_scorecard, ["learner_id", "period_end"], numeric, text, "scorecard")
differences(
    tidemark_alerts,
    duckdb_alerts,
    ["learner_id", "period_end", "rule"],
    ["value", "threshold", "consecutive_periods"],
    ["cohort", "severity", "status", "owner", "first_period_in_breach"],
    "alerts",
)
report["alerts_by_rule"] = dict(db.execute(f"select rule, count(*) from {tidemark_alerts} group by rule order by rule").fetchall())
print(json.dumps(report, default=str))

"""Compares the tables tidemark wrote with the ones dbt-duckdb built from the same project.

Usage: compare_with_dbt.py PROJECT_DIR SCHEMA.TABLE...

dbt-duckdb's tables are read from PROJECT_DIR/dbt.duckdb, tidemark's from the Parquet folders
under PROJECT_DIR/warehouse. Rows are compared in the order of all their columns, with dbt's
column order; floats within 1e-9. Prints what differs and exits 1, or prints "same".
"""
import os
import sys

import duckdb

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from row_values import differences  # noqa: E402

project, tables = sys.argv[1], sys.argv[2:]
dbt = duckdb.connect(os.path.join(project, "dbt.duckdb"), read_only=True)
ours = duckdb.connect()



problems = []
for table in tables:
    schema, name = table.split(".")
    expected = dbt.execute(f'select * from "{schema}"."{name}"')
    columns = [column[0] for column in expected.description]
    order = ", ".join(str(index + 1) for index in range(len(columns)))
    expected = dbt.execute(f'select * from "{schema}"."{name}" order by {order}').fetchall()
    files = os.path.join(project, "warehouse", schema, name, "**", "*.parquet")
    quoted = ", ".join(f'"{column}"' for column in columns)
    got = ours.execute(f"select {quoted} from read_parquet(?) order by {order}", [files]).fetchall()
    if len(got) != len(expected):
        problems.append(f"{table}: tidemark has {len(got)} rows, dbt-duckdb {len(expected)}")
        continue
    problems.extend(differences(table, columns, got, expected, "dbt-duckdb"))
if problems:
    print("\n".join(problems))
    sys.exit(1)
print("same")

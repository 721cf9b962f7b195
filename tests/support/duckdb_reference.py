"""Runs a project's models in DuckDB and compares them with the tables tidemark wrote.

Usage: duckdb_reference.py PROJECT_DIR WAREHOUSE_DIR MODEL...

Each model's SQL (its `{{ ref('x') }}` calls replaced by the table x) runs in DuckDB over the
project's seeds (read with the column types of tidemark.yml's `column_types`); the result is
compared, row by row in key order, with the Parquet table tidemark wrote, floats within 1e-9.
Prints what differs and exits 1, or prints "same" and exits 0.
"""
import glob
import os
import re
import sys

import duckdb

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from row_values import differences, normal  # noqa: E402
import yaml

project, warehouse, models = sys.argv[1], sys.argv[2], sys.argv[3:]
con = duckdb.connect()
config = yaml.safe_load(open(os.path.join(project, "tidemark.yml")))
seed_configs = (config.get("seeds") or {}).get(config["name"]) or {}
for path in sorted(glob.glob(os.path.join(project, "seeds", "*.csv"))):
    name = os.path.splitext(os.path.basename(path))[0]
    types = (seed_configs.get(name) or {}).get("+column_types") or {}
    con.execute(
        f"create table {name} as select * from read_csv(?, header=true, types=?)",
        [path, {column: kind.upper() for column, kind in types.items()}],
    )



problems = []
for model in models:
    sql = open(os.path.join(project, "models", model + ".sql")).read()
    sql = re.sub(r"\{\{\s*ref\('([a-z_]+)'\)\s*\}\}", r"\1", sql)
    expected = con.execute(f"select * from ({sql}) order by 1")
    columns = [column[0] for column in expected.description]
    expected = [[normal(value) for value in row] for row in expected.fetchall()]
    files = os.path.join(warehouse, "main", model, "**", "*.parquet")
    ours = con.execute(f"select {', '.join(columns)} from read_parquet(?) order by 1", [files]).fetchall()
    ours = [[normal(value) for value in row] for row in ours]
    if len(ours) != len(expected):
        problems.append(f"{model}: {len(ours)} rows, DuckDB gives {len(expected)}")
        continue
    problems.extend(differences(model, columns, ours, expected, "DuckDB"))
if problems:
    print("\n".join(problems))
    sys.exit(1)
print("same")

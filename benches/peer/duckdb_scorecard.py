"""Runs duckdb_scorecard.sql with DuckDB at 2 threads in the current folder (data/ in, out/ out).

The peer side of `cargo bench --bench peer`: what a user who writes the scorecard by hand in
DuckDB runs. Usage: python3 duckdb_scorecard.py path/to/duckdb_scorecard.sql
"""
import os
import sys

import duckdb

script = open(sys.argv[1]).read()
os.makedirs("out", exist_ok=True)
connection = duckdb.connect()
connection.execute("set threads = 2")
connection.execute("set preserve_insertion_order = false")
for statement in script.split(";"):
    if statement.strip() and not all(line.strip().startswith("--") or not line.strip() for line in statement.splitlines()):
        connection.execute(statement)

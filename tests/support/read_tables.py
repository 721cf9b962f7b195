"""An independent reader of a tidemark warehouse: pyarrow, from the documented paths.

usage: read_tables.py <warehouse root: folder or s3://bucket/prefix> [endpoint access_key secret_key]

Prints one JSON object: {"<schema>.<table>": {"rows": n, "columns": [...], "data": [[...], ...]}}
with the rows sorted (by their text with floats rounded to 4 decimals), so two warehouses can be
compared value by value with a tolerance for the last bits of floating sums. Partitioned tables are read as
Hive-partitioned folders, others from <schema>/<table>/data.parquet.
"""
import json
import sys

import pyarrow.dataset as ds
import pyarrow.fs as pafs


def canonical(value):
    if isinstance(value, float):
        return round(value, 4) + 0.0
    if isinstance(value, dict):
        return {k: canonical(v) for k, v in value.items()}
    if isinstance(value, list):
        return [canonical(v) for v in value]
    return value


def main():
    root = sys.argv[1]
    if root.startswith("s3://"):
        endpoint, key, secret = sys.argv[2:5]
        scheme, host = endpoint.split("://", 1)
        filesystem = pafs.S3FileSystem(
            access_key=key, secret_key=secret, endpoint_override=host, scheme=scheme, region="us-east-1"
        )
        base = root[len("s3://"):].rstrip("/")
    else:
        filesystem = pafs.LocalFileSystem()
        base = root.rstrip("/")
    result = {}
    for schema in filesystem.get_file_info(pafs.FileSelector(base)):
        if schema.type != pafs.FileType.Directory or schema.base_name.startswith("_"):
            continue
        for table in filesystem.get_file_info(pafs.FileSelector(schema.path)):
            if table.type != pafs.FileType.Directory:
                continue
            single = f"{table.path}/data.parquet"
            if filesystem.get_file_info(single).type == pafs.FileType.File:
                dataset = ds.dataset(single, filesystem=filesystem, format="parquet")
            else:
                dataset = ds.dataset(table.path, filesystem=filesystem, format="parquet", partitioning="hive")
            data = dataset.to_table()
            rows = [
                [row[name] for name in data.column_names] for row in data.to_pylist()
            ]
            rows.sort(key=lambda row: json.dumps(canonical(row), default=str))
            result[f"{schema.base_name}.{table.base_name}"] = {
                "rows": data.num_rows,
                "columns": data.column_names,
                "data": json.loads(json.dumps(rows, default=str)),
            }
    print(json.dumps(result, sort_keys=True))


if __name__ == "__main__":
    main()

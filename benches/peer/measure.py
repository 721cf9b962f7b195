"""Runs a command and prints its wall time, CPU time and peak resident memory as JSON.

Usage: python3 measure.py [--cwd DIR] -- command args...
The figures are the child's own (os.wait4), so the measuring process adds nothing to them.
"""
import json
import os
import subprocess
import sys
import time

args = sys.argv[1:]
cwd = None
if args[:1] == ["--cwd"]:
    cwd, args = args[1], args[2:]
if args[:1] == ["--"]:
    args = args[1:]
start = time.monotonic()
child = subprocess.Popen(args, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
stderr = child.stderr.read()
_, status, usage = os.wait4(child.pid, 0)
wall = time.monotonic() - start
code = os.waitstatus_to_exitcode(status)
print(json.dumps({
    "wall_s": wall,
    "cpu_s": usage.ru_utime + usage.ru_stime,
    "peak_rss_kib": usage.ru_maxrss,
    "exit_code": code,
    "stderr": stderr.decode(errors="replace")[-4000:],
}))

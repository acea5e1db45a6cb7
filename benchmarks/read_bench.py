"""Reading a registry-size episode table: 1,000,000 rows, 1,000 centres.

``sxb.read_data`` (read, tell the kind, validate, normalise) against a bare
``pandas.read_csv`` of the same file, each in its own process so peak memory is its
own. Targets (issue 8): under 10 s and under 1 GB.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

ROWS = 1_000_000
TIMED = """
import json, resource, time
SETUP
t0 = time.perf_counter()
CALL
print(json.dumps({"wall_s": time.perf_counter() - t0,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""
# (imports before the clock starts, so only reading is timed)
CALLS = {
    "scleromx_bayes.read_data": ("from scleromx_bayes import read_data", "read_data(PATH)"),
    "pandas.read_csv (no validation)": ("import pandas as pd", "pd.read_csv(PATH, dtype=str)"),
}


def _write(path: Path | str, seed: int) -> None:
    rng = np.random.default_rng(seed)
    pd.DataFrame(
        {
            "patient_id": [f"S{i:07d}" for i in range(ROWS)],
            "site": rng.choice([f"Site {i:04d}" for i in range(1000)], ROWS),
            "regimen": rng.choice(["A", "B", "C", "D"], ROWS),
            "severity": rng.choice(["nonsevere", "severe"], ROWS),
            "response": rng.choice(["CR", "PR", "NR", "NE"], ROWS),
        }
    ).to_csv(path, index=False)


def bench_read(seed: int) -> dict:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "episodes.csv"
        # written by a process of its own: Linux carries a parent's peak RSS into the
        # processes it starts (fork copies it, exec keeps it), so a parent that had
        # built the 1,000,000-row table would be every timed process's floor
        writer = f"from read_bench import _write; _write({str(path)!r}, {seed})"
        subprocess.run(
            [sys.executable, "-c", writer], check=True, cwd=Path(__file__).parent, text=True
        )
        rows = {}
        for name, (setup, call) in CALLS.items():
            code = TIMED.replace("SETUP", setup)
            code = code.replace("CALL", call.replace("PATH", repr(str(path))))
            done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
            if done.returncode:
                raise RuntimeError(done.stderr[-2000:])
            rows[name] = json.loads(done.stdout.strip().splitlines()[-1])
    ours, bare = rows["scleromx_bayes.read_data"], rows["pandas.read_csv (no validation)"]
    rows["ratio ours / bare read_csv (wall)"] = ours["wall_s"] / bare["wall_s"]
    return {"benchmark": "read", "rows": ROWS, "seed": seed, "results": rows}

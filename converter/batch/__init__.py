"""`nrconvert batch`: many conversions from one jobs.toml, locally or as Ray tasks.

The pieces, each in its own module:

- `jobs`: jobs.toml → validated `Job`s (errors name the file, line and key);
- `units`: `Unit`, the schedulable piece of work: a command line, the file it produces, a state
  folder (done.json, attempts, logs) and its CPU/GPU needs. A unit is a whole capture today; a
  block of a capture (`nrconvert train --block N`) is the same shape with another command line;
- `state`: input fingerprints, `done.json` (idempotency) and the per-unit attempt record;
- `execute`: one attempt of one unit as a subprocess, whatever runs it;
- `policy`: which exit codes are retried and the batch's own exit code;
- `local` / `ray_runner`: the two runners; `summary`: the table at the end; `command`: the CLI.

Nothing here imports torch or Ray at import time: Ray workers only need to start a subprocess.
"""

#!/usr/bin/env python3
"""Runs a command and records its wall time and peak memory: RssAnon (anonymous pages: what the
process allocated, not the checkpoint pages it maps, which the kernel can drop and reread) sampled
every 20 ms from /proc, and VmHWM (peak resident, mapped pages included) read at the end.

Usage: python3 scripts/lib/peak-memory.py RESULT.json -- COMMAND [ARGS...]
Writes {"command", "seconds", "peak_anon_bytes", "peak_rss_bytes", "status"} to RESULT.json; exits
with the command's status. Linux only. A sampler misses a peak shorter than 20 ms; the commands
measured here hold their buffers for seconds.
"""
import json
import subprocess
import sys
import time


def field(pid, name):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(name):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def main():
    out, sep, command = sys.argv[1], sys.argv[2], sys.argv[3:]
    assert sep == "--" and command, __doc__
    start = time.monotonic()
    proc = subprocess.Popen(command)
    anon = rss = 0
    while proc.poll() is None:
        anon = max(anon, field(proc.pid, "RssAnon:"))
        rss = max(rss, field(proc.pid, "VmHWM:"))
        time.sleep(0.02)
    seconds = time.monotonic() - start
    json.dump({"command": command, "seconds": round(seconds, 1), "peak_anon_bytes": anon,
               "peak_rss_bytes": rss, "status": proc.returncode}, open(out, "w"), indent=1)
    sys.exit(proc.returncode)


if __name__ == "__main__":
    main()

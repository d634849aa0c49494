#!/usr/bin/env python3
"""Writes the live benchmark's schedule for a seed (bench/live/run.py's own
make_schedule(), so the very rooms `make bench-live` replays) as the plain
text the simulator reads (sim -w live):

    rooms N
    ROOM_NAME START_S END_S NMEMBERS T_S FRONT T_S FRONT ...

    bench/sim/live_trace.py SEED [DURATION RATE LIFE ZIPF MAX_SIZE BURST]
"""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "live"))
import run  # noqa: E402


def main():
    a = sys.argv[1:]
    if not a:
        sys.exit(__doc__)
    seed = int(a[0])
    duration = float(a[1]) if len(a) > 1 else 70
    rate = float(a[2]) if len(a) > 2 else 12
    life = float(a[3]) if len(a) > 3 else 20
    zipf = float(a[4]) if len(a) > 4 else 1.5
    max_size = int(a[5]) if len(a) > 5 else 40
    burst = float(a[6]) if len(a) > 6 else 0.2
    s = run.make_schedule(seed, duration, rate, life, zipf, max_size, burst)
    out = ["duration %g" % s["duration_s"], "rooms %d" % len(s["rooms"])]
    for r in s["rooms"]:
        out.append("%s %.3f %.3f %d %s" % (
            r["name"], r["start_s"], r["end_s"], len(r["members"]),
            " ".join("%.3f %d" % (t, f) for t, f in r["members"])))
    sys.stdout.write("\n".join(out) + "\n")


if __name__ == "__main__":
    main()

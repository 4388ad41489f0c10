"""Start a command in a session (and process group) of its own, output to a file; print its pid, which is also
its process group id, so that ``kill -KILL -- -PID`` reaches the command and every process it started.

    python3 start_detached.py LOGFILE COMMAND [ARG...]
"""

from __future__ import annotations

import subprocess
import sys


def main() -> None:
    if len(sys.argv) < 3:
        sys.exit("usage: start_detached.py LOGFILE COMMAND [ARG...]")
    with open(sys.argv[1], "wb") as log:
        child = subprocess.Popen(
            sys.argv[2:], stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    print(child.pid)


if __name__ == "__main__":
    main()

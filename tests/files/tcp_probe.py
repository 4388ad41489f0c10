"""TCP connect probe run ON a test host (ansible.builtin.script with executable python3) by the lab's
tests/lab/check.yml and the baseline scenario's verify: argv[1] is a JSON list of [address, port]; prints a JSON
list of results in the same order - "open", "dropped" (a timeout: a firewall ate the SYN), "refused" or
"error: ...". Connections run in parallel, 2 s each at most."""

import json
import socket
import sys
from concurrent.futures import ThreadPoolExecutor


def probe(target):
    address, port = target
    try:
        socket.create_connection((address, port), timeout=2).close()
        return "open"
    except TimeoutError:
        return "dropped"
    except ConnectionRefusedError:
        return "refused"
    except OSError as exc:
        return f"error: {exc}"


with ThreadPoolExecutor(max_workers=16) as pool:
    print(json.dumps(list(pool.map(probe, json.loads(sys.argv[1])))))

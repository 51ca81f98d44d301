"""A slow link for tests: ``python slow_link.py BYTES_PER_SECOND COMMAND…`` runs COMMAND and
relays its stdin and stdout at most BYTES_PER_SECOND each way (stderr passes straight through),
like a worker command over a thin network connection."""

import os
import subprocess
import sys
import threading
import time


def relay(source: int, target, rate: float) -> None:
    start, sent = time.monotonic(), 0
    while block := os.read(source, 4096):
        sent += len(block)
        ahead = sent / rate - (time.monotonic() - start)
        if ahead > 0:
            time.sleep(ahead)
        else:  # late (a busy machine): no burst to catch up, the link stays this thin
            start, sent = time.monotonic(), 0
        try:
            target.write(block)
            target.flush()
        except OSError:
            return
    try:
        target.close()
    except OSError:
        pass


def main() -> int:
    rate = float(sys.argv[1])
    child = subprocess.Popen(sys.argv[2:], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    out = os.fdopen(sys.stdout.fileno(), "wb", buffering=0)
    threading.Thread(target=relay, args=(sys.stdin.fileno(), child.stdin, rate),
                     daemon=True).start()
    downstream = threading.Thread(target=relay, args=(child.stdout.fileno(), out, rate))
    downstream.start()
    code = child.wait()
    downstream.join(timeout=5)
    return code


if __name__ == "__main__":
    sys.exit(main())

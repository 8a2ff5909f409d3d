#!/usr/bin/env python3
"""Docker HEALTHCHECK: exit 0 when Triton answers ``GET /v2/health/ready`` with 200 (every model loaded).

Standard library only (the image needs no curl). Port: ``$MINTIME_HTTP_PORT`` (default 8000).
"""

import os
import sys
import urllib.error
import urllib.request


def main() -> int:
    url = f"http://127.0.0.1:{os.environ.get('MINTIME_HTTP_PORT', '8000')}/v2/health/ready"
    try:
        with urllib.request.urlopen(url, timeout=4) as resp:
            return 0 if resp.status == 200 else 1
    except (urllib.error.URLError, OSError) as exc:
        print(f"not ready: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())

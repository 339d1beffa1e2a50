"""Whether requests on one vtiger webservice session run in parallel: N queries sent one after
another on one session, all at once on that session, and all at once on a session each.

vtiger keeps a webservice session in a PHP file session, whose lock would serialise requests
on one sessionName; parallel CRM writers would then need a session each. Run against a real
vtiger (docs/testing.md, the real-CRM tier's variables):

    CALSYNC_REAL_VTIGER_URL=http://127.0.0.1:8190 CALSYNC_REAL_VTIGER_ADMIN_KEY=… \\
        python3 tests/bench/vtiger_sessions.py
"""

import concurrent.futures
import hashlib
import json
import os
import statistics
import sys
import time
import urllib.parse
import urllib.request

BASE = os.environ.get("CALSYNC_REAL_VTIGER_URL", "").rstrip("/") + "/webservice.php"
USER = os.environ.get("CALSYNC_REAL_VTIGER_ADMIN", "admin")
KEY = os.environ.get("CALSYNC_REAL_VTIGER_ADMIN_KEY", "")
N, ROUNDS = 8, 5


def call(params, post=False):
    data = urllib.parse.urlencode(params)
    req = urllib.request.Request(BASE, data=data.encode()) if post else \
        urllib.request.Request(BASE + "?" + data)
    with urllib.request.urlopen(req, timeout=60) as answer:
        return json.loads(answer.read())


def login():
    token = call({"operation": "getchallenge", "username": USER})["result"]["token"]
    digest = hashlib.md5((token + KEY).encode()).hexdigest()
    answer = call({"operation": "login", "username": USER, "accessKey": digest}, post=True)
    return answer["result"]["sessionName"]


def query(session):
    answer = call({"operation": "query", "sessionName": session,
                   "query": "SELECT subject FROM Events LIMIT 100;"})
    if not answer.get("success"):
        sys.exit(f"query failed: {answer}")


def main():
    if not KEY or BASE == "/webservice.php":
        sys.exit("set CALSYNC_REAL_VTIGER_URL and CALSYNC_REAL_VTIGER_ADMIN_KEY")
    one = login()
    each = [login() for _ in range(N)]
    query(one)  # the first session still works after the other logins
    cases = [
        ("one after another, one session", lambda: [query(one) for _ in range(N)]),
        ("all at once, one session", lambda: parallel([one] * N)),
        ("all at once, a session each", lambda: parallel(each)),
    ]
    for label, run in cases:
        walls = []
        for _ in range(ROUNDS):
            started = time.perf_counter()
            run()
            walls.append((time.perf_counter() - started) * 1000)
        shown = ", ".join(f"{w:.0f}" for w in walls)
        print(f"{label}: {N} queries, median {statistics.median(walls):.0f} ms ({shown})")


def parallel(sessions):
    with concurrent.futures.ThreadPoolExecutor(len(sessions)) as pool:
        list(pool.map(query, sessions))


if __name__ == "__main__":
    main()

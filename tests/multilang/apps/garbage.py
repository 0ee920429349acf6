"""A broken multilang child: answers initialize, then answers processRecords with a message
that is no multilang action."""

import json
import sys

for line in sys.stdin:
    message = json.loads(line)
    if message["action"] == "initialize":
        print(json.dumps({"action": "status", "responseFor": "initialize"}), flush=True)
    else:
        print("some debugging output", flush=True)  # skipped, as the daemon does
        print(json.dumps({"action": "explode"}), flush=True)

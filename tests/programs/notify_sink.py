"""A notification command target: reads the event JSON from stdin and appends it, one line, to
the file named by its first argument. Invalid JSON makes it exit 1 (the delivery then fails).

    python notify_sink.py OUT.jsonl
"""

import json
import sys

event = json.load(sys.stdin)
with open(sys.argv[1], "a", encoding="utf-8") as out:
    out.write(json.dumps(event) + "\n")

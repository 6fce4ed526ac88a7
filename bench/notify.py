"""What notifying costs an action, and how long a message takes to arrive.

    python bench/notify.py [--trials 5]

Each trial runs the same NaN -> kill story (tests/programs/train_nan.py under the real
Supervisor, policy `nan: kill`) three ways, interleaved so that the machine's load drifts over
all three alike:

- baseline: no notification;
- webhook: a JSON webhook to a real HTTP server on 127.0.0.1 (every event);
- bad webhooks: one server that never answers (timeout 2 s, 1 retry) and one that answers 500
  (2 retries), both sent the anomaly before the kill.

Kill latency is from the nan anomaly's event to the kill's action event (emitted once every
process is gone). Printed: p50 and max per way and the ratio of p50s to the baseline (1.00 is
"notifying adds nothing"), then the time from the anomaly (its event's clock) to the webhook
POST's arrival at the server. Nothing is asserted (tests/integration/test_notify.py checks the
behaviour).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from supervisor.runs import events as ev  # noqa: E402
from tests.integration.test_notify import Receiver, Story, nan_recipe  # noqa: E402


async def trial(folder: Path, notify: list[dict] | None) -> tuple[float, Story]:
    folder.mkdir(parents=True)
    story = Story(folder, notify=notify is not None)
    await story.run(nan_recipe(folder, {"nan": {"do": "kill"}}, notify))
    if story.notifier is not None:
        story.notifier.close(0.5)  # the bad targets go on failing in their threads
    return story.kill_latency(), story


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--trials", type=int, default=5)
    args = ap.parse_args()
    ok, hang, fail = Receiver("ok"), Receiver("hang"), Receiver("fail")
    ways: dict[str, list[dict] | None] = {
        "baseline (no notify)": None,
        "webhook": [{"webhook": ok.url}],
        "hanging + 500 webhooks": [
            {"webhook": hang.url, "timeout_secs": 2, "retries": 1, "backoff_secs": 0.05},
            {"webhook": fail.url, "retries": 2, "backoff_secs": 0.05},
        ],
    }
    latency: dict[str, list[float]] = {w: [] for w in ways}
    deliver: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.trials):
            for n, (way, notify) in enumerate(ways.items()):
                secs, story = asyncio.run(trial(Path(tmp) / f"{i}-{n}", notify))
                latency[way].append(secs)
                if way == "webhook":
                    found = next(e for e in story.of(ev.AnomalyFound) if e.anomaly.rule == "nan")
                    key = ("anomaly", found.run_id)
                    posts = zip(ok.posts, ok.json(), strict=True)
                    arrived = next(p["at"] for p, b in posts if (b["event"], b["run_id"]) == key)
                    deliver.append(arrived - found.ts)
                story.history.close()
    for r in (ok, hang, fail):
        r.stop()
    base = statistics.median(latency["baseline (no notify)"])
    print(f"kill latency, nan anomaly -> kill done ({args.trials} trials each)")
    print(f"  {'way':24} {'p50 ms':>8} {'max ms':>8} {'p50 / baseline':>15}")
    for way, xs in latency.items():
        p50 = statistics.median(xs)
        print(f"  {way:24} {p50 * 1000:8.1f} {max(xs) * 1000:8.1f} {p50 / base:15.2f}")
    print("time to deliver, anomaly -> webhook POST received")
    print(f"  p50 {statistics.median(deliver) * 1000:.1f} ms, max {max(deliver) * 1000:.1f} ms")


if __name__ == "__main__":
    main()

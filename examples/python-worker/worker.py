"""A nestjs-durable Python worker (the published `durable-worker[sqs]`) serving a cairn step group.

It serves `payments.charge-card` on the queue cairn created for that group, and answers on the
queue cairn's engine reads results from. Both URLs come from `cairn queues --json` (see README):

    CAIRN_TASK_QUEUE_URLS    JSON object, step group -> tasks queue URL (the `tasks` of that output)
    PEER_RESULTS_QUEUE_URL   where peers answer (`peerResults`): the results queue, or in FIFO
                             deployments the standard peer-results queue (peers send no
                             MessageGroupId)
    CAIRN_ENDPOINT_URL       the local stack (moto); unset in AWS
    PEER_GROUP               the group to serve (default payments.charge-card)

The handler logs (events ride back on the result) and fails terminally with details for the
card "0000", the two things cairn must keep.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading

import boto3
from durable_worker import FatalError, Worker
from durable_worker.sqs_runner import run_sqs_worker

GROUP = os.environ.get("PEER_GROUP", "payments.charge-card")

worker = Worker(auto_register=False)


@worker.step("payments.charge-card")
def charge_card(data, ctx):
    ctx.info("charging card", {"orderId": data.get("orderId")})
    if data.get("card") == "0000":
        raise FatalError("invalid card", "invalid_card", {"field": "card", "reason": "luhn"})
    return {"chargeId": f"ch_{data.get('orderId')}", "worker": "python"}


def main() -> None:
    tasks = json.loads(os.environ["CAIRN_TASK_QUEUE_URLS"])
    if GROUP not in tasks:
        sys.exit(f"no tasks queue for group {GROUP!r} in CAIRN_TASK_QUEUE_URLS")
    client = boto3.client(
        "sqs",
        region_name=os.environ.get("AWS_REGION", "us-east-1"),
        endpoint_url=os.environ.get("CAIRN_ENDPOINT_URL") or None,
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    print(f"python peer serving {GROUP} on {tasks[GROUP]}", flush=True)
    run_sqs_worker(
        worker,
        group=GROUP,
        client=client,
        tasks_queue_url=tasks[GROUP],
        results_queue_url=os.environ["PEER_RESULTS_QUEUE_URL"],
        # Short polls so the process stops promptly (tests, Ctrl-C).
        wait_time_seconds=1,
        stop=stop,
    )


if __name__ == "__main__":
    main()

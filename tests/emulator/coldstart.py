"""Measures a Lambda binary's cold start: process start to first response, under the
local Runtime API, against a moto server. Prints one line per run and the median.

usage: coldstart.py planner|refresher|completer BOOTSTRAP RUNS

Starts its own moto server on a free loopback port and stops it at the end.
"""

import json
import os
import socket
import statistics
import subprocess
import sys
import time
import urllib.request

import boto3

from runtime_api import LambdaProcess


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_moto(attempts=5):
    """Starts moto on a free port. A port can be taken between the pick and moto's bind;
    moto then exits at once, and the next attempt picks another port."""
    server = os.path.join(os.path.dirname(sys.executable), "moto_server")
    for _ in range(attempts):
        port = free_port()
        process = subprocess.Popen([server, "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        endpoint = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and process.poll() is None:
            try:
                urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=2)
                return process, endpoint
            except OSError:
                time.sleep(0.1)
        if process.poll() is None:
            process.kill()
            raise SystemExit("moto did not start within 60 s")
    raise SystemExit(f"moto exited at once on each of {attempts} free ports")


def main():
    function, bootstrap, runs = sys.argv[1], sys.argv[2], int(sys.argv[3])
    moto, endpoint = start_moto()
    try:
        measure(function, bootstrap, runs, endpoint)
    finally:
        moto.kill()
        moto.wait(timeout=10)


# One realistic event per function: each makes its usual AWS calls against moto.
EVENTS = {
    "refresher": lambda run: {"action": "await_approval", "rollout_id": f"coldstart-{run}", "wave": 0, "task_token": "token"},
    "planner": lambda run: {
        "rollout_id": f"coldstart-{run}",
        "ami": "ami-0123456789abcdef0",
        "targets": {"asgs": ["web-1"], "tags": {"group": "web"}},
        "canary": [],
        "strategy": "batches",
        "batch_size": 3,
        "max_waves": 1000,
    },
    # An instance refresh's end as EventBridge delivers it, on a stack with no rollout
    # running: the completer reads the stack lock and leaves the event alone.
    "completer": lambda run: {
        "version": "0",
        "id": f"coldstart-{run}",
        "detail-type": "EC2 Auto Scaling Instance Refresh Succeeded",
        "source": "aws.autoscaling",
        "account": "123456789012",
        "time": "2026-11-27T00:00:00Z",
        "region": "us-east-1",
        "resources": [],
        "detail": {"AutoScalingGroupName": "web-1", "InstanceRefreshId": f"refresh-{run}"},
    },
}


def check_answer(function, run, answer):
    """The binary did its job, not just answered: the fields its caller reads are there."""
    if function == "planner":
        ok = answer.get("rollout_id") == f"coldstart-{run}" and answer.get("missing") == 1 and answer.get("wave_count") == 0
    elif function == "completer":
        ok = answer.get("outcome") == "ignored" and "no rollout is running" in answer.get("reason", "")
    else:
        ok = answer.get("awaiting_wave") == 1
    if not ok:
        raise SystemExit(f"{function} answered {answer!r}")


def measure(function, bootstrap, runs, endpoint):
    table = "coldstart"
    dynamodb = boto3.client("dynamodb", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="test", aws_secret_access_key="test")
    dynamodb.create_table(
        TableName=table,
        KeySchema=[{"AttributeName": "rollout_id", "KeyType": "HASH"}, {"AttributeName": "asg", "KeyType": "RANGE"}],
        AttributeDefinitions=[{"AttributeName": "rollout_id", "AttributeType": "S"}, {"AttributeName": "asg", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    env = {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "ASG_REFRESH_TABLE": table,
    }
    cold, warm = [], []
    for run in range(runs):
        event = EVENTS[function](run)
        if function == "planner":
            # Each run is a new rollout: release the previous run's lock.
            dynamodb.delete_item(TableName=table, Key={"rollout_id": {"S": "#lock"}, "asg": {"S": "#lock"}})
        process = LambdaProcess(bootstrap, env, function)
        try:
            payload, errored = process.invoke(event, timeout=30)
            first = time.monotonic() - process.started_at
            if errored:
                raise SystemExit(f"cold start run {run}: error {payload!r}")
            check_answer(function, run, json.loads(payload))
            begin = time.monotonic()
            payload, errored = process.invoke(event, timeout=30)
            second = time.monotonic() - begin
            if errored:
                raise SystemExit(f"warm run {run}: error {payload!r}")
        finally:
            process.stop()
        cold.append(first * 1000)
        warm.append(second * 1000)
        print(f"run {run + 1}: cold {first * 1000:.1f} ms, warm {second * 1000:.1f} ms")
    print(json.dumps({"function": function, "cold_ms_median": round(statistics.median(cold), 1), "warm_ms_median": round(statistics.median(warm), 1), "runs": runs}))


if __name__ == "__main__":
    main()

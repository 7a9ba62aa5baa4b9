#!/usr/bin/env python3
"""A client of the durably HTTP API in Python's standard library only (no Rust, no packages).

Run by tests/python_client.rs against a server it starts (an agent workflow on the mock
model); it can be pointed at any `durably serve`-style server:

    DURABLY_URL=http://127.0.0.1:8080 DURABLY_TOKEN=... python3 http_client.py

It checks the OpenAPI document, that a request without the token is refused, starts an agent
run (twice: the second start returns the same run), follows the run's events as Server-Sent
Events, approves the tool call when its `approval` event arrives, reads the rest of the stream
to the `completed` event with the output, reconnects with `Last-Event-ID` and gets exactly the
events after it, reads the recorded steps, then sends a session turn twice with one turn id and
reads the conversation back. Exits non-zero on the first thing that is wrong.
"""

import json
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

BASE = os.environ["DURABLY_URL"].rstrip("/")
TOKEN = os.environ["DURABLY_TOKEN"]
RUN_ID = os.environ.get("DURABLY_RUN_ID", "py-payout-1")


def call(method, path, body=None, token=TOKEN):
    """One request; returns (status, parsed JSON body)."""
    data = json.dumps({} if body is None else body).encode() if method != "GET" else None
    req = urllib.request.Request(BASE + path, data=data, method=method)
    if token:
        req.add_header("Authorization", "Bearer " + token)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=60) as reply:
            return reply.status, json.loads(reply.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def check(cond, what, detail=None):
    if not cond:
        sys.exit("FAILED: %s%s" % (what, "" if detail is None else ": %r" % (detail,)))
    print("ok:", what)


def seg(text):
    """A path segment: run ids and signal names may hold `:` and `#`."""
    return urllib.parse.quote(text, safe="")


def events(run_id, last_event_id=None):
    """The run's Server-Sent Events, as (id, kind, data) tuples while the server sends them;
    `id` is None for an event without one (a `gap`). Ends when the server ends the stream."""
    req = urllib.request.Request(BASE + "/api/runs/%s/events" % seg(run_id))
    req.add_header("Authorization", "Bearer " + TOKEN)
    req.add_header("Accept", "text/event-stream")
    if last_event_id is not None:
        req.add_header("Last-Event-ID", str(last_event_id))
    with urllib.request.urlopen(req, timeout=60) as reply:
        check(reply.headers.get("Content-Type", "").startswith("text/event-stream"), "the events are an SSE stream")
        event_id, kind, data = None, None, []
        for raw in reply:
            line = raw.decode("utf-8").rstrip("\r\n")
            if not line:
                if kind is not None or event_id is not None:
                    yield event_id, kind, json.loads("\n".join(data)) if data else None
                event_id, kind, data = None, None, []
                continue
            if line.startswith(":"):
                continue  # a keep-alive comment
            field, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if field == "id":
                event_id = int(value)
            elif field == "event":
                kind = value
            elif field == "data":
                data.append(value)


def wait_for(run_id, statuses, seconds=60):
    deadline = time.monotonic() + seconds
    while True:
        status, run = call("GET", "/api/runs/" + seg(run_id))
        if status == 200 and run["status"] in statuses:
            return run
        if time.monotonic() > deadline:
            sys.exit("FAILED: run %s never reached %s: %r" % (run_id, statuses, run))
        time.sleep(0.05)


def main():
    status, doc = call("GET", "/openapi.json")
    check(status == 200 and "/api/runs" in doc["paths"], "the OpenAPI document lists /api/runs")

    status, body = call("GET", "/api/runs", token=None)
    check(status == 401 and "error" in body, "a request without the token is refused", status)

    start = {"workflow": "payout", "run_id": RUN_ID, "input": {"prompt": "Pay 250 EUR to DE89 3704 0044 0532 0130 00."}}
    status, run = call("POST", "/api/runs", start)
    check(status == 202 and run["run_id"] == RUN_ID, "the agent run starts", (status, run))
    status, again = call("POST", "/api/runs", start)
    check(status == 200 and again["run_id"] == RUN_ID, "starting it again returns the same run", (status, again))

    # Follow the run live: approve the tool call when the stream says it needs approval.
    seen, signal = [], None
    for event_id, kind, data in events(RUN_ID):
        seen.append((event_id, kind, data))
        if kind == "approval":
            signal = data["signal"]
            check(signal.startswith("approve:") and data["tool"] == "transfer_funds", "the stream asks for the approval", data)
            status, delivery = call("POST", "/api/runs/%s/approve" % seg(RUN_ID), {"signal": signal})
            check(status == 200 and delivery["delivered"] and delivery["signal"] == signal, "the approval is delivered", delivery)
    kinds = [kind for _, kind, _ in seen]
    check([i for i, _, _ in seen] == list(range(len(seen))), "the stream's ids are the offsets 0, 1, 2...", seen)
    check(kinds[0] == "started" and kinds[-1] == "completed", "the stream runs from `started` to `completed`", kinds)
    order = [kinds.index(k) for k in ("tool_call", "approval", "signal", "tool_result", "completed")]
    check(order == sorted(order), "tool call, approval, signal, tool result, completion, in that order", kinds)
    check("250 EUR" in seen[-1][2]["output"], "the `completed` event carries the output", seen[-1])

    # Reconnecting with Last-Event-ID gives exactly the events after it.
    middle = seen[len(seen) // 2][0]
    resumed = list(events(RUN_ID, last_event_id=middle))
    check(resumed == seen[middle + 1:], "Last-Event-ID resumes after that event", (middle, resumed))

    run = wait_for(RUN_ID, ("completed", "failed", "cancelled"))
    check(run["status"] == "completed", "the run completes", run)
    check("250 EUR" in run["output"], "the output is the agent's answer", run["output"])
    names = [s["step_id"] for s in run["steps"]]
    check(any("transfer_funds" in n for n in names), "the tool call is a recorded step", names)
    approvals = [s["payload"] for s in run["signals"] if s["name"] == signal]
    check(approvals == [{"approved": True}], "the approval is recorded", run["signals"])

    turn = {"message": "Hello, what did you pay?", "turn_id": "py-turn-1"}
    status, reply = call("POST", "/api/sessions/payouts/py-chat/turns", turn)
    check(status == 200 and "250 EUR" in reply["output"], "a session turn answers", (status, reply))
    status, again = call("POST", "/api/sessions/payouts/py-chat/turns", turn)
    check(status == 200 and again["output"] == reply["output"], "the same turn id returns the same answer", again)
    status, session = call("GET", "/api/sessions/payouts/py-chat")
    roles = [m["role"] for m in session.get("messages", [])]
    check(status == 200 and roles == ["user", "assistant"], "the session reads back", session)

    status, missing = call("GET", "/api/runs/" + seg("no-such-run"))
    check(status == 404 and "no-such-run" in missing["error"], "an unknown run is a 404 naming it", missing)
    print("python client: every check passed")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Writes the bad-input corpus: one file per kind, under results/ and tasks/.

Each file: {"about", "body" (raw text, placeholders below), "expect", "reason"}.
  expect: "dlq" (batch item failure, so SQS dead-letters it; `reason` is in the WARN log),
          "ignored" (deleted, the run unchanged; `reason`, if set, is in the INFO log),
          "applied" (the run's history grows), "failed_result" (tasks: the worker answers
          with a failed result whose error contains `reason`), "completed_result" (tasks).
Placeholders: $RUN a fresh run per entry (sleeping 3600 s at seq 1 with timer "1", remote
step dispatched at seq 2, attempt 1, waiting for signal "go" at seq 3), $FIN a finished run,
$NORUN an id never started, $VICTIM_BLOB/$VICTIM_BYTES/$VICTIM_SHA a stored claim-check blob
holding a cancelRun for $RUN.

Re-run it after editing (it rewrites every file); the files are what the test reads.
"""
import json, os, shutil

HERE = os.path.dirname(os.path.abspath(__file__))
R = []  # results queue
T = []  # tasks queue


def res(name, about, body, expect, reason=None):
    R.append((name, about, body, expect, reason))


def task(name, about, body, expect, reason=None):
    T.append((name, about, body, expect, reason))


def j(v):
    return json.dumps(v, separators=(",", ":"), ensure_ascii=False)


def result(**over):
    base = {"runId": "$RUN", "seq": 2, "stepId": "$RUN:2", "status": "completed", "output": {"ok": True}, "attempt": 1}
    base.update(over)
    return {k: v for k, v in base.items() if v is not DROP}


DROP = object()


def deep(n, leaf=1):
    return "[" * n + j(leaf) + "]" * n


# --- results queue: not a message at all -------------------------------------------------
res("not-json", "plain text", "{ this is not json", "dlq", "not valid JSON")
res("whitespace-only", "a body of blanks", "   ", "dlq", "not valid JSON")
res("json-array", "an array body", "[]", "dlq", "must be a JSON object")
res("json-string", "a string body", '"hello"', "dlq", "must be a JSON object")
res("json-number", "a number body", "42", "dlq", "must be a JSON object")
res("json-null", "null body", "null", "dlq", "must be a JSON object")
res("trailing-garbage", "valid JSON then more", j({"control": "cancelRun", "runId": "$RUN"}) + " x", "dlq", "trailing characters")
res("truncated", "cut in the middle", '{"runId":"$RUN","seq":2', "dlq", "EOF")
res("bom-prefixed", "UTF-8 byte order mark before the object", "\ufeff" + j(result()), "dlq", "not valid JSON")
res("lone-surrogate", "an unpaired UTF-16 surrogate escape in a string", '{"runId":"$RUN","seq":2,"stepId":"$RUN:2","status":"completed","output":"\\ud800"}', "dlq", "hex escape")
res("number-overflow", "a number beyond f64", '{"runId":"$RUN","seq":2,"stepId":"$RUN:2","status":"completed","output":1e400}', "dlq", "out of range")
res("empty-object", "{}", "{}", "dlq", "missing field `runId`")

# --- duplicate keys (defect 3) -------------------------------------------------------------
res("dup-run-id", "runId twice: a peer may read the first, serde the last", '{"runId":"$NORUN","seq":2,"stepId":"$RUN:2","status":"completed","runId":"$RUN"}', "dlq", "duplicate key `runId`")
res("dup-seq", "seq twice", '{"runId":"$RUN","seq":9,"stepId":"$RUN:2","status":"completed","seq":2}', "dlq", "duplicate key `seq`")
res("dup-status", "status twice", '{"runId":"$RUN","seq":2,"stepId":"$RUN:2","status":"failed","status":"completed"}', "dlq", "duplicate key `status`")
res("dup-control", "control twice", '{"control":"signal","runId":"$RUN","name":"go","control":"cancelRun"}', "dlq", "duplicate key `control`")
res("dup-nested-output", "a duplicate key deep in the output", '{"runId":"$RUN","seq":2,"stepId":"$RUN:2","status":"completed","output":{"a":{"k":1,"k":2}}}', "dlq", "duplicate key `k`")
res("dup-escaped-key", "the same key spelled with an escape", '{"runId":"$RUN","seq":2,"stepId":"$RUN:2","status":"completed","run\\u0049d":"$NORUN"}', "dlq", "duplicate key `runId`")
res("dup-signal-payload", "duplicate key in a signal payload", '{"control":"signal","runId":"$RUN","name":"go","payload":{"x":1,"x":2}}', "dlq", "duplicate key `x`")

# --- stepId must be runId:seq (defect 3) ---------------------------------------------------
res("step-id-other-run", "a result naming another run's step", j(result(stepId="someone-else:7")), "dlq", "does not match runId and seq")
res("step-id-other-seq", "stepId for another seq of the same run", j(result(stepId="$RUN:7")), "dlq", "does not match runId and seq")
res("step-id-leading-zero", "seq written with a leading zero", j(result(stepId="$RUN:02")), "dlq", "does not match runId and seq")
res("step-id-missing", "no stepId", j(result(stepId=DROP)), "dlq", "missing field `stepId`")
res("step-id-number", "stepId as a number", j(result(stepId=2)), "dlq", "invalid type")
res("step-id-no-seq", "stepId without :seq", j(result(stepId="$RUN")), "dlq", "not of the form")
res("step-id-huge-seq", "seq beyond u64 in the stepId", j(result(stepId="$RUN:99999999999999999999999")), "dlq", "out of range")

# --- run ids (defect 2) ---------------------------------------------------------------------
def start(run_id, **over):
    m = {"control": "startRun", "runId": run_id, "workflow": "corpus-echo", "input": 1}
    m.update(over)
    return j(m)

res("start-empty-run-id", "startRun with an empty id: its tasks would be dead-lettered by workers", start(""), "dlq", "it is empty")
res("start-newline-run-id", "a newline in the run id", start("a\nb"), "dlq", "control characters")
res("start-reserved-child-id", "the reserved ~c1 suffix alone", start("~c1"), "dlq", "it is empty")
res("start-tilde-garbage", "~ not followed by a derived suffix", start("order~x"), "dlq", "reserved for ids cairn derives")
res("start-trailing-tilde", "a run id ending in ~", start("order~"), "dlq", "reserved for ids cairn derives")
res("start-space-run-id", "whitespace in the run id", start("my order"), "dlq", "whitespace")
res("start-nul-run-id", "a NUL in the run id", start("a\u0000b"), "dlq", "control characters")
res("start-line-separator-run-id", "U+2028 in the run id", start("a\u2028b"), "dlq", "whitespace")
res("start-long-run-id", "a 201-byte base", start("x" * 201), "dlq", "longer than 200 bytes")
res("start-run-id-number", "runId as a number", start(5), "dlq", "invalid type")
res("start-run-id-null", "runId null", start(None), "dlq", "invalid type")
res("result-tab-run-id", "a result for a run id with a tab", j(result(runId="a\tb", stepId="a\tb:2")), "dlq", "whitespace")
res("result-empty-run-id", "a result for the empty run id", j(result(runId="", stepId=":2")), "dlq", "it is empty")
res("signal-bad-run-id", "a signal for an id no run can have", j({"control": "signal", "runId": "a b", "name": "go"}), "dlq", "whitespace")
res("cancel-bad-run-id", "cancel for ~c1", j({"control": "cancelRun", "runId": "~c1"}), "dlq", "it is empty")
res("parent-bad-run-id", "a child start whose parent id is invalid", start("$NORUN", parent={"runId": "", "seq": 1}), "dlq", "it is empty")

# --- shapes and types -----------------------------------------------------------------------
res("seq-negative", "seq -1", j(result(seq=-1)), "dlq", "invalid value")
res("seq-string", "seq as a string", j(result(seq="2")), "dlq", "invalid type")
res("seq-float", "seq 2.5", j(result(seq=2.5)), "dlq", "invalid type")
res("seq-integral-float", "seq 2.0", '{"runId":"$RUN","seq":2.0,"stepId":"$RUN:2","status":"completed"}', "dlq", "invalid type")
res("seq-too-big", "seq beyond u64", '{"runId":"$RUN","seq":18446744073709551616,"stepId":"$RUN:2","status":"completed"}', "dlq", "invalid type")
res("status-unknown", "status done", j(result(status="done")), "dlq", "unknown variant `done`")
res("status-missing", "no status", j(result(status=DROP)), "dlq", "missing field `status`")
res("status-number", "status 1", j(result(status=1)), "dlq", "invalid type")
res("status-enum-object", "status as a one-key object (serde's enum form)", j(result(status={"failed": None})), "dlq", "invalid type")
res("status-wrong-case", "status Completed", j(result(status="Completed")), "dlq", "unknown variant")
res("error-string", "error as a string", j(result(status="failed", output=DROP, error="boom")), "dlq", "invalid type")
res("error-array", "error as an array (serde's tuple form)", j(result(status="failed", output=DROP, error=["boom"])), "dlq", "invalid type")
res("error-without-message", "error object without message", j(result(status="failed", output=DROP, error={"code": "x"})), "dlq", "missing field `message`")
res("error-retryable-string", "retryable as a string", j(result(status="failed", output=DROP, error={"message": "m", "retryable": "yes"})), "dlq", "invalid type")
res("attempt-negative", "attempt -1", j(result(attempt=-1)), "dlq", "invalid value")
res("attempt-too-big", "attempt beyond u32", j(result(attempt=4294967296)), "dlq", "invalid value")
res("started-at-string", "startedAt as a string", j(result(startedAt="now")), "dlq", "invalid type")
res("events-object", "events as an object", j(result(events={"type": "log"})), "dlq", "invalid type")
res("events-item-string", "an event that is a string", j(result(events=["log"])), "dlq", "invalid type")

# --- control messages -----------------------------------------------------------------------
res("control-unknown", "control pause", j({"control": "pause", "runId": "$RUN"}), "dlq", "unknown variant `pause`")
res("control-number", "control 7", j({"control": 7, "runId": "$RUN"}), "dlq", "expected a string")
res("control-null", "control null", j({"control": None, "runId": "$RUN"}), "dlq", "expected a string")
res("control-empty", "control empty string", j({"control": "", "runId": "$RUN"}), "dlq", "unknown variant")
res("start-missing-workflow", "startRun without workflow", j({"control": "startRun", "runId": "$NORUN"}), "dlq", "missing field `workflow`")
res("start-workflow-number", "workflow 3", start("$NORUN", workflow=3), "dlq", "invalid type")
res("start-parent-array", "parent as an array", start("$NORUN", parent=["p", 1]), "dlq", "invalid type")
res("start-parent-seq-negative", "parent.seq -1", start("$NORUN", parent={"runId": "p", "seq": -1}), "dlq", "invalid value")
res("start-unknown-workflow", "a workflow this engine does not host", start("$NORUN", workflow="no-such-workflow"), "dlq", "no-such-workflow")
res("signal-missing-name", "signal without name", j({"control": "signal", "runId": "$RUN"}), "dlq", "missing field `name`")
res("signal-name-number", "signal name 1", j({"control": "signal", "runId": "$RUN", "name": 1}), "dlq", "invalid type")
res("signal-id-number", "signalId 1", j({"control": "signal", "runId": "$RUN", "name": "go", "signalId": 1}), "dlq", "invalid type")
res("timer-missing-id", "timerFired without timerId", j({"control": "timerFired", "runId": "$RUN", "fireAtMs": 0}), "dlq", "missing field `timerId`")
res("timer-fire-at-string", "fireAtMs soon", j({"control": "timerFired", "runId": "$RUN", "timerId": "1", "fireAtMs": "soon"}), "dlq", "invalid type")
res("timer-fire-at-negative", "fireAtMs -1", j({"control": "timerFired", "runId": "$RUN", "timerId": "1", "fireAtMs": -1}), "dlq", "invalid value")
res("cancel-missing-run-id", "cancelRun without runId", j({"control": "cancelRun"}), "dlq", "missing field `runId`")
res("cancel-reason-number", "reason 5", j({"control": "cancelRun", "runId": "$RUN", "reason": 5}), "dlq", "invalid type")
res("event-urn-object", "IWorkflowEvent urn as an object", j({"topic": "go", "urn": {"id": "$RUN"}}), "dlq", "expected a string or a number")
res("event-urn-empty", "IWorkflowEvent urn empty", j({"topic": "go", "urn": ""}), "dlq", "it is empty")
res("event-urn-tilde", "IWorkflowEvent urn with a forged ~ suffix", j({"topic": "go", "urn": "a~x"}), "dlq", "reserved for ids cairn derives")
res("event-topic-number", "IWorkflowEvent topic 1", j({"topic": 1, "urn": "$RUN"}), "dlq", "invalid type")

# --- depth (defect 1) -----------------------------------------------------------------------
res("output-126-deep", "a 126-deep output used to commit and brick the run", '{"runId":"$RUN","seq":2,"stepId":"$RUN:2","status":"completed","output":' + deep(126) + "}", "dlq", "deeper than 64 levels")
res("output-65-deep", "just past the limit", '{"runId":"$RUN","seq":2,"stepId":"$RUN:2","status":"completed","output":' + deep(64) + "}", "dlq", "deeper than 64 levels")
res("start-input-126-deep", "a 126-deep start input", start("$NORUN").replace('"input":1', '"input":' + deep(126)), "dlq", "deeper than 64 levels")
res("signal-payload-deep", "a deep signal payload", '{"control":"signal","runId":"$RUN","name":"go","payload":' + deep(100) + "}", "dlq", "deeper than 64 levels")
res("error-deep", "a deep error object (objects, not arrays)", '{"runId":"$RUN","seq":2,"stepId":"$RUN:2","status":"failed","error":{"message":"m","details":' + '{"a":' * 80 + "1" + "}" * 80 + "}}", "dlq", "deeper than 64 levels")
res("events-deep", "deep step events", '{"runId":"$RUN","seq":2,"stepId":"$RUN:2","status":"completed","events":[{"type":"log","data":' + deep(90) + "}]}", "dlq", "deeper than 64 levels")
res("nesting-bomb", "100,000 open brackets", "[" * 100000, "dlq", "deeper than 64 levels")

# --- claim checks (defect 9) ----------------------------------------------------------------
res("claim-check-smuggled-in-result", "a claimCheck field beside a result's fields", j(dict(result(), claimCheck={"blobId": "x", "bytes": 0})), "dlq", "no other field")
res("claim-check-smuggled-in-control", "a claimCheck field in a control message", j({"control": "signal", "runId": "$RUN", "name": "go", "claimCheck": {"blobId": "$VICTIM_BLOB", "bytes": "$VICTIM_BYTES"}}), "dlq", "no other field")
res("claim-check-old-shape", "a reference without the content hash", '{"claimCheck":{"blobId":"$VICTIM_BLOB","bytes":$VICTIM_BYTES}}', "dlq", "missing field `sha256`")
res("claim-check-missing-blob", "a reference to a blob that does not exist", j({"claimCheck": {"blobId": "no-such-blob", "bytes": 3, "sha256": "00"}}), "dlq", "not found")
res("claim-check-wrong-sha", "the victim's blob with another hash", '{"claimCheck":{"blobId":"$VICTIM_BLOB","bytes":$VICTIM_BYTES,"sha256":"' + "0" * 64 + '","runId":"$RUN"}}', "dlq", "does not match the reference's sha256")
res("claim-check-other-run", "the victim's blob named for another run", '{"claimCheck":{"blobId":"$VICTIM_BLOB","bytes":$VICTIM_BYTES,"sha256":"$VICTIM_SHA","runId":"$NORUN"}}', "dlq", "reference names run")
res("claim-check-wrong-bytes", "the victim's blob with another size", '{"claimCheck":{"blobId":"$VICTIM_BLOB","bytes":1,"sha256":"$VICTIM_SHA","runId":"$RUN"}}', "dlq", "the reference says 1")
res("claim-check-extra-field", "an unknown field inside the reference", '{"claimCheck":{"blobId":"$VICTIM_BLOB","bytes":$VICTIM_BYTES,"sha256":"$VICTIM_SHA","runId":"$RUN","x":1}}', "dlq", "unknown field `x`")
res("claim-check-not-object", "claimCheck 5", j({"claimCheck": 5}), "dlq", "malformed claim-check reference")
res("claim-check-null", "claimCheck null", j({"claimCheck": None}), "dlq", "malformed claim-check reference")

# --- processing: no such run ----------------------------------------------------------------
res("result-unknown-run", "a result for a run that does not exist", j(result(runId="$NORUN", stepId="$NORUN:2")), "dlq", "does not exist")
res("signal-unknown-run", "a signal for a run that does not exist", j({"control": "signal", "runId": "$NORUN", "name": "go"}), "dlq", "does not exist")
res("cancel-unknown-run", "cancel for a run that does not exist", j({"control": "cancelRun", "runId": "$NORUN"}), "dlq", "does not exist")

# --- ignored, with a logged reason (defect 10) ------------------------------------------------
res("duplicate-start", "startRun again for a running run", start("$RUN", workflow="corpus-target"), "ignored", "duplicate_start")
res("duplicate-start-other-workflow", "startRun again naming another workflow", start("$RUN"), "ignored", "duplicate_start")
res("unknown-seq", "a result for a seq the run never issued", j(result(seq=99, stepId="$RUN:99")), "ignored", "unknown_seq")
res("result-for-a-timer-seq", "a result for the seq of a sleep", j(result(seq=1, stepId="$RUN:1")), "ignored", "unknown_seq")
res("result-for-a-signal-seq", "a result for the seq of a signal wait", j(result(seq=3, stepId="$RUN:3")), "ignored", "unknown_seq")
res("attempt-zero", "attempt 0, which is never dispatched", j(result(attempt=0)), "ignored", "future_attempt")
res("future-attempt", "attempt 5 while 1 is in flight", j(result(attempt=5)), "ignored", "future_attempt")
res("result-for-finished-run", "a result for a completed run", j(result(runId="$FIN", seq=1, stepId="$FIN:1")), "ignored", "run_finished")
res("signal-for-finished-run", "a signal for a completed run", j({"control": "signal", "runId": "$FIN", "name": "go"}), "ignored", "run_finished")
res("cancel-for-finished-run", "cancel for a completed run", j({"control": "cancelRun", "runId": "$FIN"}), "ignored", "run_finished")
res("start-for-finished-run", "startRun for a completed run", start("$FIN"), "ignored", "run_finished")
res("timer-forged-due", "timer 1 (3,600 s) claimed due at 0: the history's time wins, one more hop", j({"control": "timerFired", "runId": "$RUN", "timerId": "1", "fireAtMs": 0}), "ignored", None)
res("timer-unknown-id-far-future", "an unknown timer with a far-future time: dropped, not re-hopped forever", j({"control": "timerFired", "runId": "$RUN", "timerId": "9", "fireAtMs": 99999999999999}), "ignored", "unknown_timer")
res("timer-unparsable-id", "a timer id no timer can have", j({"control": "timerFired", "runId": "$RUN", "timerId": "x:y:z", "fireAtMs": 0}), "ignored", "unknown_timer")
res("timer-unknown-run", "a timer for a run that does not exist", j({"control": "timerFired", "runId": "$NORUN", "timerId": "1", "fireAtMs": 0}), "ignored", "unknown_timer")
res("timer-retry-id-not-started", "a retry timer the run never started", j({"control": "timerFired", "runId": "$RUN", "timerId": "2:retry:1", "fireAtMs": 0}), "ignored", "unknown_timer")

# --- applied: odd but valid -------------------------------------------------------------------
res("good-result", "the expected result", j(result()), "applied")
res("result-without-attempt", "nestjs-durable workers never send attempt", j(result(attempt=DROP)), "applied")
res("result-extra-fields", "unknown fields are ignored", j(result(extra={"a": 1}, workerId="w-7")), "applied")
res("result-nulls", "optional fields null", j(result(output=None, error=None, events=None, startedAt=None, attempt=None)), "applied")
res("result-failed-no-error", "failed without an error object", j(result(status="failed", output=DROP)), "applied")
res("result-failed-terminal", "a terminal failure", j(result(status="failed", output=DROP, error={"message": "declined", "code": "card_declined", "retryable": False})), "applied")
res("output-64-levels-body", "an output exactly at the limit (64 levels with the body)", '{"runId":"$RUN","seq":2,"stepId":"$RUN:2","status":"completed","output":' + deep(63) + "}", "applied")
res("unicode-output", "non-ASCII and escapes in the output", j(result(output={"name": "Zoë \u2603 \U0001F600", "esc": "a\\\"b\n"})), "applied")
res("signal-go", "the awaited signal", j({"control": "signal", "runId": "$RUN", "name": "go", "payload": {"ok": True}}), "applied")
res("signal-unawaited-name", "a signal nobody waits for is kept", j({"control": "signal", "runId": "$RUN", "name": "other"}), "applied")
res("workflow-event-signal", "the seed's IWorkflowEvent", j({"topic": "go", "urn": "$RUN", "payload": 1, "attempt": 0}), "applied")
res("cancel", "cancelRun", j({"control": "cancelRun", "runId": "$RUN", "reason": "corpus"}), "applied")
res("cancel-with-unknown-fields", "cancelRun with extra fields", j({"control": "cancelRun", "runId": "$RUN", "by": "ops"}), "applied")

# --- tasks queue ------------------------------------------------------------------------------
def t(**over):
    base = {"runId": "$TRUN", "seq": 1, "name": "corpus.echo", "stepId": "$TRUN:1", "group": "corpus.echo", "input": {"n": 1}, "attempt": 1}
    base.update(over)
    return {k: v for k, v in base.items() if v is not DROP}

task("task-not-json", "plain text", "not a task", "dlq", "not valid JSON")
task("task-array", "an array", "[1,2]", "dlq", "must be a JSON object")
task("task-empty-object", "{}", "{}", "dlq", "missing field `runId`")
task("task-step-id-missing", "no stepId", j(t(stepId=DROP)), "dlq", "missing field `stepId`")
task("task-step-id-other-run", "stepId of another run: the idempotency key of someone else", j(t(stepId="victim:1")), "dlq", "does not match runId and seq")
task("task-step-id-other-seq", "stepId of another seq", j(t(stepId="$TRUN:2")), "dlq", "does not match runId and seq")
task("task-run-id-empty", "empty runId", j(t(runId="", stepId=":1")), "dlq", "it is empty")
task("task-run-id-newline", "newline in runId", j(t(runId="r\n1", stepId="r\n1:1")), "dlq", "control characters")
task("task-dup-run-id", "runId twice", '{"runId":"victim","seq":1,"name":"corpus.echo","stepId":"$TRUN:1","group":"corpus.echo","attempt":1,"runId":"$TRUN"}', "dlq", "duplicate key `runId`")
task("task-dup-input", "input twice", '{"runId":"$TRUN","seq":1,"name":"corpus.echo","stepId":"$TRUN:1","group":"corpus.echo","attempt":1,"input":1,"input":2}', "dlq", "duplicate key `input`")
task("task-deep-input", "input nested 126 levels", '{"runId":"$TRUN","seq":1,"name":"corpus.echo","stepId":"$TRUN:1","group":"corpus.echo","attempt":1,"input":' + deep(126) + "}", "dlq", "deeper than 64 levels")
task("task-attempt-negative", "attempt -1", j(t(attempt=-1)), "dlq", "invalid value")
task("task-attempt-missing", "no attempt", j(t(attempt=DROP)), "dlq", "missing field `attempt`")
task("task-seq-string", "seq as a string", j(t(seq="1")), "dlq", "invalid type")
task("task-group-number", "group 1", j(t(group=1)), "dlq", "invalid type")
task("task-name-null", "name null", j(t(name=None)), "dlq", "invalid type")
task("task-context-array", "context as an array", j(t(context=[1])), "dlq", "invalid type")
task("task-priority-string", "priority high", j(t(priority="high")), "dlq", "invalid type")
task("task-traceparent-number", "traceparent 1", j(t(traceparent=1)), "dlq", "invalid type")
task("task-claim-check-smuggled", "a claimCheck beside a task's fields", j(dict(t(), claimCheck={"blobId": "x", "bytes": 0})), "dlq", "no other field")
task("task-claim-check-missing-blob", "a reference to nothing", j({"claimCheck": {"blobId": "nope", "bytes": 2, "sha256": "00"}}), "dlq", "not found")
task("task-unknown-step", "a step this worker does not serve", j(t(name="no.such-step")), "failed_result", "no handler for step")
task("task-bad-input-type", "input of the wrong type for a typed step", j(t(name="corpus.count", input="seven")), "failed_result", "input does not match")
task("task-handler-error", "the handler fails", j(t(name="corpus.fail")), "failed_result", "corpus failure")
task("task-handler-panic", "the handler panics", j(t(name="corpus.panic")), "failed_result", "panicked")
task("task-good", "a good task", j(t()), "completed_result")
task("task-extra-fields", "unknown fields are ignored", j(t(extra=True, transport="sqs")), "completed_result")
task("task-no-input", "input absent reads as null", j(t(input=DROP)), "completed_result")
task("task-derived-run-id", "a child run's task", j(t(runId="$TRUN~c3~1", stepId="$TRUN~c3~1:1")), "completed_result")

for sub, entries in (("results", R), ("tasks", T)):
    d = os.path.join(HERE, sub)
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    names = set()
    for name, about, body, expect, reason in entries:
        assert name not in names, name
        names.add(name)
        with open(os.path.join(d, name + ".json"), "w") as f:
            json.dump({"about": about, "body": body, "expect": expect, "reason": reason}, f, ensure_ascii=False, indent=1)
            f.write("\n")
print(len(R), "results kinds,", len(T), "tasks kinds")

"""Checks of the SAM template's operational settings, one per setting the design names
(docs/operations.md). Run by ./scripts/test with the project's .venv: python infra/tests/test_template.py"""

import sys
from pathlib import Path

from cfnlint.decode import cfn_yaml

TEMPLATE = Path(__file__).resolve().parent.parent / "template.yaml"
failures = []


def check(ok, what):
    if not ok:
        failures.append(what)


t = cfn_yaml.load(str(TEMPLATE))
res = t["Resources"]
params = t["Parameters"]
props = lambda name: res[name]["Properties"]

sync_timeout = props("SyncFunction")["Timeout"]
check(props("JobQueue")["VisibilityTimeout"] >= 6 * sync_timeout,
      "the queue's visibility timeout is at least six times the sync function's timeout")

jobs = props("SyncFunction")["Events"]["Jobs"]["Properties"]
check(jobs.get("ScalingConfig", {}).get("MaximumConcurrency") == {"Ref": "SyncMaxConcurrency"},
      "the SQS event source's maximum concurrency is the SyncMaxConcurrency parameter")
check(params["SyncMaxConcurrency"]["MinValue"] >= 2, "SQS takes a maximum concurrency of 2 or more")
check(jobs.get("FunctionResponseTypes") == ["ReportBatchItemFailures"],
      "a batch reports exactly its failed messages")

for fn in ("AuthFunction", "WebhookFunction"):
    check(props(fn).get("ReservedConcurrentExecutions") ==
          {"Fn::If": ["ReservePublic", {"Ref": "PublicReservedConcurrency"}, {"Ref": "AWS::NoValue"}]},
          f"{fn}'s reserved concurrency is the PublicReservedConcurrency parameter")
check(params["PublicReservedConcurrency"]["Default"] == 0,
      "by default nothing is reserved, so a fresh account's quota deploys")

for fn in ("AuthFunction", "WebhookFunction", "SyncFunction"):
    logging = props(fn)["LoggingConfig"]
    check(logging.get("LogFormat") == "JSON", f"{fn} logs JSON (Lambda's format setting)")

def alarms_on(metric, namespace):
    return [name for name, r in res.items()
            if r["Type"] == "AWS::CloudWatch::Alarm"
            and r["Properties"]["MetricName"] == metric
            and r["Properties"]["Namespace"] == namespace]

for fn in ("AuthFunction", "WebhookFunction", "SyncFunction"):
    for metric in ("Errors", "Throttles"):
        found = [a for a in alarms_on(metric, "AWS/Lambda")
                 if props(a)["Dimensions"][0]["Value"] == {"Ref": fn}]
        check(len(found) == 1, f"one {metric} alarm on {fn}")
for fn in ("AuthFunction", "WebhookFunction"):
    found = [a for a in alarms_on("Url5xxCount", "AWS/Lambda")
             if props(a)["Dimensions"][0]["Value"] == {"Ref": fn}]
    check(len(found) == 1, f"one function URL 5xx alarm on {fn}")
check(len(alarms_on("ApproximateAgeOfOldestMessage", "AWS/SQS")) == 1, "an alarm on the oldest queued job")
duration = alarms_on("Duration", "AWS/Lambda")
check(len(duration) == 1 and props(duration[0])["Threshold"] < sync_timeout * 1000,
      "an alarm on sync duration near its timeout")
schedule = alarms_on("DispatchRounds", "calsync")
check(len(schedule) == 1 and props(schedule[0])["TreatMissingData"] == "breaching",
      "a missed schedule alarms (no round reported counts)")
check(len(alarms_on("TenantsWithWarnings", "calsync")) == 1, "an alarm on client secrets near expiry")
check(len(alarms_on("ApproximateNumberOfMessagesVisible", "AWS/SQS")) == 1, "the dead-letter alarm")
for name, r in res.items():
    if r["Type"] == "AWS::CloudWatch::Alarm":
        check(r["Properties"].get("AlarmActions") == [{"Ref": "DeadLetterAlarmTopic"}],
              f"{name} notifies the alarm topic")

# Every DynamoDB call the functions make is allowed (a claim is an UpdateItem).
def actions(fn):
    out = set()
    for statement in props(fn)["Policies"][0]["Statement"]:
        acts = statement["Action"]
        out.update(acts if isinstance(acts, list) else [acts])
    return out
check({"dynamodb:UpdateItem", "dynamodb:PutItem", "secretsmanager:GetSecretValue"} <= actions("WebhookFunction"),
      "the webhook may take nudges: spend a nonce, mark the user, read the link key")
check("dynamodb:UpdateItem" in actions("SyncFunction"), "the sync function may claim the run lease")

if failures:
    for f in failures:
        print("FAILED:", f)
    sys.exit(1)
print("template checks passed")

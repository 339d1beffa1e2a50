"""Checks of the SAM template: the operational settings the design names (docs/operations.md).
Run by ./scripts/test with the project's .venv: .venv/bin/python -m pytest infra/tests -q (or
this file as a script)."""

import sys
from pathlib import Path

import pytest
from cfnlint.decode import cfn_yaml

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "infra" / "template.yaml"

t = cfn_yaml.load(str(TEMPLATE))
res = t["Resources"]
params = t["Parameters"]


def props(name):
    return res[name]["Properties"]


# --- operational settings --------------------------------------------------------------------

def test_the_queue_outlasts_a_sync_and_the_event_source_is_bounded():
    sync_timeout = props("SyncFunction")["Timeout"]
    assert props("JobQueue")["VisibilityTimeout"] >= 6 * sync_timeout, \
        "the queue's visibility timeout is at least six times the sync function's timeout"
    jobs = props("SyncFunction")["Events"]["Jobs"]["Properties"]
    assert jobs.get("ScalingConfig", {}).get("MaximumConcurrency") == {"Ref": "SyncMaxConcurrency"}, \
        "the SQS event source's maximum concurrency is the SyncMaxConcurrency parameter"
    assert params["SyncMaxConcurrency"]["MinValue"] >= 2, "SQS takes a maximum concurrency of 2 or more"
    assert jobs.get("FunctionResponseTypes") == ["ReportBatchItemFailures"], \
        "a batch reports exactly its failed messages"


@pytest.mark.parametrize("fn", ["AuthFunction", "WebhookFunction"])
def test_public_functions_reserve_the_parameter(fn):
    assert props(fn).get("ReservedConcurrentExecutions") == \
        {"Fn::If": ["ReservePublic", {"Ref": "PublicReservedConcurrency"}, {"Ref": "AWS::NoValue"}]}
    assert params["PublicReservedConcurrency"]["Default"] == 0, \
        "by default nothing is reserved, so a fresh account's quota deploys"


@pytest.mark.parametrize("fn", ["AuthFunction", "WebhookFunction", "SyncFunction"])
def test_functions_log_json(fn):
    assert props(fn)["LoggingConfig"].get("LogFormat") == "JSON"


def alarms_on(metric, namespace):
    return [name for name, r in res.items()
            if r["Type"] == "AWS::CloudWatch::Alarm"
            and r["Properties"]["MetricName"] == metric
            and r["Properties"]["Namespace"] == namespace]


def test_alarms():
    for fn in ("AuthFunction", "WebhookFunction", "SyncFunction"):
        for metric in ("Errors", "Throttles"):
            found = [a for a in alarms_on(metric, "AWS/Lambda")
                     if props(a)["Dimensions"][0]["Value"] == {"Ref": fn}]
            assert len(found) == 1, f"one {metric} alarm on {fn}"
    for fn in ("AuthFunction", "WebhookFunction"):
        found = [a for a in alarms_on("Url5xxCount", "AWS/Lambda")
                 if props(a)["Dimensions"][0]["Value"] == {"Ref": fn}]
        assert len(found) == 1, f"one function URL 5xx alarm on {fn}"
    assert len(alarms_on("ApproximateAgeOfOldestMessage", "AWS/SQS")) == 1, "an alarm on the oldest queued job"
    duration = alarms_on("Duration", "AWS/Lambda")
    assert len(duration) == 1 and props(duration[0])["Threshold"] < props("SyncFunction")["Timeout"] * 1000, \
        "an alarm on sync duration near its timeout"
    schedule = alarms_on("DispatchRounds", "calsync")
    assert len(schedule) == 1 and props(schedule[0])["TreatMissingData"] == "breaching", \
        "a missed schedule alarms (no round reported counts)"
    assert len(alarms_on("TenantsWithWarnings", "calsync")) == 1, "an alarm on client secrets near expiry"
    assert len(alarms_on("ApproximateNumberOfMessagesVisible", "AWS/SQS")) == 1, "the dead-letter alarm"
    for name, r in res.items():
        if r["Type"] == "AWS::CloudWatch::Alarm":
            assert r["Properties"].get("AlarmActions") == [{"Ref": "DeadLetterAlarmTopic"}], \
                f"{name} notifies the alarm topic"


def actions(fn):
    out = set()
    for statement in props(fn)["Policies"][0]["Statement"]:
        acts = statement["Action"]
        out.update(acts if isinstance(acts, list) else [acts])
    return out


def test_every_dynamodb_call_is_allowed():
    # A claim is an UpdateItem.
    assert {"dynamodb:UpdateItem", "dynamodb:PutItem", "secretsmanager:GetSecretValue"} <= actions("WebhookFunction"), \
        "the webhook may take nudges: spend a nonce, mark the user, read the link key"
    assert "dynamodb:UpdateItem" in actions("SyncFunction"), "the sync function may claim the run lease"


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))

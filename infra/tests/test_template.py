"""Checks of the SAM template: the operational settings the design names (docs/operations.md)
and the optional public domain in front of the Function URLs. Run by ./scripts/test with the
project's .venv: .venv/bin/python -m pytest infra/tests -q (or this file as a script)."""

import re
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


def test_metrics_are_fleet_wide_unless_asked_per_tenant():
    assert params["MetricsByTenant"]["Default"] == "false", \
        "per-tenant metrics cost a custom metric per tenant each: off unless asked"
    assert t["Globals"]["Function"]["Environment"]["Variables"]["CALSYNC_METRICS_BY_TENANT"] == \
        {"Ref": "MetricsByTenant"}


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
    overdue = alarms_on("UsersOverdue", "calsync")
    assert len(overdue) == 1 and props(overdue[0])["Threshold"] == 0, \
        "an alarm on users nothing has synced for several sweeps"
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


@pytest.mark.parametrize("fn", ["AuthFunction", "WebhookFunction", "SyncFunction"])
def test_every_function_reads_the_tenant_secrets_and_the_publisher_app(fn):
    # The publisher app's secret is {prefix}_publisher (shared/src/services/publisher.rs): the
    # prefix's wildcard must cover it, so the consent callback and every token request can read it.
    reads = [s for s in props(fn)["Policies"][0]["Statement"] if s["Action"] == "secretsmanager:GetSecretValue"]
    assert len(reads) == 1
    resource = reads[0]["Resource"]["Fn::Sub"]
    assert resource.endswith(":secret:${SecretPrefix}*"), resource
    assert 'format!("{prefix}_publisher")' in (ROOT / "shared/src/services/publisher.rs").read_text()


# --- the template as CloudFormation would see it for given parameters --------------------------
# A small evaluator: parameters, conditions, rules, Fn::If and Fn::Sub of parameters. What only a
# deployed stack knows (GetAtt, or a Sub of a resource's attribute) stays as "${Name.Attribute}".

NO_VALUE = object()
DOMAIN = "calsync.example.com"
CERTIFICATE = "arn:aws:acm:us-east-1:123456789012:certificate/0a1b2c3d-4e5f-6789-abcd-ef0123456789"
WITH_DOMAIN = {"PublicDomainName": DOMAIN, "PublicCertificateArn": CERTIFICATE}

# CloudFront's managed policies, by the ids CloudFormation takes.
CACHING_DISABLED = "4135ea2d-6df8-44a3-9df3-4b5a84be39ad"
# Passes on every query string, every cookie and every viewer header except Host.
ALL_VIEWER_EXCEPT_HOST_HEADER = "b689b0a8-53d0-40ab-baf2-68738e2966ac"


class Stack:
    def __init__(self, overrides=None):
        self.params = {name: str(p.get("Default", "")) for name, p in params.items()}
        self.params.update(overrides or {})
        self.conditions = {name: self.condition(expr) for name, expr in t["Conditions"].items()}

    def value(self, node):
        if isinstance(node, dict) and "Ref" in node:
            return self.params[node["Ref"]]
        return str(node)

    def condition(self, expr):
        (fn, arg), = expr.items()
        if fn == "Fn::Equals":
            return self.value(arg[0]) == self.value(arg[1])
        if fn == "Fn::Not":
            return not self.condition(arg[0])
        if fn == "Fn::And":
            return all(self.condition(e) for e in arg)
        if fn == "Fn::Or":
            return any(self.condition(e) for e in arg)
        if fn == "Condition":
            return self.condition(t["Conditions"][arg])
        raise AssertionError(f"the test's evaluator does not know {fn}")

    def refused_by_rules(self):
        return [name for name, rule in t.get("Rules", {}).items()
                if self.condition(rule.get("RuleCondition", {"Fn::Equals": ["", ""]}))
                and not all(self.condition(a["Assert"]) for a in rule["Assertions"])]

    def resolve(self, node):
        if isinstance(node, list):
            return [v for v in (self.resolve(n) for n in node) if v is not NO_VALUE]
        if not isinstance(node, dict):
            return node
        if len(node) == 1:
            (fn, arg), = node.items()
            if fn == "Ref":
                if arg == "AWS::NoValue":
                    return NO_VALUE
                return self.params.get(arg, "${%s}" % arg)
            if fn == "Fn::If":
                return self.resolve(arg[1] if self.conditions[arg[0]] else arg[2])
            if fn == "Fn::Sub":
                return re.sub(r"\$\{([^}]+)\}", lambda m: self.params.get(m.group(1), m.group(0)), arg)
            if fn == "Fn::GetAtt":
                return "${%s}" % ".".join(arg if isinstance(arg, list) else [arg])
        out = {}
        for key, value in node.items():
            value = self.resolve(value)
            if value is not NO_VALUE:
                out[key] = value
        return out

    def resources(self):
        return {name: self.resolve(r) for name, r in res.items()
                if "Condition" not in r or self.conditions[r["Condition"]]}

    def outputs(self):
        return {name: self.resolve(o["Value"]) for name, o in t["Outputs"].items()
                if "Condition" not in o or self.conditions[o["Condition"]]}

    def environment(self, fn):
        variables = dict(self.resolve(t["Globals"]["Function"]["Environment"]["Variables"]))
        variables.update(self.resolve(props(fn).get("Environment", {}).get("Variables", {})))
        return variables


def routes(source):
    """The paths an axum router in `source` (a file under shared/src) declares."""
    return re.findall(r'\.route\(\s*"([^"]+)"', (ROOT / "shared" / "src" / source).read_text())


def distribution(stack):
    found = [r for r in stack.resources().values() if r["Type"] == "AWS::CloudFront::Distribution"]
    assert len(found) == 1
    return found[0]["Properties"]["DistributionConfig"]


# --- the optional public domain -----------------------------------------------------------------

def test_without_the_parameters_nothing_of_the_domain_is_created():
    stack = Stack()
    assert params["PublicDomainName"]["Default"] == "" and params["PublicCertificateArn"]["Default"] == ""
    assert not stack.conditions["HasPublicDomain"]
    made = stack.resources()
    assert not [n for n, r in made.items() if r["Type"].startswith("AWS::CloudFront::")]
    # Every CloudFront resource hangs on the condition, so none can appear by mistake.
    for name, r in res.items():
        if r["Type"].startswith("AWS::CloudFront::"):
            assert r.get("Condition") == "HasPublicDomain", name
    assert stack.refused_by_rules() == []


def test_without_a_domain_the_functions_and_outputs_use_the_function_urls():
    stack = Stack()
    auth = stack.environment("AuthFunction")
    assert "CALSYNC_PUBLIC_URL" not in auth, "the auth function takes its URL from the request's Host"
    assert auth["CALSYNC_WEBHOOK_URL"] == "${WebhookFunctionUrl.FunctionUrl}"
    assert stack.environment("SyncFunction")["CALSYNC_WEBHOOK_URL"] == "${WebhookFunctionUrl.FunctionUrl}"
    out = stack.outputs()
    assert out["AuthUrl"] == "${AuthFunctionUrl.FunctionUrl}"
    assert out["RedirectUri"] == "${AuthFunctionUrl.FunctionUrl}callback"
    assert out["AdminConsentRedirectUri"] == "${AuthFunctionUrl.FunctionUrl}admin-consent/callback"
    assert out["WebhookUrl"] == "${WebhookFunctionUrl.FunctionUrl}"
    assert "PublicDistributionDomainName" not in out


@pytest.mark.parametrize("given", [{"PublicDomainName": DOMAIN}, {"PublicCertificateArn": CERTIFICATE}])
def test_half_the_pair_is_refused_and_creates_nothing(given):
    stack = Stack(given)
    assert stack.refused_by_rules(), "a domain without its certificate (or the reverse) fails the deploy"
    assert not stack.conditions["HasPublicDomain"]


def test_parameter_patterns():
    domain = params["PublicDomainName"]["AllowedPattern"]
    certificate = params["PublicCertificateArn"]["AllowedPattern"]
    for good in ("", DOMAIN, "sync.crm-1.example.es"):
        assert re.fullmatch(domain, good), good
    for bad in ("https://calsync.example.com", "calsync.example.com/", "Calsync.Example.com", "localhost"):
        assert not re.fullmatch(domain, bad), bad
    assert re.fullmatch(certificate, "") and re.fullmatch(certificate, CERTIFICATE)
    assert not re.fullmatch(certificate, CERTIFICATE.replace("us-east-1", "eu-west-1")), \
        "CloudFront takes certificates from us-east-1 only"


def test_with_the_parameters_one_distribution_answers_for_the_domain():
    stack = Stack(WITH_DOMAIN)
    assert stack.conditions["HasPublicDomain"] and stack.refused_by_rules() == []
    config = distribution(stack)
    assert config["Enabled"] is True
    assert config["Aliases"] == [DOMAIN]
    assert config["ViewerCertificate"] == {
        "AcmCertificateArn": CERTIFICATE,
        "SslSupportMethod": "sni-only",
        "MinimumProtocolVersion": "TLSv1.2_2021",
    }
    origins = {o["Id"]: o for o in config["Origins"]}
    for origin_id, function_url in (("auth", "AuthFunctionUrl"), ("webhook", "WebhookFunctionUrl")):
        origin = origins[origin_id]
        # The host of https://<id>.lambda-url.<region>.on.aws/
        assert origin["DomainName"] == {"Fn::Select": [2, {"Fn::Split": ["/", "${%s.FunctionUrl}" % function_url]}]}
        assert origin["CustomOriginConfig"]["OriginProtocolPolicy"] == "https-only"
        assert not origin.get("OriginCustomHeaders"), "no header (Host least of all) is added for the origin"
    assert config["DefaultCacheBehavior"]["TargetOriginId"] == "auth"


def test_every_behaviour_passes_on_what_the_functions_need_except_host():
    config = distribution(Stack(WITH_DOMAIN))
    behaviours = [config["DefaultCacheBehavior"]] + config.get("CacheBehaviors", [])
    for b in behaviours:
        where = b.get("PathPattern", "default")
        assert b["ViewerProtocolPolicy"] == "redirect-to-https", where
        assert {"GET", "HEAD", "POST"} <= set(b["AllowedMethods"]), f"{where}: POST reaches the function"
        assert b["CachePolicyId"] == CACHING_DISABLED, f"{where}: nothing is cached"
        # Query strings (code, state, signed links, validationToken) and cookies (the sign-in
        # cookie) all pass; Host does not, so the Function URL sees its own.
        assert b["OriginRequestPolicyId"] == ALL_VIEWER_EXCEPT_HOST_HEADER, where
        assert "ForwardedValues" not in b, f"{where}: the legacy settings would decide forwarding instead"


def test_webhook_routes_go_to_the_webhook_and_the_rest_to_auth():
    config = distribution(Stack(WITH_DOMAIN))
    to_webhook = {b["PathPattern"] for b in config["CacheBehaviors"] if b["TargetOriginId"] == "webhook"}
    webhook_routes = set(routes("entry/webhook.rs"))
    auth_routes = set(routes("entry/auth/mod.rs"))
    assert {"/notifications", "/lifecycle", "/nudge"} <= webhook_routes
    assert {"/connect", "/callback", "/disconnect"} <= auth_routes
    assert to_webhook == webhook_routes, "every webhook route, and only those, has a behaviour"
    assert not auth_routes & webhook_routes
    assert all(b["TargetOriginId"] in ("auth", "webhook") for b in config["CacheBehaviors"])


def test_with_a_domain_the_functions_are_told_it():
    stack = Stack(WITH_DOMAIN)
    base = f"https://{DOMAIN}/"
    auth = stack.environment("AuthFunction")
    # Behind CloudFront the Host is the Function URL's, so the auth function must be told.
    assert auth["CALSYNC_PUBLIC_URL"] == base
    assert auth["CALSYNC_WEBHOOK_URL"] == base
    assert stack.environment("SyncFunction")["CALSYNC_WEBHOOK_URL"] == base


def test_with_a_domain_the_outputs_name_it():
    out = Stack(WITH_DOMAIN).outputs()
    assert out["AuthUrl"] == f"https://{DOMAIN}/"
    assert out["RedirectUri"] == f"https://{DOMAIN}/callback"
    assert out["AdminConsentRedirectUri"] == f"https://{DOMAIN}/admin-consent/callback"
    assert out["WebhookUrl"] == f"https://{DOMAIN}/"
    assert out["PublicDistributionDomainName"] == "${PublicDistribution.DomainName}"
    assert out["AuthFunctionUrl"] == "${AuthFunctionUrl.FunctionUrl}"
    assert out["WebhookFunctionUrl"] == "${WebhookFunctionUrl.FunctionUrl}"


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))

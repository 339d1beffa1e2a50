//! Metrics in CloudWatch's embedded metric format: one JSON line per finished job on stdout,
//! which Lambda sends to CloudWatch Logs and CloudWatch turns into metrics without an API call.
//! Fleet-wide, and by tenant when the deployment asks (`CALSYNC_METRICS_BY_TENANT`), never by
//! user: each combination of dimensions is a metric of its own, billed.

use std::time::Duration;

use serde_json::{json, Value};

use crate::adapters::queue::SyncJob;
use crate::services::sync_run::{RunOutcome, RunReport};

/// The namespace calsync's metrics live in.
pub const NAMESPACE: &str = "calsync";

/// The metrics of one job: `report` is `None` when the job failed. `now_ms`: when it ended.
pub fn job(
    job: &SyncJob,
    report: Option<&RunReport>,
    took: Duration,
    now_ms: i64,
    by_tenant: bool,
) -> Value {
    let counts = report.map(|r| r.counts).unwrap_or_default();
    let outcome = report.map(|r| r.outcome);
    let crm_writes = counts.crm_created + counts.crm_updated + counts.crm_deleted;
    let outlook_writes = counts.outlook_created + counts.outlook_updated + counts.outlook_deleted;
    let mut metrics = vec![
        ("Jobs", json!(1), "Count"),
        ("JobFailures", json!(u8::from(report.is_none())), "Count"),
        (
            "JobDuration",
            json!(took.as_millis() as u64),
            "Milliseconds",
        ),
        ("CrmWrites", json!(crm_writes), "Count"),
        ("OutlookWrites", json!(outlook_writes), "Count"),
        ("Conflicts", json!(counts.conflicts), "Count"),
        ("FailedSteps", json!(counts.failed), "Count"),
        (
            "ReconnectRequired",
            json!(u8::from(outcome == Some(RunOutcome::ReconnectRequired))),
            "Count",
        ),
        (
            "GuardTrips",
            json!(u8::from(outcome == Some(RunOutcome::GuardTripped))),
            "Count",
        ),
    ];
    // How long a change announced by Graph or the CRM took to be written on the other side.
    if let (Some(origin), true) = (&job.origin, crm_writes + outlook_writes > 0) {
        metrics.push((
            "AnnouncementToWriteLag",
            json!((now_ms - origin.at_ms).max(0)),
            "Milliseconds",
        ));
    }
    let mut document = json!({
        "_aws": {
            "Timestamp": now_ms,
            "CloudWatchMetrics": [{
                "Namespace": NAMESPACE,
                // Fleet-wide always; per tenant only when asked (each pair is billed). The
                // tenant is in every line anyway, for Logs Insights.
                "Dimensions": if by_tenant { json!([["Tenant"], []]) } else { json!([[]]) },
                "Metrics": metrics
                    .iter()
                    .map(|(name, _, unit)| json!({"Name": name, "Unit": unit}))
                    .collect::<Vec<_>>(),
            }],
        },
        "Tenant": job.tenant.as_str(),
    });
    for (name, value, _) in metrics {
        document[name] = value;
    }
    document
}

/// The metrics of one dispatch round, fleet-wide (no dimension): a round that never comes is
/// how a broken schedule shows (its alarm treats missing data as breaching).
pub fn dispatch(report: &crate::entry::dispatch::DispatchReport, now_ms: i64) -> Value {
    let metrics = [
        ("DispatchRounds", json!(1)),
        ("UsersDue", json!(report.users_due)),
        ("FailedTenants", json!(report.failed_tenants.len())),
        ("TenantsWithWarnings", json!(report.tenants_warned)),
        ("UsersOverdue", json!(report.users_overdue)),
    ];
    let mut document = json!({
        "_aws": {
            "Timestamp": now_ms,
            "CloudWatchMetrics": [{
                "Namespace": NAMESPACE,
                "Dimensions": [[]],
                "Metrics": metrics
                    .iter()
                    .map(|(name, _)| json!({"Name": name, "Unit": "Count"}))
                    .collect::<Vec<_>>(),
            }],
        },
    });
    for (name, value) in metrics {
        document[name] = value;
    }
    document
}

/// Writes one metric document as a line of its own on stdout.
pub fn emit(document: &Value) {
    println!("{document}");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::queue::{JobOrigin, JobReason};
    use calsync_core::ids::{CrmUserName, TenantId};

    #[test]
    fn a_job_becomes_one_emf_document_by_tenant_never_by_user() {
        let job = SyncJob {
            tenant: TenantId::parse("acme").unwrap(),
            user: CrmUserName::parse("maria").unwrap(),
            reason: JobReason::Nudge,
            full: false,
            origin: Some(JobOrigin {
                correlation: "c0rr".into(),
                at_ms: 1_000,
            }),
        };
        let mut report = RunReport::new(RunOutcome::Synced);
        report.counts.outlook_updated = 2;
        let doc = job_metrics(&job, Some(&report));
        assert_eq!(doc["_aws"]["CloudWatchMetrics"][0]["Namespace"], "calsync");
        assert_eq!(
            doc["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
            json!([[]]),
            "fleet-wide unless asked"
        );
        let by_tenant = super::job(&job, Some(&report), Duration::from_millis(250), 5_000, true);
        assert_eq!(
            by_tenant["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
            json!([["Tenant"], []])
        );
        assert_eq!(doc["Tenant"], "acme");
        assert!(!doc.to_string().contains("maria"), "never a user: {doc}");
        assert_eq!(doc["OutlookWrites"], 2);
        assert_eq!(doc["AnnouncementToWriteLag"], 4_000);
        // Every metric named has its value.
        for metric in doc["_aws"]["CloudWatchMetrics"][0]["Metrics"]
            .as_array()
            .unwrap()
        {
            assert!(
                doc.get(metric["Name"].as_str().unwrap()).is_some(),
                "{metric}"
            );
        }
        // A failed job: counted as such, no lag.
        let failed = job_metrics(&job, None);
        assert_eq!(failed["JobFailures"], 1);
        assert!(failed.get("AnnouncementToWriteLag").is_none());
    }

    fn job_metrics(job: &SyncJob, report: Option<&RunReport>) -> Value {
        super::job(job, report, Duration::from_millis(250), 5_000, false)
    }
}

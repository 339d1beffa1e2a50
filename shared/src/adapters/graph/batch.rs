//! JSON batching (`POST /v1.0/$batch`): at most 20 requests per batch, each answered on its
//! own. Sub-requests that were throttled or hit an outage are sent again — only they, in a new
//! batch, after the longest `Retry-After` among them.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use reqwest::Method;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::time::Instant;

use super::client::{to_json_body, MailboxClient, RequestSpec};
use super::error::{error_from_response, GraphError, Outage};
use super::transport::backoff;

/// Graph refuses batches of more than 20 requests.
pub const MAX_BATCH: usize = 20;

/// One sub-request. `url` is relative to `/v1.0`, e.g. `/me/events/{id}`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BatchRequest {
    pub id: String,
    pub method: String,
    pub url: String,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body: Option<Value>,
}

impl BatchRequest {
    pub fn get(id: impl Into<String>, url: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            method: "GET".into(),
            url: url.into(),
            headers: BTreeMap::new(),
            body: None,
        }
    }

    /// A request with a JSON body (Graph wants its Content-Type inside the batch).
    pub fn with_json(mut self, method: &str, body: Value) -> Self {
        self.method = method.to_owned();
        self.headers
            .insert("Content-Type".into(), "application/json".into());
        self.body = Some(body);
        self
    }

    /// Safe to send twice: reads, updates, deletes and creates carrying a `transactionId`.
    fn idempotent(&self) -> bool {
        match self.method.to_ascii_uppercase().as_str() {
            "POST" => self
                .body
                .as_ref()
                .is_some_and(|b| b.get("transactionId").is_some_and(|t| !t.is_null())),
            _ => true,
        }
    }
}

/// One sub-response as Graph sends it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct BatchResponse {
    pub id: String,
    pub status: u16,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default)]
    pub body: Option<Value>,
}

#[derive(Debug, Deserialize)]
struct BatchEnvelope {
    #[serde(default)]
    responses: Vec<BatchResponse>,
}

/// The final result of one sub-request, after any retries.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchItemResult {
    pub id: String,
    pub status: u16,
    pub headers: BTreeMap<String, String>,
    pub body: Option<Value>,
    /// How many batches carried this request.
    pub attempts: u32,
}

impl BatchItemResult {
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as `T` on success; the sub-request's error otherwise.
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, GraphError> {
        if !self.is_success() {
            return Err(self.error());
        }
        serde_json::from_value(self.body.clone().unwrap_or(Value::Null)).map_err(|source| {
            GraphError::Decode {
                source,
                request_id: self.header("request-id").map(str::to_owned),
            }
        })
    }

    pub fn error(&self) -> GraphError {
        let body = self
            .body
            .as_ref()
            .map(|b| b.to_string().into_bytes())
            .unwrap_or_default();
        match self.status {
            429 => GraphError::Throttled {
                retry_after: self.retry_after(),
            },
            502..=504 => GraphError::Unavailable {
                outage: Outage::Status(self.status),
                retried: true,
            },
            status => {
                error_from_response(status, &body, self.header("request-id").map(str::to_owned))
            }
        }
    }

    fn retry_after(&self) -> Option<Duration> {
        self.header("retry-after")?
            .trim()
            .parse::<u64>()
            .ok()
            .map(Duration::from_secs)
    }

    fn retryable(&self) -> bool {
        matches!(self.status, 429 | 502 | 503 | 504)
    }
}

impl MailboxClient {
    /// A URL relative to `/v1.0` for a batch, under this mailbox (`/me/events/{id}`).
    pub fn batch_url(&self, rest: &[&str], query: Option<&str>) -> Result<String, GraphError> {
        let url = self.mailbox_url(rest)?;
        let path = url.path();
        let relative = path
            .find("/v1.0/")
            .map(|at| &path[at + "/v1.0".len()..])
            .unwrap_or(path);
        Ok(match query {
            Some(q) => format!("{relative}?{q}"),
            None => relative.to_owned(),
        })
    }

    /// Runs the requests in batches of at most 20 and returns one result per request, in the
    /// order given. Throttled or unavailable items are retried alone, after the longest
    /// `Retry-After` among them, up to the client's attempt limit; an item that still fails is
    /// returned with its last answer.
    pub async fn batch(
        &self,
        requests: Vec<BatchRequest>,
    ) -> Result<Vec<BatchItemResult>, GraphError> {
        let mut seen = HashSet::new();
        if let Some(dup) = requests.iter().find(|r| !seen.insert(r.id.clone())) {
            tracing::error!(id = %dup.id, "batch request id used twice");
            return Err(GraphError::Refused("a batch request id used twice"));
        }
        let requests: Vec<BatchRequest> = requests
            .into_iter()
            .map(|r| self.with_default_prefer(r))
            .collect();
        let position: HashMap<&str, usize> = requests
            .iter()
            .enumerate()
            .map(|(i, r)| (r.id.as_str(), i))
            .collect();
        let mut results: Vec<Option<BatchItemResult>> = vec![None; requests.len()];
        let mut pending: Vec<usize> = (0..requests.len()).collect();
        let settings = self.graph.settings().clone();
        let started = Instant::now();
        let mut attempt = 0u32;
        while !pending.is_empty() {
            attempt += 1;
            for chunk in pending.chunks(MAX_BATCH) {
                let answers = self.send_batch(&requests, chunk).await?;
                for answer in answers {
                    let Some(&at) = position.get(answer.id.as_str()) else {
                        continue;
                    };
                    results[at] = Some(BatchItemResult {
                        id: answer.id,
                        status: answer.status,
                        headers: answer.headers,
                        body: answer.body,
                        attempts: attempt,
                    });
                }
            }
            // Items Graph did not answer at all are treated as unavailable and retried.
            for &at in &pending {
                if results[at].is_none() {
                    results[at] = Some(BatchItemResult {
                        id: requests[at].id.clone(),
                        status: 503,
                        headers: BTreeMap::new(),
                        body: None,
                        attempts: attempt,
                    });
                }
            }
            let failed: Vec<usize> = pending
                .iter()
                .copied()
                .filter(|&at| results[at].as_ref().is_some_and(|r| r.retryable()))
                .collect();
            if failed.is_empty() || attempt >= settings.max_attempts {
                break;
            }
            let longest = failed
                .iter()
                .filter_map(|&at| results[at].as_ref().and_then(|r| r.retry_after()))
                .max();
            let wait = longest
                .unwrap_or_else(|| backoff(settings.backoff_base, settings.max_backoff, attempt));
            if wait > settings.max_retry_after || started.elapsed() + wait > settings.max_total_wait
            {
                break;
            }
            if failed
                .iter()
                .any(|&at| results[at].as_ref().is_some_and(|r| r.status == 429))
            {
                self.graph
                    .pause_mailbox(self.mailbox.oid(), Instant::now() + wait);
            }
            tracing::warn!(
                failed = failed.len(),
                attempt,
                delay_ms = wait.as_millis() as u64,
                "retrying throttled batch items"
            );
            tokio::time::sleep(wait).await;
            pending = failed;
        }
        Ok(results
            .into_iter()
            .zip(&requests)
            .map(|(result, request)| {
                result.unwrap_or_else(|| BatchItemResult {
                    id: request.id.clone(),
                    status: 503,
                    headers: BTreeMap::new(),
                    body: None,
                    attempts: attempt,
                })
            })
            .collect())
    }

    fn with_default_prefer(&self, mut request: BatchRequest) -> BatchRequest {
        if !request
            .headers
            .keys()
            .any(|k| k.eq_ignore_ascii_case("prefer"))
        {
            request
                .headers
                .insert("Prefer".into(), self.event_prefer().join(", "));
        }
        request
    }

    async fn send_batch(
        &self,
        requests: &[BatchRequest],
        chunk: &[usize],
    ) -> Result<Vec<BatchResponse>, GraphError> {
        let items: Vec<&BatchRequest> = chunk.iter().map(|&at| &requests[at]).collect();
        let body = to_json_body(&serde_json::json!({ "requests": items }))?;
        let reply = self
            .send_carrying(
                RequestSpec {
                    method: Method::POST,
                    url: self.graph.api_url(&["$batch"])?,
                    prefer: &[],
                    if_match: None,
                    body: Some(body),
                    idempotent: items.iter().all(|r| r.idempotent()),
                },
                items.len(),
            )
            .await?;
        Ok(reply.json::<BatchEnvelope>()?.responses)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn only_safe_posts_are_idempotent() {
        let get = BatchRequest::get("1", "/me/events/x");
        assert!(get.idempotent());
        let create =
            BatchRequest::get("2", "/me/events").with_json("POST", json!({"subject": "a"}));
        assert!(!create.idempotent());
        let safe =
            BatchRequest::get("3", "/me/events").with_json("POST", json!({"transactionId": "t"}));
        assert!(safe.idempotent());
    }

    #[test]
    fn item_errors_keep_their_meaning() {
        let item = BatchItemResult {
            id: "1".into(),
            status: 429,
            headers: BTreeMap::from([("Retry-After".into(), "7".into())]),
            body: None,
            attempts: 1,
        };
        assert!(matches!(
            item.error(),
            GraphError::Throttled { retry_after: Some(d) } if d == Duration::from_secs(7)
        ));
        let gone = BatchItemResult {
            status: 404,
            body: Some(json!({"error": {"code": "ErrorItemNotFound", "message": "x"}})),
            ..item
        };
        assert!(matches!(gone.error(), GraphError::NotFound { .. }));
    }
}

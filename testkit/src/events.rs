//! Real event payloads as AWS delivers them to a function: Lambda Function URL requests
//! (payload format 2.0), SQS FIFO batches and EventBridge scheduled events.
//!
//! The shapes follow the AWS documentation and captured payloads (the `lambda_http` and
//! `aws_lambda_events` fixtures), so the functions parse exactly what they will get in AWS.

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use rand::Rng as _;
use serde_json::{json, Map, Value};

/// Region used in ARNs and domain names when the caller does not choose one.
pub const DEFAULT_REGION: &str = "eu-west-1";
/// Account id used in ARNs; a Function URL with auth type NONE reports `anonymous` instead.
pub const TEST_ACCOUNT_ID: &str = "123456789012";
/// The `<url-id>` part of the Function URL domain (32 lowercase letters and digits, like AWS).
pub const FUNCTION_URL_ID: &str = "c4lsync0test0url0id0000000000000";
/// Queue ARN used by [`sqs_fifo_event`].
pub const DEFAULT_FIFO_QUEUE_ARN: &str = "arn:aws:sqs:eu-west-1:123456789012:calsync-sync.fifo";

/// A Lambda Function URL request event (payload format version 2.0) for a plain text body.
///
/// `path` is the raw path as the client sent it (already percent-encoded if needed); `query`
/// pairs are given decoded and are percent-encoded into `rawQueryString`; `headers` names are
/// lowercased and repeated names are comma-joined, like AWS does. For more control (binary
/// bodies, source IP) use [`FunctionUrlRequest`].
pub fn function_url_event(
    method: &str,
    path: &str,
    query: &[(&str, &str)],
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> Value {
    let mut request = FunctionUrlRequest::new(method, path);
    for (name, value) in query {
        request = request.query(name, value);
    }
    for (name, value) in headers {
        request = request.header(name, value);
    }
    if let Some(body) = body {
        request = request.body(body);
    }
    request.to_event()
}

/// Builder for a Function URL request event, for cases [`function_url_event`] does not cover.
#[derive(Debug, Clone)]
pub struct FunctionUrlRequest {
    method: String,
    path: String,
    query: Vec<(String, String)>,
    headers: Vec<(String, String)>,
    body: Option<Vec<u8>>,
    base64_body: bool,
    source_ip: String,
    region: String,
}

impl FunctionUrlRequest {
    pub fn new(method: &str, path: &str) -> Self {
        Self {
            method: method.to_ascii_uppercase(),
            path: path.to_owned(),
            query: Vec::new(),
            headers: Vec::new(),
            body: None,
            base64_body: false,
            source_ip: "203.0.113.10".to_owned(),
            region: DEFAULT_REGION.to_owned(),
        }
    }

    /// Adds one query parameter (decoded form); repeat the name for multiple values.
    pub fn query(mut self, name: &str, value: &str) -> Self {
        self.query.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Adds one request header; repeat the name for multiple values.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers
            .push((name.to_ascii_lowercase(), value.to_owned()));
        self
    }

    /// A text body, passed through as is (`isBase64Encoded: false`).
    pub fn body(mut self, body: &str) -> Self {
        self.body = Some(body.as_bytes().to_vec());
        self.base64_body = false;
        self
    }

    /// A body AWS would base64-encode (binary content types): `isBase64Encoded: true`.
    pub fn binary_body(mut self, body: &[u8]) -> Self {
        self.body = Some(body.to_vec());
        self.base64_body = true;
        self
    }

    pub fn source_ip(mut self, ip: &str) -> Self {
        self.source_ip = ip.to_owned();
        self
    }

    pub fn region(mut self, region: &str) -> Self {
        self.region = region.to_owned();
        self
    }

    /// The event JSON exactly as Lambda hands it to the function.
    pub fn to_event(&self) -> Value {
        let now_ms = epoch_ms();
        let domain = format!("{FUNCTION_URL_ID}.lambda-url.{}.on.aws", self.region);

        // Headers AWS adds in front of every Function URL request; the caller's win.
        let mut headers: BTreeMap<String, String> = BTreeMap::new();
        let defaults = [
            ("host", domain.clone()),
            ("user-agent", "calsync-tests".to_owned()),
            (
                "x-amzn-tls-cipher-suite",
                "TLS_AES_128_GCM_SHA256".to_owned(),
            ),
            ("x-amzn-tls-version", "TLSv1.3".to_owned()),
            ("x-amzn-trace-id", format!("Root={}", xray_root(now_ms))),
            ("x-forwarded-for", self.source_ip.clone()),
            ("x-forwarded-port", "443".to_owned()),
            ("x-forwarded-proto", "https".to_owned()),
        ];
        let given: Vec<&str> = self.headers.iter().map(|(n, _)| n.as_str()).collect();
        for (name, value) in defaults {
            if !given.contains(&name) {
                headers.insert(name.to_owned(), value);
            }
        }
        if let Some(body) = &self.body {
            if !given.contains(&"content-length") {
                headers.insert("content-length".to_owned(), body.len().to_string());
            }
        }
        for (name, value) in &self.headers {
            headers
                .entry(name.clone())
                .and_modify(|joined| {
                    joined.push(',');
                    joined.push_str(value);
                })
                .or_insert_with(|| value.clone());
        }

        // AWS lists each cookie in `cookies` (and, as captured payloads show, keeps the header).
        let cookies: Vec<String> = self
            .headers
            .iter()
            .filter(|(name, _)| name == "cookie")
            .flat_map(|(_, value)| value.split(';'))
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .map(str::to_owned)
            .collect();

        let raw_query_string = self
            .query
            .iter()
            .map(|(n, v)| format!("{}={}", urlencoding::encode(n), urlencoding::encode(v)))
            .collect::<Vec<_>>()
            .join("&");
        let mut query_parameters: BTreeMap<String, String> = BTreeMap::new();
        for (name, value) in &self.query {
            query_parameters
                .entry(name.clone())
                .and_modify(|joined| {
                    joined.push(',');
                    joined.push_str(value);
                })
                .or_insert_with(|| value.clone());
        }

        let user_agent = headers.get("user-agent").cloned().unwrap_or_default();
        let mut event = Map::new();
        event.insert("version".into(), json!("2.0"));
        event.insert("routeKey".into(), json!("$default"));
        event.insert("rawPath".into(), json!(self.path));
        event.insert("rawQueryString".into(), json!(raw_query_string));
        // AWS omits `cookies`, `queryStringParameters` and `body` when there are none.
        if !cookies.is_empty() {
            event.insert("cookies".into(), json!(cookies));
        }
        event.insert("headers".into(), json!(headers));
        if !query_parameters.is_empty() {
            event.insert("queryStringParameters".into(), json!(query_parameters));
        }
        event.insert(
            "requestContext".into(),
            json!({
                "accountId": "anonymous",
                "apiId": FUNCTION_URL_ID,
                "domainName": domain,
                "domainPrefix": FUNCTION_URL_ID,
                "http": {
                    "method": self.method,
                    "path": self.path,
                    "protocol": "HTTP/1.1",
                    "sourceIp": self.source_ip,
                    "userAgent": user_agent,
                },
                "requestId": new_uuid(),
                "routeKey": "$default",
                "stage": "$default",
                "time": clf_time(now_ms),
                "timeEpoch": now_ms,
            }),
        );
        if let Some(body) = &self.body {
            let body = if self.base64_body {
                base64::engine::general_purpose::STANDARD.encode(body)
            } else {
                String::from_utf8_lossy(body).into_owned()
            };
            event.insert("body".into(), json!(body));
        }
        event.insert("isBase64Encoded".into(), json!(self.base64_body));
        Value::Object(event)
    }
}

/// One message of an SQS FIFO batch, for [`sqs_fifo_event_with`].
#[derive(Debug, Clone)]
pub struct SqsFifoMessage<'a> {
    pub body: &'a str,
    pub message_group_id: &'a str,
    pub message_id: &'a str,
    /// `ApproximateReceiveCount`: above 1 for a redelivered message.
    pub receive_count: u32,
}

/// An SQS event for a FIFO queue, one record per `(body, message_group_id, message_id)`,
/// each received for the first time, from [`DEFAULT_FIFO_QUEUE_ARN`].
pub fn sqs_fifo_event(records: &[(&str, &str, &str)]) -> Value {
    let messages: Vec<SqsFifoMessage<'_>> = records
        .iter()
        .map(|&(body, message_group_id, message_id)| SqsFifoMessage {
            body,
            message_group_id,
            message_id,
            receive_count: 1,
        })
        .collect();
    sqs_fifo_event_with(DEFAULT_FIFO_QUEUE_ARN, &messages)
}

/// An SQS event for the FIFO queue `queue_arn`. The deduplication id is the message id (the
/// producer sets it explicitly); sequence numbers increase through the batch, like AWS.
pub fn sqs_fifo_event_with(queue_arn: &str, messages: &[SqsFifoMessage<'_>]) -> Value {
    let now_ms = epoch_ms();
    let region = queue_arn.split(':').nth(3).unwrap_or(DEFAULT_REGION);
    let mut rng = rand::thread_rng();
    // FIFO sequence numbers are large 20-digit decimal strings.
    let first_sequence: u128 = 18_000_000_000_000_000_000 + u128::from(rng.gen::<u32>()) * 1_000;
    let records: Vec<Value> = messages
        .iter()
        .zip(0u128..)
        .map(|(message, index)| {
            let handle_bytes: [u8; 48] = std::array::from_fn(|_| rng.gen());
            json!({
                "messageId": message.message_id,
                "receiptHandle": base64::engine::general_purpose::STANDARD.encode(handle_bytes),
                "body": message.body,
                "attributes": {
                    "ApproximateReceiveCount": message.receive_count.to_string(),
                    "SentTimestamp": (now_ms - 50).to_string(),
                    "SequenceNumber": (first_sequence + index).to_string(),
                    "MessageGroupId": message.message_group_id,
                    "SenderId": "AROAEXAMPLEROLEID0000:calsync-webhook",
                    "MessageDeduplicationId": message.message_id,
                    "ApproximateFirstReceiveTimestamp": now_ms.to_string(),
                },
                "messageAttributes": {},
                "md5OfBody": md5_hex(message.body.as_bytes()),
                "eventSource": "aws:sqs",
                "eventSourceARN": queue_arn,
                "awsRegion": region,
            })
        })
        .collect();
    json!({ "Records": records })
}

/// An EventBridge "Scheduled Event" (a rule with a schedule expression) carrying `detail`.
///
/// EventBridge *Scheduler* with a custom input delivers that input as is: invoke with the raw
/// JSON (e.g. `{"action":"dispatch"}`) for that case.
pub fn eventbridge_scheduled_event(detail: Value) -> Value {
    let now_ms = epoch_ms();
    json!({
        "version": "0",
        "id": new_uuid(),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": TEST_ACCOUNT_ID,
        "time": iso_time(now_ms / 1000),
        "region": DEFAULT_REGION,
        "resources": [format!("arn:aws:events:{DEFAULT_REGION}:{TEST_ACCOUNT_ID}:rule/calsync-schedule")],
        "detail": detail,
    })
}

/// Milliseconds since the Unix epoch (0 if the clock is before 1970).
pub(crate) fn epoch_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// A random version-4 UUID, the format AWS uses for request and event ids.
pub(crate) fn new_uuid() -> String {
    let mut bytes: [u8; 16] = rand::thread_rng().gen();
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// An X-Ray root id: `1-<epoch seconds, 8 hex>-<96 random bits, 24 hex>`.
pub(crate) fn xray_root(now_ms: u64) -> String {
    let random: u128 = rand::thread_rng().gen::<u128>() >> 32;
    format!("1-{:08x}-{random:024x}", now_ms / 1000)
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar
/// (Howard Hinnant's `civil_from_days`), to format dates without a date crate.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    // Both are in range by construction (1..=31, 1..=12).
    (year, day as u32, month as u32)
}

fn split_time(epoch_secs: u64) -> (i64, u32, u32, u64, u64, u64) {
    let days = i64::try_from(epoch_secs / 86_400).unwrap_or(0);
    let (year, day, month) = civil_from_days(days);
    let secs = epoch_secs % 86_400;
    (year, month, day, secs / 3600, secs / 60 % 60, secs % 60)
}

/// `12/Mar/2020:19:03:58 +0000`, the `requestContext.time` format.
fn clf_time(epoch_ms: u64) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let (year, month, day, h, m, s) = split_time(epoch_ms / 1000);
    let month = MONTHS
        .get(month.saturating_sub(1) as usize)
        .copied()
        .unwrap_or("Jan");
    format!("{day:02}/{month}/{year}:{h:02}:{m:02}:{s:02} +0000")
}

/// `2015-10-08T16:53:06Z`, the EventBridge `time` format.
fn iso_time(epoch_secs: u64) -> String {
    let (year, month, day, h, m, s) = split_time(epoch_secs);
    format!("{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}Z")
}

/// MD5 (RFC 1321) hex digest, for SQS `md5OfBody`; no crate in the workspace provides it and
/// consumers may check it.
pub fn md5_hex(data: &[u8]) -> String {
    const S: [u32; 64] = [
        7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22, 5, 9, 14, 20, 5, 9, 14, 20, 5,
        9, 14, 20, 5, 9, 14, 20, 4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23, 6, 10,
        15, 21, 6, 10, 15, 21, 6, 10, 15, 21, 6, 10, 15, 21,
    ];
    // K[i] = floor(abs(sin(i + 1)) * 2^32)
    let k: Vec<u32> = (0..64)
        .map(|i: u32| (f64::from(i + 1).sin().abs() * 4_294_967_296.0) as u32)
        .collect();
    let mut message = data.to_vec();
    let bit_len = (data.len() as u64).wrapping_mul(8);
    message.push(0x80);
    while message.len() % 64 != 56 {
        message.push(0);
    }
    message.extend_from_slice(&bit_len.to_le_bytes());

    let mut state: [u32; 4] = [0x6745_2301, 0xefcd_ab89, 0x98ba_dcfe, 0x1032_5476];
    for chunk in message.chunks_exact(64) {
        let words: Vec<u32> = chunk
            .chunks_exact(4)
            .map(|w| u32::from_le_bytes([w[0], w[1], w[2], w[3]]))
            .collect();
        let [mut a, mut b, mut c, mut d] = state;
        for i in 0..64 {
            let (f, g) = match i / 16 {
                0 => ((b & c) | (!b & d), i),
                1 => ((d & b) | (!d & c), (5 * i + 1) % 16),
                2 => (b ^ c ^ d, (3 * i + 5) % 16),
                _ => (c ^ (b | !d), (7 * i) % 16),
            };
            let rotated = a
                .wrapping_add(f)
                .wrapping_add(k[i])
                .wrapping_add(words[g])
                .rotate_left(S[i]);
            a = d;
            d = c;
            c = b;
            b = b.wrapping_add(rotated);
        }
        state[0] = state[0].wrapping_add(a);
        state[1] = state[1].wrapping_add(b);
        state[2] = state[2].wrapping_add(c);
        state[3] = state[3].wrapping_add(d);
    }
    state
        .iter()
        .flat_map(|word| word.to_le_bytes())
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn md5_matches_known_digests() {
        assert_eq!(md5_hex(b""), "d41d8cd98f00b204e9800998ecf8427e");
        assert_eq!(md5_hex(b"abc"), "900150983cd24fb0d6963f7d28e17f72");
        // Checked with `md5sum` (the aws_lambda_events fixture's md5OfBody is made up).
        assert_eq!(
            md5_hex(br#"{"a":"Test","b":123}"#),
            "3fa0699508239b7ef110ff32ab7ebe5a"
        );
        let long = vec![b'a'; 1000];
        assert_eq!(md5_hex(&long), "cabe45dcc9ae5b66ba86600cca6b8ba8");
    }

    #[test]
    fn dates_format_like_aws() {
        assert_eq!(clf_time(1_583_348_638_390), "04/Mar/2020:19:03:58 +0000");
        assert_eq!(iso_time(1_444_323_186), "2015-10-08T16:53:06Z");
        assert_eq!(iso_time(951_782_400), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn function_url_event_encodes_query_and_joins_duplicates() {
        let event = function_url_event(
            "post",
            "/webhook/graph",
            &[("validationToken", "a b&c"), ("x", "1"), ("x", "2")],
            &[("Content-Type", "application/json"), ("Cookie", "a=1; b=2")],
            Some("{}"),
        );
        assert_eq!(event["rawQueryString"], "validationToken=a%20b%26c&x=1&x=2");
        assert_eq!(event["queryStringParameters"]["x"], "1,2");
        assert_eq!(event["queryStringParameters"]["validationToken"], "a b&c");
        assert_eq!(event["headers"]["content-type"], "application/json");
        assert_eq!(event["headers"]["content-length"], "2");
        assert_eq!(event["cookies"], json!(["a=1", "b=2"]));
        assert_eq!(event["requestContext"]["http"]["method"], "POST");
        assert_eq!(event["requestContext"]["accountId"], "anonymous");
        assert_eq!(event["body"], "{}");
        assert_eq!(event["isBase64Encoded"], false);
    }

    #[test]
    fn function_url_event_omits_absent_parts() {
        let event = function_url_event("GET", "/", &[], &[], None);
        assert_eq!(event["rawQueryString"], "");
        assert!(event.get("queryStringParameters").is_none());
        assert!(event.get("cookies").is_none());
        assert!(event.get("body").is_none());
    }

    #[test]
    fn sqs_records_carry_fifo_attributes() {
        let event = sqs_fifo_event(&[("b1", "g1", "m1"), ("b2", "g1", "m2")]);
        let records = event["Records"].as_array().cloned().unwrap_or_default();
        assert_eq!(records.len(), 2);
        assert_eq!(records[0]["attributes"]["MessageGroupId"], "g1");
        assert_eq!(records[1]["messageId"], "m2");
        assert_eq!(records[0]["awsRegion"], "eu-west-1");
        let seq = |r: &Value| {
            r["attributes"]["SequenceNumber"]
                .as_str()
                .and_then(|s| s.parse::<u128>().ok())
                .unwrap_or(0)
        };
        assert!(seq(&records[1]) > seq(&records[0]));
    }
}

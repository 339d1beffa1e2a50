//! What a Function URL client would receive, read back from a function's response payload.

use anyhow::{anyhow, bail, Context as _};
use base64::Engine as _;
use serde_json::Value;

/// A Function URL HTTP response, decoded from the function's result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionUrlResponse {
    pub status: u16,
    /// Header names lowercased; `multiValueHeaders` entries are listed one value each.
    pub headers: Vec<(String, String)>,
    /// `Set-Cookie` values, from the `cookies` field.
    pub cookies: Vec<String>,
    /// The body, base64-decoded when `isBase64Encoded` was true.
    pub body: Vec<u8>,
}

impl FunctionUrlResponse {
    /// Reads a response payload the way Function URLs do: an object with `statusCode` is an
    /// HTTP response (what `lambda_http` returns); any other JSON is a 200 with that JSON as
    /// an `application/json` body.
    pub fn parse(payload: &Value) -> anyhow::Result<Self> {
        let Some(status) = payload.get("statusCode") else {
            return Ok(Self {
                status: 200,
                headers: vec![("content-type".into(), "application/json".into())],
                cookies: Vec::new(),
                body: serde_json::to_vec(payload)?,
            });
        };
        let status = status
            .as_u64()
            .and_then(|s| u16::try_from(s).ok())
            .ok_or_else(|| anyhow!("statusCode is not an HTTP status: {status}"))?;

        let mut headers = Vec::new();
        if let Some(map) = payload.get("headers").and_then(Value::as_object) {
            for (name, value) in map {
                headers.push((name.to_ascii_lowercase(), header_value(value)?));
            }
        }
        if let Some(map) = payload.get("multiValueHeaders").and_then(Value::as_object) {
            for (name, values) in map {
                let values = values
                    .as_array()
                    .ok_or_else(|| anyhow!("multiValueHeaders.{name} is not an array"))?;
                for value in values {
                    let entry = (name.to_ascii_lowercase(), header_value(value)?);
                    // lambda_http may repeat a header in both maps; AWS would send it once.
                    if !headers.contains(&entry) {
                        headers.push(entry);
                    }
                }
            }
        }

        let cookies = match payload.get("cookies") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(items)) => items
                .iter()
                .map(|c| {
                    c.as_str()
                        .map(str::to_owned)
                        .ok_or_else(|| anyhow!("cookie is not a string: {c}"))
                })
                .collect::<anyhow::Result<_>>()?,
            Some(other) => bail!("cookies is not an array: {other}"),
        };

        let base64 = payload
            .get("isBase64Encoded")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let body = match payload.get("body") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::String(text)) if base64 => base64::engine::general_purpose::STANDARD
                .decode(text)
                .context("body is marked isBase64Encoded but is not base64")?,
            Some(Value::String(text)) => text.as_bytes().to_vec(),
            Some(other) => bail!("body is not a string: {other}"),
        };

        Ok(Self {
            status,
            headers,
            cookies,
            body,
        })
    }

    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as UTF-8 text.
    pub fn body_text(&self) -> anyhow::Result<&str> {
        std::str::from_utf8(&self.body).context("response body is not UTF-8")
    }

    /// The body parsed as JSON.
    pub fn body_json(&self) -> anyhow::Result<Value> {
        serde_json::from_slice(&self.body).context("response body is not JSON")
    }

    /// The cookie named `name`, as its full `Set-Cookie` value.
    pub fn cookie(&self, name: &str) -> Option<&str> {
        self.cookies
            .iter()
            .find(|c| c.split_once('=').is_some_and(|(n, _)| n.trim() == name))
            .map(String::as_str)
    }
}

fn header_value(value: &Value) -> anyhow::Result<String> {
    match value {
        Value::String(s) => Ok(s.clone()),
        // Function URLs accept numbers and booleans and send their text.
        Value::Number(n) => Ok(n.to_string()),
        Value::Bool(b) => Ok(b.to_string()),
        other => bail!("header value is not a string: {other}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_lambda_http_output() {
        let payload = json!({
            "statusCode": 302,
            "headers": {"Location": "https://example.com/", "content-type": "text/plain"},
            "multiValueHeaders": {},
            "body": "moved",
            "isBase64Encoded": false,
            "cookies": ["state=abc; HttpOnly; Secure", "other=1"]
        });
        let response = FunctionUrlResponse::parse(&payload).unwrap();
        assert_eq!(response.status, 302);
        assert_eq!(response.header("location"), Some("https://example.com/"));
        assert_eq!(response.body_text().unwrap(), "moved");
        assert_eq!(
            response.cookie("state"),
            Some("state=abc; HttpOnly; Secure")
        );
    }

    #[test]
    fn decodes_base64_bodies_and_plain_json() {
        let payload = json!({"statusCode": 200, "body": "aGk=", "isBase64Encoded": true});
        assert_eq!(FunctionUrlResponse::parse(&payload).unwrap().body, b"hi");
        let plain = FunctionUrlResponse::parse(&json!({"ok": true})).unwrap();
        assert_eq!(plain.status, 200);
        assert_eq!(plain.body_json().unwrap(), json!({"ok": true}));
    }
}

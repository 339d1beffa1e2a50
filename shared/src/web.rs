//! A framework-free HTTP request and response, so the auth (and webhook) handlers run the same
//! behind a Lambda Function URL and behind `calsync serve`.

#[derive(Debug, Clone, Default)]
pub struct WebRequest {
    pub method: String,
    pub path: String,
    /// The raw query string, without `?`.
    pub query: String,
    /// Lowercase names.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// Header pairs as [`WebRequest::headers`] keeps them: names lowercased, values that are not
/// visible ASCII (what `http::HeaderValue::to_str` refuses) left out. Both front ends (the
/// Lambda adapter and `calsync serve`) feed their header maps through it.
pub fn header_pairs<'a>(
    headers: impl IntoIterator<Item = (&'a str, &'a [u8])>,
) -> Vec<(String, String)> {
    headers
        .into_iter()
        .filter(|(_, value)| value.iter().all(|&b| b == b'\t' || (32..127).contains(&b)))
        .filter_map(|(name, value)| {
            std::str::from_utf8(value)
                .ok()
                .map(|v| (name.to_ascii_lowercase(), v.to_owned()))
        })
        .collect()
}

impl WebRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn query_pairs(&self) -> Vec<(String, String)> {
        url::form_urlencoded::parse(self.query.as_bytes())
            .into_owned()
            .collect()
    }

    /// Form fields of an `application/x-www-form-urlencoded` body (empty otherwise).
    pub fn form_pairs(&self) -> Vec<(String, String)> {
        let is_form = self
            .header("content-type")
            .is_some_and(|ct| ct.starts_with("application/x-www-form-urlencoded"));
        if !is_form {
            return Vec::new();
        }
        url::form_urlencoded::parse(&self.body)
            .into_owned()
            .collect()
    }
}

/// Parameters where each name may appear at most once: a repeated name is refused rather than
/// guessed at, since these carry signatures.
pub struct Params(Vec<(String, String)>);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ParamError {
    #[error("parameter {0} is missing")]
    Missing(&'static str),
    #[error("parameter {0} is given more than once")]
    Repeated(&'static str),
    #[error("parameter {0} is too long")]
    TooLong(&'static str),
}

/// Longer values than this are refused before any work.
const MAX_PARAM_LEN: usize = 4096;

impl Params {
    pub fn new(pairs: Vec<(String, String)>) -> Self {
        Self(pairs)
    }

    pub fn optional(&self, name: &'static str) -> Result<Option<&str>, ParamError> {
        let mut values = self
            .0
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_str());
        let first = values.next();
        if values.next().is_some() {
            return Err(ParamError::Repeated(name));
        }
        match first {
            Some(v) if v.len() > MAX_PARAM_LEN => Err(ParamError::TooLong(name)),
            other => Ok(other),
        }
    }

    pub fn required(&self, name: &'static str) -> Result<&str, ParamError> {
        self.optional(name)?.ok_or(ParamError::Missing(name))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

/// Headers every page carries: nothing cached, nothing framed, no scripts, no referrer leaks.
fn page_headers(content_type: &str) -> Vec<(String, String)> {
    vec![
        ("content-type".into(), content_type.into()),
        ("cache-control".into(), "no-store".into()),
        ("x-content-type-options".into(), "nosniff".into()),
        ("referrer-policy".into(), "no-referrer".into()),
        (
            "content-security-policy".into(),
            "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'".into(),
        ),
    ]
}

impl WebResponse {
    pub fn html(status: u16, body: String) -> Self {
        Self {
            status,
            headers: page_headers("text/html; charset=utf-8"),
            body,
        }
    }

    pub fn text(status: u16, body: impl Into<String>) -> Self {
        Self {
            status,
            headers: page_headers("text/plain; charset=utf-8"),
            body: body.into(),
        }
    }

    pub fn redirect(location: &str) -> Self {
        let mut headers = page_headers("text/plain; charset=utf-8");
        headers.push(("location".into(), location.into()));
        Self {
            status: 302,
            headers,
            body: String::new(),
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Escapes text for HTML element content and quoted attribute values.
pub fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {

    #[test]
    fn header_pairs_lowercase_names_and_drop_unreadable_values() {
        let pairs = header_pairs([
            ("Content-Type", b"application/json".as_slice()),
            ("X-Odd", b"caf\xc3\xa9".as_slice()),
            ("X-Tab", b"a\tb".as_slice()),
        ]);
        assert_eq!(
            pairs,
            vec![
                ("content-type".to_owned(), "application/json".to_owned()),
                ("x-tab".to_owned(), "a\tb".to_owned()),
            ]
        );
    }

    use super::*;

    #[test]
    fn repeated_and_missing_params_are_refused() {
        let p = Params::new(vec![("a".into(), "1".into()), ("a".into(), "2".into())]);
        assert_eq!(p.optional("a"), Err(ParamError::Repeated("a")));
        assert_eq!(p.required("b"), Err(ParamError::Missing("b")));
    }

    #[test]
    fn html_is_escaped() {
        assert_eq!(
            escape_html("<a href=\"x\">'&"),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;"
        );
    }
}

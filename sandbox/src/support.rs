//! Small helpers shared by every part of the sandbox: ids, random tokens, timestamps, HTML.

use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rand::RngCore;

/// A random version-4 GUID in the lowercase 8-4-4-4-12 form Microsoft uses for ids.
pub(crate) fn new_guid() -> String {
    let mut bytes = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut bytes);
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex: String = bytes.iter().map(|byte| format!("{byte:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// `len_bytes` random bytes as URL-safe base64 without padding (safe in URLs and forms).
pub(crate) fn random_token(len_bytes: usize) -> String {
    let mut bytes = vec![0u8; len_bytes];
    rand::thread_rng().fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

pub(crate) fn base64url(data: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(data)
}

pub(crate) fn unix_seconds(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs())
        .unwrap_or(0)
}

/// `2016-01-09 02:02:12Z`: the timestamp format of Entra ID error bodies.
pub(crate) fn aad_timestamp(time: SystemTime) -> String {
    let utc = UtcTime::from_unix(unix_seconds(time));
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}Z",
        utc.year, utc.month, utc.day, utc.hour, utc.minute, utc.second
    )
}

/// `2016-01-09T02:02:12`: the `innerError.date` format of Microsoft Graph error bodies.
pub(crate) fn graph_timestamp(time: SystemTime) -> String {
    let utc = UtcTime::from_unix(unix_seconds(time));
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
        utc.year, utc.month, utc.day, utc.hour, utc.minute, utc.second
    )
}

struct UtcTime {
    year: i64,
    month: u32,
    day: u32,
    hour: u64,
    minute: u64,
    second: u64,
}

impl UtcTime {
    /// Proleptic Gregorian calendar from Unix seconds (Howard Hinnant's days-to-civil),
    /// so the sandbox needs no date crate for two timestamp formats.
    fn from_unix(seconds: u64) -> Self {
        let days = (seconds / 86_400) as i64;
        let second_of_day = seconds % 86_400;
        let shifted = days + 719_468;
        let era = shifted.div_euclid(146_097);
        let day_of_era = shifted.rem_euclid(146_097);
        let year_of_era =
            (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
        let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
        let month_from_march = (5 * day_of_year + 2) / 153;
        let day = (day_of_year - (153 * month_from_march + 2) / 5 + 1) as u32;
        let month = if month_from_march < 10 {
            month_from_march + 3
        } else {
            month_from_march - 9
        } as u32;
        let year = year_of_era + era * 400 + i64::from(month <= 2);
        UtcTime {
            year,
            month,
            day,
            hour: second_of_day / 3_600,
            minute: second_of_day % 3_600 / 60,
            second: second_of_day % 60,
        }
    }
}

/// Escapes text for HTML element content and double-quoted attribute values.
pub(crate) fn html_escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for character in text.chars() {
        match character {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            other => escaped.push(other),
        }
    }
    escaped
}

/// A body that sends its first bytes and then fails, so the server aborts the connection
/// in the middle of the answer.
struct CutShort {
    first: Option<axum::body::Bytes>,
}

impl http_body::Body for CutShort {
    type Data = axum::body::Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        std::task::Poll::Ready(Some(match self.first.take() {
            Some(bytes) => Ok(http_body::Frame::data(bytes)),
            None => Err(std::io::Error::new(
                std::io::ErrorKind::ConnectionReset,
                "connection dropped on purpose",
            )),
        }))
    }
}

/// An answer that sends `first` and then drops the connection: the client sees a transport
/// error after the server did the work.
pub(crate) fn cut_answer(
    first: axum::body::Bytes,
    content_type: &'static str,
) -> axum::response::Response {
    let mut response =
        axum::response::Response::new(axum::body::Body::new(CutShort { first: Some(first) }));
    response.headers_mut().insert(
        axum::http::header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static(content_type),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn formats_timestamps_like_microsoft() {
        // 2016-01-09 02:02:12 UTC, the moment in Microsoft's sample error.
        let moment = UNIX_EPOCH + Duration::from_secs(1_452_304_932);
        assert_eq!(aad_timestamp(moment), "2016-01-09 02:02:12Z");
        assert_eq!(graph_timestamp(moment), "2016-01-09T02:02:12");
        let leap_day = UNIX_EPOCH + Duration::from_secs(951_782_400);
        assert_eq!(aad_timestamp(leap_day), "2000-02-29 00:00:00Z");
    }

    #[test]
    fn guids_have_the_microsoft_shape() {
        let guid = new_guid();
        assert_eq!(guid.len(), 36);
        assert_eq!(guid.matches('-').count(), 4);
        assert_eq!(&guid[14..15], "4");
    }
}

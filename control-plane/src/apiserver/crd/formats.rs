//! String `format`s a custom resource is checked against. Formats not listed here (int32, int64,
//! float, double, password, duration, email, ...) are accepted in schemas and not enforced.

use std::net::{Ipv4Addr, Ipv6Addr};

use base64::Engine;

/// Whether `text` conforms to `format`; unknown formats always conform.
pub fn conforms(format: &str, text: &str) -> bool {
    match format {
        "date-time" | "datetime" => is_date_time(text),
        "date" => chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d").is_ok(),
        "byte" => base64::engine::general_purpose::STANDARD
            .decode(text)
            .is_ok(),
        "uuid" => uuid::Uuid::parse_str(text).is_ok() && text.len() == 36,
        "ipv4" => text.parse::<Ipv4Addr>().is_ok(),
        "ipv6" => text.parse::<Ipv6Addr>().is_ok(),
        "cidr" => text.parse::<ipnet::IpNet>().is_ok(),
        "hostname" => is_hostname(text),
        _ => true,
    }
}

/// RFC 3339, or a local date-time without zone (`2026-01-02T03:04:05`), as kube accepts.
fn is_date_time(text: &str) -> bool {
    chrono::DateTime::parse_from_rfc3339(text).is_ok()
        || chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f").is_ok()
}

/// RFC 1123 host name: dot-separated labels of letters, digits and inner hyphens.
fn is_hostname(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 253
        && text.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}

#[cfg(test)]
mod tests {
    use super::conforms;

    #[test]
    fn known_formats_are_checked_and_unknown_ones_accepted() {
        let cases = [
            ("date-time", "2026-01-02T03:04:05.5+01:00", true),
            ("date-time", "2026-01-02T03:04:05", true),
            ("date-time", "2026-13-02", false),
            ("date", "2026-01-02", true),
            ("date", "02/01/2026", false),
            ("byte", "aGVsbG8=", true),
            ("byte", "not base64!", false),
            ("uuid", "0b7e6d2a-3c57-4a8e-9d47-5f9d0c1d2e3f", true),
            ("uuid", "0b7e6d2a3c574a8e9d475f9d0c1d2e3f", false),
            ("ipv4", "10.0.0.1", true),
            ("ipv4", "10.0.0.256", false),
            ("ipv6", "fd00::1", true),
            ("cidr", "10.0.0.0/8", true),
            ("cidr", "10.0.0.0", false),
            ("hostname", "a-b.example.com", true),
            ("hostname", "-bad.example.com", false),
            ("int32", "anything", true),
            ("duration", "anything", true),
        ];
        for (format, text, ok) in cases {
            assert_eq!(conforms(format, text), ok, "{format} {text}");
        }
    }
}

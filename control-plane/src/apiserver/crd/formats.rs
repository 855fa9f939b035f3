//! String `format`s a custom resource is checked against. Formats not listed here (int32, int64,
//! float, double, password, duration, email, ...) are accepted in schemas and not enforced.

use std::net::{Ipv4Addr, Ipv6Addr};

use base64::Engine;

/// Whether `text` conforms to `format`; unknown formats always conform.
pub fn conforms(format: &str, text: &str) -> bool {
    match format {
        "date-time" | "datetime" => chrono::DateTime::parse_from_rfc3339(text).is_ok(),
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

//! The files a sandbox shares with its containers: `/etc/resolv.conf` from the CRI DNSConfig (or
//! the host's), and `/etc/hostname`.
//!
//! Owns rendering and writing them into the sandbox's directory; nothing else.

use std::path::Path;

use k8s_cri::v1 as cri;

/// resolv.conf text for a DNSConfig; `None` when the request carries no DNS settings
/// (the host's file is copied instead).
pub fn resolv_conf(dns: Option<&cri::DnsConfig>) -> Option<String> {
    let dns = dns?;
    if dns.servers.is_empty() && dns.searches.is_empty() && dns.options.is_empty() {
        return None;
    }
    let mut s = String::new();
    if !dns.searches.is_empty() {
        s.push_str(&format!("search {}\n", dns.searches.join(" ")));
    }
    for server in &dns.servers {
        s.push_str(&format!("nameserver {server}\n"));
    }
    if !dns.options.is_empty() {
        s.push_str(&format!("options {}\n", dns.options.join(" ")));
    }
    Some(s)
}

/// Writes `resolv.conf` and `hostname` into `dir`.
pub fn write(dir: &Path, dns: Option<&cri::DnsConfig>, hostname: &str) -> std::io::Result<()> {
    let resolv = match resolv_conf(dns) {
        Some(text) => text,
        None => std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default(),
    };
    std::fs::write(dir.join("resolv.conf"), resolv)?;
    std::fs::write(dir.join("hostname"), format!("{hostname}\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_dns_config() {
        let dns = cri::DnsConfig {
            servers: vec!["10.96.0.10".into()],
            searches: vec![
                "default.svc.cluster.local".into(),
                "svc.cluster.local".into(),
            ],
            options: vec!["ndots:5".into()],
        };
        assert_eq!(
            resolv_conf(Some(&dns)).as_deref(),
            Some(
                "search default.svc.cluster.local svc.cluster.local\nnameserver 10.96.0.10\noptions ndots:5\n"
            )
        );
        assert_eq!(resolv_conf(None), None);
        assert_eq!(resolv_conf(Some(&cri::DnsConfig::default())), None);
    }
}

//! Image references as the kubelet and containerd spell them, parsed and normalized.
//!
//! Owns the grammar (distribution's `reference` package, restricted to sha256 digests) and the
//! Docker Hub defaults: `busybox` is `docker.io/library/busybox:latest`. Pure: no I/O. A
//! reference with both a tag and a digest keeps only the digest, like `ParseDockerRef`.

use std::fmt;

/// The registry a name without a domain lives on.
pub const DEFAULT_DOMAIN: &str = "docker.io";
const LEGACY_DOMAIN: &str = "index.docker.io";
const OFFICIAL_REPO_PREFIX: &str = "library/";
const DEFAULT_TAG: &str = "latest";
const MAX_NAME_LEN: usize = 255;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid image reference {reference:?}: {reason}")]
pub struct Error {
    pub reference: String,
    pub reason: String,
}

/// A normalized reference: `domain/path` plus a tag or a digest (never neither).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ImageReference {
    /// Registry host, with port if any: `docker.io`, `127.0.0.1:5000`.
    pub domain: String,
    /// Repository path on that registry: `library/busybox`.
    pub path: String,
    /// The tag, absent when the reference has a digest.
    pub tag: Option<String>,
    /// `sha256:<64 hex>`.
    pub digest: Option<String>,
}

impl ImageReference {
    /// Parses and normalizes `s`.
    pub fn parse(s: &str) -> Result<ImageReference, Error> {
        let fail = |reason: String| Error {
            reference: s.to_string(),
            reason,
        };
        if s.is_empty() {
            return Err(fail("it is empty".into()));
        }
        if let Some(c) = s.chars().find(|c| c.is_whitespace() || c.is_control()) {
            return Err(fail(format!("it contains the character {c:?}")));
        }
        let (rest, digest) = match s.split_once('@') {
            Some((rest, d)) => (rest, Some(parse_digest(d).map_err(&fail)?)),
            None => (s, None),
        };
        // The tag follows the last ':' after the last '/' (a ':' before it is a port).
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].find(':') {
            Some(i) => {
                let tag = &rest[last_slash + i + 1..];
                check_tag(tag).map_err(&fail)?;
                (&rest[..last_slash + i], Some(tag.to_string()))
            }
            None => (rest, None),
        };
        if name.is_empty() {
            return Err(fail("the repository name is empty".into()));
        }
        if name.len() > MAX_NAME_LEN {
            return Err(fail(format!(
                "the repository name is longer than {MAX_NAME_LEN} characters"
            )));
        }
        let (domain, path) = split_domain(name);
        check_domain(&domain).map_err(&fail)?;
        for component in path.split('/') {
            check_component(component).map_err(&fail)?;
        }
        let tag = match (&digest, tag) {
            (Some(_), _) => None,
            (None, Some(t)) => Some(t),
            (None, None) => Some(DEFAULT_TAG.to_string()),
        };
        Ok(ImageReference {
            domain,
            path,
            tag,
            digest,
        })
    }

    /// `domain/path`, e.g. `docker.io/library/busybox`.
    pub fn name(&self) -> String {
        format!("{}/{}", self.domain, self.path)
    }

    /// `name@digest` with another digest (a repo digest).
    pub fn with_digest(&self, digest: &str) -> String {
        format!("{}@{digest}", self.name())
    }
}

impl fmt::Display for ImageReference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.name())?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

/// Checks `sha256:<64 lowercase hex>`; returns it unchanged.
pub fn parse_digest(d: &str) -> Result<String, String> {
    let Some((algo, hex)) = d.split_once(':') else {
        return Err(format!("digest {d:?} is not of the form sha256:<hex>"));
    };
    if algo != "sha256" {
        return Err(format!(
            "digest {d:?} uses algorithm {algo:?}; only sha256 is supported"
        ));
    }
    if hex.len() != 64
        || !hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return Err(format!(
            "digest {d:?} does not have 64 lowercase hex characters"
        ));
    }
    Ok(d.to_string())
}

fn split_domain(name: &str) -> (String, String) {
    let (domain, path) = match name.split_once('/') {
        Some((first, rest))
            if first.contains('.')
                || first.contains(':')
                || first == "localhost"
                || first.chars().any(|c| c.is_ascii_uppercase()) =>
        {
            (first.to_string(), rest.to_string())
        }
        _ => (DEFAULT_DOMAIN.to_string(), name.to_string()),
    };
    let domain = if domain == LEGACY_DOMAIN {
        DEFAULT_DOMAIN.to_string()
    } else {
        domain
    };
    let path = if domain == DEFAULT_DOMAIN && !path.contains('/') {
        format!("{OFFICIAL_REPO_PREFIX}{path}")
    } else {
        path
    };
    (domain, path)
}

fn check_domain(domain: &str) -> Result<(), String> {
    let (host, port) = match domain.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || domain.starts_with('[') => (h, Some(p)),
        _ => (domain, None),
    };
    if let Some(p) = port
        && (p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(format!("registry {domain:?} has an invalid port {p:?}"));
    }
    if host.starts_with('[') && host.ends_with(']') {
        return Ok(()); // an IPv6 literal
    }
    let ok = !host.is_empty()
        && host.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        });
    if ok {
        Ok(())
    } else {
        Err(format!("registry host {host:?} is not a valid host name"))
    }
}

/// A path component: `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`.
fn check_component(c: &str) -> Result<(), String> {
    if c.is_empty() {
        return Err("the repository path has an empty component".into());
    }
    if c.chars().any(|ch| ch.is_ascii_uppercase()) {
        return Err(format!(
            "repository component {c:?} has uppercase letters (repository names must be lowercase)"
        ));
    }
    let bytes = c.as_bytes();
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let mut i = 0;
    let bad = || {
        format!(
            "repository component {c:?} is not valid (lowercase letters, digits and single separators . _ __ - only)"
        )
    };
    loop {
        let start = i;
        while i < bytes.len() && alnum(bytes[i]) {
            i += 1;
        }
        if i == start {
            return Err(bad());
        }
        if i == bytes.len() {
            return Ok(());
        }
        let sep_start = i;
        while i < bytes.len() && !alnum(bytes[i]) {
            i += 1;
        }
        let sep = &c[sep_start..i];
        let valid = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|b| b == b'-');
        if !valid {
            return Err(bad());
        }
    }
}

/// A tag: `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
fn check_tag(tag: &str) -> Result<(), String> {
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let b = tag.as_bytes();
    let ok = !b.is_empty()
        && b.len() <= 128
        && word(b[0])
        && b[1..].iter().all(|&c| word(c) || c == b'.' || c == b'-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "tag {tag:?} is not valid (1 to 128 of letters, digits, _ . -, not starting with . or -)"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn normalizes_like_containerd() {
        let cases = [
            ("busybox", "docker.io/library/busybox:latest"),
            ("busybox:1.36", "docker.io/library/busybox:1.36"),
            ("library/busybox", "docker.io/library/busybox:latest"),
            (
                "index.docker.io/library/busybox",
                "docker.io/library/busybox:latest",
            ),
            ("docker.io/busybox", "docker.io/library/busybox:latest"),
            ("user/app:v1", "docker.io/user/app:v1"),
            ("registry.k8s.io/pause:3.10", "registry.k8s.io/pause:3.10"),
            (
                "127.0.0.1:5000/keel-test/busybox:latest",
                "127.0.0.1:5000/keel-test/busybox:latest",
            ),
            (
                "127.0.0.1:5000/keel-test/busybox",
                "127.0.0.1:5000/keel-test/busybox:latest",
            ),
            ("localhost/app", "localhost/app:latest"),
            ("Example.COM/app", "Example.COM/app:latest"),
            ("a.b/c__d/e-f/g.h_i---j", "a.b/c__d/e-f/g.h_i---j:latest"),
        ];
        for (input, want) in cases {
            let r = ImageReference::parse(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(r.to_string(), want, "{input}");
        }
        let r = ImageReference::parse(&format!("busybox@{D}")).expect("digest");
        assert_eq!(r.to_string(), format!("docker.io/library/busybox@{D}"));
        assert_eq!(r.tag, None);
        let r = ImageReference::parse(&format!("127.0.0.1:5000/x/y:v1@{D}")).expect("both");
        assert_eq!(r.to_string(), format!("127.0.0.1:5000/x/y@{D}"));
        assert_eq!(r.domain, "127.0.0.1:5000");
        assert_eq!(r.path, "x/y");
        assert_eq!(r.with_digest(D), format!("127.0.0.1:5000/x/y@{D}"));
    }

    #[test]
    fn malformed_references_say_what_is_wrong() {
        let cases = [
            ("", "empty"),
            ("busy box", "' '"),
            ("Busybox", "uppercase"),
            ("docker.io/Library/busybox", "uppercase"),
            ("busybox::latest", "tag \":latest\""),
            ("busybox:", "tag \"\""),
            ("busybox@sha256:abc", "64 lowercase hex"),
            ("busybox@md5:abc", "only sha256"),
            ("busybox@", "sha256:<hex>"),
            (":latest", "repository name is empty"),
            ("a//b", "empty component"),
            ("a/-b", "not valid"),
            ("a/b_", "not valid"),
            ("a/b...c", "not valid"),
            ("host:port/app", "invalid port"),
            ("-bad.host/app", "not a valid host name"),
            ("busybox:-x", "tag \"-x\""),
        ];
        for (input, needle) in cases {
            let err = ImageReference::parse(input).expect_err(input).to_string();
            assert!(
                err.contains(needle) && err.contains(&format!("{input:?}")),
                "{input:?} gave {err:?}, want it to mention {needle:?}"
            );
        }
    }
}

//! The registry documents keel-cri reads: image manifests (OCI and Docker v2 schema 2), indexes
//! and manifest lists, and the image config. Pure: parsing and platform selection only.
//!
//! Only the fields keel-cri uses are modelled; the raw bytes are kept in the blob store, so
//! verbose ImageStatus can show the whole config.

use serde::{Deserialize, Serialize};

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

/// Every manifest type keel-cri accepts, for the `Accept` header.
pub const ACCEPTED: &[&str] = &[
    OCI_INDEX,
    DOCKER_MANIFEST_LIST,
    OCI_MANIFEST,
    DOCKER_MANIFEST,
];

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    #[serde(default)]
    pub media_type: String,
    pub digest: String,
    #[serde(default)]
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct Platform {
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageManifest {
    #[serde(default)]
    pub media_type: Option<String>,
    pub config: Descriptor,
    #[serde(default)]
    pub layers: Vec<Descriptor>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Index {
    #[serde(default)]
    pub media_type: Option<String>,
    pub manifests: Vec<Descriptor>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Manifest {
    Image(ImageManifest),
    Index(Index),
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Probe {
    #[serde(default)]
    schema_version: Option<i64>,
    #[serde(default)]
    media_type: Option<String>,
    #[serde(default)]
    manifests: Option<serde_json::Value>,
}

/// Parses a manifest or index, telling them apart by `mediaType` (or, when absent as OCI
/// allows, by the presence of `manifests`).
pub fn parse(bytes: &[u8]) -> Result<Manifest, String> {
    let probe: Probe =
        serde_json::from_slice(bytes).map_err(|e| format!("manifest is not valid JSON: {e}"))?;
    if probe.schema_version != Some(2) {
        return Err(format!(
            "manifest schemaVersion {:?} is not supported (only 2)",
            probe.schema_version
        ));
    }
    let is_index = match probe.media_type.as_deref() {
        Some(OCI_INDEX) | Some(DOCKER_MANIFEST_LIST) => true,
        Some(OCI_MANIFEST) | Some(DOCKER_MANIFEST) => false,
        Some(other) => return Err(format!("manifest media type {other:?} is not supported")),
        None => probe.manifests.is_some(),
    };
    if is_index {
        serde_json::from_slice(bytes)
            .map(Manifest::Index)
            .map_err(|e| format!("invalid image index: {e}"))
    } else {
        serde_json::from_slice(bytes)
            .map(Manifest::Image)
            .map_err(|e| format!("invalid image manifest: {e}"))
    }
}

/// The platform this machine runs: (`linux`, GOARCH name, arm variant).
pub fn host_platform() -> Platform {
    let architecture = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "arm" => "arm",
        "powerpc64" => "ppc64le",
        other => other,
    };
    Platform {
        architecture: architecture.to_string(),
        os: "linux".to_string(),
        variant: (architecture == "arm64").then(|| "v8".to_string()),
    }
}

/// Picks the index entry for `want`: same os and architecture, preferring an exact variant
/// match, then an entry without a variant, then the first other variant (containerd's order for
/// arm64 treats a missing variant as v8).
pub fn select<'a>(index: &'a Index, want: &Platform) -> Option<&'a Descriptor> {
    let candidates: Vec<&Descriptor> = index
        .manifests
        .iter()
        .filter(|d| {
            d.platform
                .as_ref()
                .is_some_and(|p| p.os == want.os && p.architecture == want.architecture)
        })
        .collect();
    let variant = |d: &Descriptor| d.platform.as_ref().and_then(|p| p.variant.clone());
    candidates
        .iter()
        .find(|d| variant(d) == want.variant)
        .or_else(|| candidates.iter().find(|d| variant(d).is_none()))
        .or_else(|| candidates.first())
        .copied()
}

/// The image config, as much of it as keel-cri uses.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
pub struct ImageConfigFile {
    #[serde(default)]
    pub config: Option<RunConfig>,
    #[serde(default)]
    pub rootfs: Option<RootFs>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct RunConfig {
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub env: Option<Vec<String>>,
    #[serde(default)]
    pub entrypoint: Option<Vec<String>>,
    #[serde(default)]
    pub cmd: Option<Vec<String>>,
    #[serde(default)]
    pub working_dir: Option<String>,
    #[serde(default)]
    pub stop_signal: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
pub struct RootFs {
    #[serde(default)]
    pub diff_ids: Vec<String>,
}

pub fn parse_config(bytes: &[u8]) -> Result<ImageConfigFile, String> {
    serde_json::from_slice(bytes).map_err(|e| format!("invalid image config: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(arch: &str, variant: Option<&str>, digest: &str) -> serde_json::Value {
        let mut p = serde_json::json!({"os": "linux", "architecture": arch});
        if let Some(v) = variant {
            p["variant"] = v.into();
        }
        serde_json::json!({"mediaType": OCI_MANIFEST, "digest": digest, "size": 1, "platform": p})
    }

    fn index(entries: Vec<serde_json::Value>, media_type: Option<&str>) -> Index {
        let mut v = serde_json::json!({"schemaVersion": 2, "manifests": entries});
        if let Some(m) = media_type {
            v["mediaType"] = m.into();
        }
        match parse(v.to_string().as_bytes()).expect("parses") {
            Manifest::Index(i) => i,
            other => panic!("not an index: {other:?}"),
        }
    }

    fn plat(arch: &str, variant: Option<&str>) -> Platform {
        Platform {
            architecture: arch.into(),
            os: "linux".into(),
            variant: variant.map(String::from),
        }
    }

    #[test]
    fn selects_the_platform() {
        let attestation = serde_json::json!({"mediaType": OCI_MANIFEST, "digest": "att", "size": 1,
            "platform": {"os": "unknown", "architecture": "unknown"}});
        let i = index(
            vec![
                entry("arm64", Some("v8"), "arm"),
                entry("amd64", None, "amd"),
                attestation,
            ],
            Some(OCI_INDEX),
        );
        let cases = [
            (plat("amd64", None), Some("amd")),
            (plat("arm64", Some("v8")), Some("arm")),
            (plat("s390x", None), None),
        ];
        for (want, digest) in cases {
            assert_eq!(
                select(&i, &want).map(|d| d.digest.as_str()),
                digest,
                "{want:?}"
            );
        }
        // Docker manifest list, arm64 without variant still matches a v8 host.
        let i = index(
            vec![entry("arm", Some("v7"), "v7"), entry("arm64", None, "a64")],
            Some(DOCKER_MANIFEST_LIST),
        );
        assert_eq!(
            select(&i, &plat("arm64", Some("v8"))).map(|d| d.digest.as_str()),
            Some("a64")
        );
        assert_eq!(
            select(&i, &plat("arm", Some("v6"))).map(|d| d.digest.as_str()),
            Some("v7")
        );
        assert_eq!(host_platform().os, "linux");
    }

    #[test]
    fn parses_each_manifest_kind() {
        let layer =
            |mt: &str| serde_json::json!({"mediaType": mt, "digest": "sha256:l", "size": 3});
        for mt in [Some(OCI_MANIFEST), Some(DOCKER_MANIFEST), None] {
            let mut v = serde_json::json!({"schemaVersion": 2,
                "config": {"mediaType": "c", "digest": "sha256:c", "size": 2},
                "layers": [layer("application/vnd.oci.image.layer.v1.tar+gzip")]});
            if let Some(m) = mt {
                v["mediaType"] = m.into();
            }
            match parse(v.to_string().as_bytes()) {
                Ok(Manifest::Image(m)) => {
                    assert_eq!(m.config.digest, "sha256:c");
                    assert_eq!(m.layers.len(), 1);
                }
                other => panic!("{mt:?}: {other:?}"),
            }
        }
        let bad = [
            (r#"{"schemaVersion":1,"fsLayers":[]}"#, "schemaVersion"),
            (
                r#"{"schemaVersion":2,"mediaType":"text/plain"}"#,
                "text/plain",
            ),
            ("nope", "not valid JSON"),
            (
                r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json"}"#,
                "config",
            ),
        ];
        for (text, needle) in bad {
            let e = parse(text.as_bytes()).expect_err(text);
            assert!(e.contains(needle), "{text}: {e}");
        }
    }

    #[test]
    fn config_fields() {
        let c = parse_config(
            br#"{"architecture":"amd64","config":{"User":"keel","Env":["A=1"],"Entrypoint":["/bin/sh","-c"],
                "Cmd":null,"WorkingDir":"/home/keel","StopSignal":"SIGUSR1"},
                "rootfs":{"type":"layers","diff_ids":["sha256:a","sha256:b"]}}"#,
        )
        .expect("config");
        let rc = c.config.expect("run config");
        assert_eq!(rc.user.as_deref(), Some("keel"));
        assert_eq!(rc.cmd, None);
        assert_eq!(rc.stop_signal.as_deref(), Some("SIGUSR1"));
        assert_eq!(c.rootfs.expect("rootfs").diff_ids.len(), 2);
    }
}

//! The catalog: the set of resources served right now (the built-ins plus those of established
//! CustomResourceDefinitions), indexed for routing (group/version/plural) and for kinds
//! (group/kind). Immutable; the server swaps in a new one when CRDs change.

use std::collections::HashMap;

use super::resources::ResourceInfo;

#[derive(Clone, Debug, Default)]
pub struct Catalog {
    resources: Vec<ResourceInfo>,
    by_path: HashMap<(String, String, String), usize>,
    by_kind: HashMap<(String, String, String), usize>,
}

impl Catalog {
    pub fn new(resources: Vec<ResourceInfo>) -> Catalog {
        let mut by_path = HashMap::new();
        let mut by_kind = HashMap::new();
        for (index, resource) in resources.iter().enumerate() {
            by_path.insert(
                (
                    resource.group.clone(),
                    resource.version.clone(),
                    resource.plural.clone(),
                ),
                index,
            );
            by_kind
                .entry((
                    resource.group.clone(),
                    resource.version.clone(),
                    resource.kind.clone(),
                ))
                .or_insert(index);
        }
        Catalog {
            resources,
            by_path,
            by_kind,
        }
    }

    pub fn all(&self) -> &[ResourceInfo] {
        &self.resources
    }

    /// The resource at `/apis/<group>/<version>/<plural>`.
    pub fn lookup(&self, group: &str, version: &str, plural: &str) -> Option<&ResourceInfo> {
        self.by_path
            .get(&(group.to_string(), version.to_string(), plural.to_string()))
            .map(|&index| &self.resources[index])
    }

    /// The resource whose objects have this apiVersion and kind.
    pub fn by_kind(&self, api_version: &str, kind: &str) -> Option<&ResourceInfo> {
        let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
        self.by_kind
            .get(&(group.to_string(), version.to_string(), kind.to_string()))
            .map(|&index| &self.resources[index])
    }

    /// Every served version of one group/plural (a resource served at several versions is
    /// stored once; the first listed version is the storage version).
    pub fn versions_of(&self, group: &str, plural: &str) -> impl Iterator<Item = &ResourceInfo> {
        let group = group.to_string();
        let plural = plural.to_string();
        self.resources
            .iter()
            .filter(move |r| r.group == group && r.plural == plural)
    }
}

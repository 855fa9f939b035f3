//! The root CA publisher ("root-ca-cert-publisher"): every namespace has a ConfigMap
//! `kube-root-ca.crt` whose `ca.crt` is the bundle from `--root-ca-file`, created with the
//! namespace, recreated when deleted and put back when edited. Without `--root-ca-file` it
//! publishes nothing (and says so once).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::PostParams;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Api, Client, ResourceExt};
use tokio_util::sync::CancellationToken;

use super::Context;
use super::serviceaccount::is_active;

/// The ConfigMap's name and key.
pub const CONFIG_MAP: &str = "kube-root-ca.crt";
pub const KEY: &str = "ca.crt";
const DESCRIPTION_ANNOTATION: &str = "kubernetes.io/description";
const DESCRIPTION: &str = "The CA bundle that verifies the kube-apiserver's serving certificate for in-cluster clients (kubernetes.default.svc). Kept up to date by the controller manager.";

struct Publisher {
    client: Client,
    bundle: String,
}

/// Runs until `shutdown`.
pub async fn run(ctx: Arc<Context>, shutdown: CancellationToken) {
    let Some(path) = ctx.config.root_ca_file.clone() else {
        tracing::info!("--root-ca-file is not set; not publishing kube-root-ca.crt");
        shutdown.cancelled().await;
        return;
    };
    let bundle = match std::fs::read_to_string(&path) {
        Ok(bundle) => bundle,
        Err(error) => {
            tracing::error!(path = %path.display(), %error, "reading --root-ca-file; not publishing kube-root-ca.crt");
            shutdown.cancelled().await;
            return;
        }
    };
    let client = ctx.client.clone();
    let publisher = Arc::new(Publisher {
        client: client.clone(),
        bundle,
    });
    Controller::new(
        Api::<Namespace>::all(client.clone()),
        watcher::Config::default(),
    )
    .watches(
        Api::<ConfigMap>::all(client),
        watcher::Config::default(),
        |cm: ConfigMap| {
            (cm.name_any() == CONFIG_MAP)
                .then(|| cm.namespace().map(|ns| ObjectRef::<Namespace>::new(&ns)))
                .flatten()
        },
    )
    .graceful_shutdown_on(shutdown.cancelled_owned())
    .run(reconcile, error_policy, publisher)
    .for_each(|result| async move {
        if let Err(error) = result {
            tracing::debug!(%error, "root-ca-cert-publisher reconcile");
        }
    })
    .await;
}

fn error_policy(_ns: Arc<Namespace>, error: &kube::Error, _p: Arc<Publisher>) -> Action {
    tracing::debug!(%error, "root-ca-cert-publisher sync failed; retrying");
    Action::requeue(Duration::from_secs(1))
}

async fn reconcile(
    namespace: Arc<Namespace>,
    publisher: Arc<Publisher>,
) -> Result<Action, kube::Error> {
    if !is_active(&namespace) {
        return Ok(Action::await_change());
    }
    let name = namespace.name_any();
    let maps: Api<ConfigMap> = Api::namespaced(publisher.client.clone(), &name);
    let wanted = BTreeMap::from([(KEY.to_string(), publisher.bundle.clone())]);
    let result = match maps.get_opt(CONFIG_MAP).await? {
        Some(existing) if existing.data.as_ref() == Some(&wanted) => {
            return Ok(Action::await_change());
        }
        Some(mut existing) => {
            existing.data = Some(wanted);
            existing.binary_data = None;
            existing
                .annotations_mut()
                .insert(DESCRIPTION_ANNOTATION.into(), DESCRIPTION.into());
            maps.replace(CONFIG_MAP, &PostParams::default(), &existing)
                .await
        }
        None => {
            let map = ConfigMap {
                metadata: ObjectMeta {
                    name: Some(CONFIG_MAP.into()),
                    namespace: Some(name.clone()),
                    annotations: Some(BTreeMap::from([(
                        DESCRIPTION_ANNOTATION.to_string(),
                        DESCRIPTION.to_string(),
                    )])),
                    ..Default::default()
                },
                data: Some(wanted),
                ..Default::default()
            };
            maps.create(&PostParams::default(), &map).await
        }
    };
    match result {
        Ok(_) => Ok(Action::await_change()),
        // The namespace started terminating: nothing to publish there any more.
        Err(kube::Error::Api(status)) if status.code == 403 => Ok(Action::await_change()),
        Err(error) => Err(error),
    }
}

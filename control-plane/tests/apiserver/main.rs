//! End-to-end tests of keel-apiserver with the real kubectl (/usr/bin/kubectl): the apiserver
//! runs in-process on a free port over a temporary data dir, and every check goes through
//! kubectl with the admin.kubeconfig the apiserver wrote (or a kubeconfig for another user).

mod auth_apis;
mod controllers_jobs;
mod controllers_network;
mod controllers_workloads;
#[path = "../storage/etcd_process.rs"]
mod etcd_process;
mod harness;
mod kubectl_basics;
mod kubectl_crd;
mod kubectl_protobuf;
mod kubectl_workflows;
mod metrics;
mod policy;
mod scheduling;
mod services;

//! keel-apiserver: the Kubernetes API over HTTPS, above `storage`.

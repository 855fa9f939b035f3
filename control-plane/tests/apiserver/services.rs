//! Service ClusterIP and NodePort allocation through kubectl: distinct addresses, user-chosen
//! ones that only one Service may hold, NodePorts, type changes that claim and release, no
//! leak after a refused write, allocations that survive a restart, and the `kubernetes`
//! Service with its Endpoints and EndpointSlice.

use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use super::harness::{TestApiserver, require_kubectl};

/// A Service manifest; `spec` lines are indented by four spaces, after `ports`.
fn service(name: &str, spec: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\n  namespace: default\nspec:\n  selector:\n    app: {name}\n  ports:\n  - name: http\n    port: 80\n{spec}"
    )
}

fn get(api: &TestApiserver, kind_name: &[&str], path: &str) -> String {
    let jsonpath = format!("jsonpath={{{path}}}");
    let mut args = vec!["get"];
    args.extend_from_slice(kind_name);
    args.extend_from_slice(&["-o", &jsonpath]);
    api.ok(&args, None)
}

fn cluster_ip(api: &TestApiserver, name: &str) -> String {
    get(api, &["service", name], ".spec.clusterIP")
}

fn node_port(api: &TestApiserver, name: &str) -> String {
    get(api, &["service", name], ".spec.ports[0].nodePort")
}

fn in_default_range(ip: &str) -> bool {
    let ip: Ipv4Addr = ip.parse().unwrap_or(Ipv4Addr::UNSPECIFIED);
    let n = u32::from(ip);
    n > u32::from(Ipv4Addr::new(10, 96, 0, 1)) && n < u32::from(Ipv4Addr::new(10, 111, 255, 255))
}

#[test]
fn cluster_ips_are_distinct_and_chosen_ones_exclusive() {
    if !require_kubectl("cluster_ips_are_distinct_and_chosen_ones_exclusive") {
        return;
    }
    let api = TestApiserver::start();
    let mut seen = HashSet::new();
    for i in 0..4 {
        let name = format!("auto-{i}");
        api.ok(&["create", "-f", "-"], Some(&service(&name, "")));
        let ip = cluster_ip(&api, &name);
        assert!(in_default_range(&ip), "{name}: {ip}");
        assert!(seen.insert(ip.clone()), "{ip} handed out twice");
        assert_eq!(get(&api, &["service", &name], ".spec.clusterIPs[0]"), ip);
        assert_eq!(
            get(&api, &["service", &name], ".spec.ipFamilies[0]"),
            "IPv4"
        );
        assert_eq!(
            get(&api, &["service", &name], ".spec.ipFamilyPolicy"),
            "SingleStack"
        );
    }

    api.ok(
        &["create", "-f", "-"],
        Some(&service("fixed", "  clusterIP: 10.96.0.50\n")),
    );
    assert_eq!(cluster_ip(&api, "fixed"), "10.96.0.50");
    let taken = api.fails(
        &["create", "-f", "-"],
        Some(&service("fixed-again", "  clusterIP: 10.96.0.50\n")),
    );
    assert!(
        taken.contains("spec.clusterIPs: Invalid value: []string{\"10.96.0.50\"}: failed to allocate IP 10.96.0.50: provided IP is already allocated"),
        "{taken}"
    );
    let outside = api.fails(
        &["create", "-f", "-"],
        Some(&service("outside", "  clusterIP: 192.168.5.5\n")),
    );
    assert!(
        outside.contains("the provided IP (192.168.5.5) is not in the valid range. The range of valid IPs is 10.96.0.0/12"),
        "{outside}"
    );
    api.fails(&["get", "service", "fixed-again"], None);

    // Released on delete: the address can be taken again.
    api.ok(&["delete", "service", "fixed"], None);
    // The release was the last write: a consistent list must not wait for the watch cache
    // (it waits up to 3 s for a revision it never sees), nor show the records.
    let started = Instant::now();
    let listed = api.ok(
        &["get", "services", "-A", "-o", "name", "--chunk-size=0"],
        None,
    );
    assert!(
        started.elapsed() < Duration::from_millis(2500),
        "list took {:?}",
        started.elapsed()
    );
    assert!(
        !listed.contains("fixed") && listed.contains("service/kubernetes"),
        "{listed}"
    );
    api.ok(
        &["create", "-f", "-"],
        Some(&service("fixed-again", "  clusterIP: 10.96.0.50\n")),
    );

    // A Service refused by validation after its address was claimed leaves nothing behind.
    let bad_port = service(
        "bad",
        "  - name: bad\n    port: 70000\n  clusterIP: 10.96.0.60\n",
    );
    let refused = api.fails(&["create", "-f", "-"], Some(&bad_port));
    assert!(refused.contains("spec.ports[1].port"), "{refused}");
    api.ok(
        &["create", "-f", "-"],
        Some(&service("good", "  clusterIP: 10.96.0.60\n")),
    );

    // A dry run claims nothing.
    let dry = api.ok(
        &["create", "--dry-run=server", "-o", "name", "-f", "-"],
        Some(&service("dry", "  clusterIP: 10.96.0.70\n")),
    );
    assert!(dry.contains("service/dry"), "{dry}");
    api.ok(
        &["create", "-f", "-"],
        Some(&service("after-dry", "  clusterIP: 10.96.0.70\n")),
    );

    // Headless and ExternalName Services get no address.
    api.ok(
        &["create", "-f", "-"],
        Some(&service("headless", "  clusterIP: None\n")),
    );
    assert_eq!(cluster_ip(&api, "headless"), "None");
    let external = "apiVersion: v1\nkind: Service\nmetadata:\n  name: ext\nspec:\n  type: ExternalName\n  externalName: example.com\n";
    api.ok(&["create", "-f", "-"], Some(external));
    assert_eq!(cluster_ip(&api, "ext"), "");
}

#[test]
fn node_ports_follow_type_changes() {
    if !require_kubectl("node_ports_follow_type_changes") {
        return;
    }
    let api = TestApiserver::start();
    api.ok(
        &["create", "-f", "-"],
        Some(&service("np", "    nodePort: 30080\n  type: NodePort\n")),
    );
    assert_eq!(node_port(&api, "np"), "30080");
    let taken = api.fails(
        &["create", "-f", "-"],
        Some(&service(
            "np-again",
            "    nodePort: 30080\n  type: NodePort\n",
        )),
    );
    assert!(
        taken.contains(
            "spec.ports[0].nodePort: Invalid value: 30080: provided port is already allocated"
        ),
        "{taken}"
    );
    let outside = api.fails(
        &["create", "-f", "-"],
        Some(&service("np-low", "    nodePort: 8080\n  type: NodePort\n")),
    );
    assert!(
        outside.contains(
            "provided port is not in the valid range. The range of valid ports is 30000-32767"
        ),
        "{outside}"
    );
    // The refused Services claimed no address either: their names are free, nothing leaked.
    api.ok(
        &["create", "-f", "-"],
        Some(&service("auto", "  type: NodePort\n")),
    );
    let auto: u16 = node_port(&api, "auto").parse().expect("a node port");
    assert!((30000..=32767).contains(&auto) && auto != 30080, "{auto}");

    // ClusterIP → NodePort claims a port; NodePort → ClusterIP releases it.
    api.ok(&["create", "-f", "-"], Some(&service("web", "")));
    assert_eq!(node_port(&api, "web"), "");
    api.ok(
        &[
            "patch",
            "service",
            "web",
            "--type=merge",
            "-p",
            r#"{"spec":{"type":"NodePort"}}"#,
        ],
        None,
    );
    let web_port = node_port(&api, "web");
    assert!(!web_port.is_empty(), "no node port after the type change");
    api.ok(
        &[
            "patch",
            "service",
            "web",
            "--type=merge",
            "-p",
            r#"{"spec":{"type":"ClusterIP"}}"#,
        ],
        None,
    );
    assert_eq!(node_port(&api, "web"), "");
    api.ok(
        &["create", "-f", "-"],
        Some(&service(
            "takes-web-port",
            &format!("    nodePort: {web_port}\n  type: NodePort\n"),
        )),
    );

    // A type change refused by validation keeps nothing it claimed.
    let refused = api.fails(
        &[
            "patch",
            "service",
            "web",
            "--type=merge",
            "-p",
            r#"{"spec":{"type":"NodePort","sessionAffinity":"Sometimes","ports":[{"name":"http","port":80,"nodePort":30500}]}}"#,
        ],
        None,
    );
    assert!(refused.contains("spec.sessionAffinity"), "{refused}");
    api.ok(
        &["create", "-f", "-"],
        Some(&service(
            "takes-30500",
            "    nodePort: 30500\n  type: NodePort\n",
        )),
    );

    // ClusterIP → ExternalName releases the address.
    let web_ip = cluster_ip(&api, "web");
    api.ok(
        &[
            "patch",
            "service",
            "web",
            "--type=merge",
            "-p",
            r#"{"spec":{"type":"ExternalName","externalName":"example.com"}}"#,
        ],
        None,
    );
    assert_eq!(cluster_ip(&api, "web"), "");
    api.ok(
        &["create", "-f", "-"],
        Some(&service(
            "takes-web-ip",
            &format!("  clusterIP: {web_ip}\n"),
        )),
    );

    // Deleting releases the node port.
    api.ok(&["delete", "service", "np"], None);
    api.ok(
        &["create", "-f", "-"],
        Some(&service(
            "np-again",
            "    nodePort: 30080\n  type: NodePort\n",
        )),
    );
}

#[test]
fn allocations_survive_a_restart() {
    if !require_kubectl("allocations_survive_a_restart") {
        return;
    }
    let api = TestApiserver::start();
    api.ok(
        &["create", "-f", "-"],
        Some(&service(
            "fixed",
            "    nodePort: 31000\n  type: NodePort\n  clusterIP: 10.96.0.80\n",
        )),
    );
    let mut before = HashSet::new();
    for i in 0..3 {
        let name = format!("before-{i}");
        api.ok(&["create", "-f", "-"], Some(&service(&name, "")));
        before.insert(cluster_ip(&api, &name));
    }
    let dir = api.stop();
    let api = TestApiserver::start_in(dir);
    let taken = api.fails(
        &["create", "-f", "-"],
        Some(&service("fixed-2", "  clusterIP: 10.96.0.80\n")),
    );
    assert!(
        taken.contains("provided IP is already allocated"),
        "{taken}"
    );
    let taken = api.fails(
        &["create", "-f", "-"],
        Some(&service(
            "port-2",
            "    nodePort: 31000\n  type: NodePort\n",
        )),
    );
    assert!(
        taken.contains("provided port is already allocated"),
        "{taken}"
    );
    for ip in &before {
        let again = api.fails(
            &["create", "-f", "-"],
            Some(&service("same", &format!("  clusterIP: {ip}\n"))),
        );
        assert!(
            again.contains("provided IP is already allocated"),
            "{again}"
        );
    }
    let mut after = HashSet::new();
    for i in 0..10 {
        let name = format!("after-{i}");
        api.ok(&["create", "-f", "-"], Some(&service(&name, "")));
        let ip = cluster_ip(&api, &name);
        assert!(!before.contains(&ip) && ip != "10.96.0.80", "{ip} reused");
        assert!(after.insert(ip.clone()), "{ip} handed out twice");
    }
    assert_eq!(cluster_ip(&api, "kubernetes"), "10.96.0.1");
}

#[test]
fn the_kubernetes_service_and_its_endpoints() {
    if !require_kubectl("the_kubernetes_service_and_its_endpoints") {
        return;
    }
    let api = TestApiserver::start();
    let port = api.port.to_string();
    assert_eq!(cluster_ip(&api, "kubernetes"), "10.96.0.1");
    let svc = &["service", "kubernetes"];
    assert_eq!(get(&api, svc, ".spec.ports[0].name"), "https");
    assert_eq!(get(&api, svc, ".spec.ports[0].port"), "443");
    assert_eq!(get(&api, svc, ".spec.ports[0].targetPort"), port);
    let ep = &["endpoints", "kubernetes"];
    assert_eq!(get(&api, ep, ".subsets[0].addresses[0].ip"), "127.0.0.1");
    assert_eq!(get(&api, ep, ".subsets[0].ports[0].port"), port);
    let slices = api.ok(
        &[
            "get",
            "endpointslices",
            "-l",
            "kubernetes.io/service-name=kubernetes",
            "-o",
            "jsonpath={.items[*].endpoints[0].addresses[0]}:{.items[*].ports[0].port}",
        ],
        None,
    );
    assert_eq!(slices, format!("127.0.0.1:{port}"));
    // Nobody else can take its address.
    let taken = api.fails(
        &["create", "-f", "-"],
        Some(&service("impostor", "  clusterIP: 10.96.0.1\n")),
    );
    assert!(
        taken.contains("provided IP is already allocated"),
        "{taken}"
    );
    // A restart on another port corrects the target port and the endpoints.
    let dir = api.stop();
    let api = TestApiserver::start_in(dir);
    let port = api.port.to_string();
    assert_eq!(get(&api, svc, ".spec.ports[0].targetPort"), port);
    assert_eq!(get(&api, ep, ".subsets[0].ports[0].port"), port);
}

#[test]
fn two_apiservers_on_one_etcd_share_the_allocations() {
    if !require_kubectl("two_apiservers_on_one_etcd_share_the_allocations")
        || !super::etcd_process::etcd_available("two_apiservers_on_one_etcd_share_the_allocations")
    {
        return;
    }
    let etcd = super::etcd_process::Cluster::start(1);
    let start = |advertise: &str| {
        let endpoints = etcd.endpoints();
        let advertise = advertise.parse().expect("address");
        TestApiserver::start_configured(tempfile::tempdir().expect("dir"), move |config| {
            config.etcd_servers = endpoints;
            config.etcd_prefix = "/keel-services-test".into();
            config.advertise_address = Some(advertise);
            // 14 usable addresses: .1 for `kubernetes`, 13 to share.
            config.service_cluster_ip_range = "10.0.0.0/28".parse().expect("cidr");
        })
    };
    let (a, b) = (start("127.0.0.1"), start("127.0.0.2"));
    // Both apiservers hold a live lease: the endpoints name both.
    let ep = &["endpoints", "kubernetes"];
    assert_eq!(
        get(&a, ep, ".subsets[0].addresses[*].ip"),
        "127.0.0.1 127.0.0.2"
    );
    // b's local view knows nothing of a's picks: storage must arbitrate.
    let mut seen = HashSet::new();
    for i in 0..13 {
        let (api, name) = if i % 2 == 0 {
            (&a, format!("a-{i}"))
        } else {
            (&b, format!("b-{i}"))
        };
        api.ok(&["create", "-f", "-"], Some(&service(&name, "")));
        let ip = cluster_ip(api, &name);
        assert!(seen.insert(ip.clone()), "{ip} handed out twice");
    }
    let full = b.fails(&["create", "-f", "-"], Some(&service("one-too-many", "")));
    assert!(full.contains("range is full"), "{full}");
    // Released on a, free again for b.
    let first = cluster_ip(&a, "a-0");
    a.ok(&["delete", "service", "a-0"], None);
    b.ok(
        &["create", "-f", "-"],
        Some(&service("b-reuses", &format!("  clusterIP: {first}\n"))),
    );
    let taken = a.fails(
        &["create", "-f", "-"],
        Some(&service("a-again", &format!("  clusterIP: {first}\n"))),
    );
    assert!(
        taken.contains("provided IP is already allocated"),
        "{taken}"
    );
}

//! Privileged tests of keel-netkit: everything happens inside network namespaces the test
//! creates (`keel_testkit::Netns`), so deleting them removes every link, address and route,
//! even when an assertion fails.

use std::net::IpAddr;

use ipnet::IpNet;
use keel_netkit::netns::Netns;
use keel_netkit::{RouteSpec, Rtnl, sysctl};
use keel_testkit::require_root;

fn net(s: &str) -> IpNet {
    s.parse().expect("test literal")
}

#[test]
fn links_addresses_routes_in_a_namespace() {
    if !require_root("links_addresses_routes_in_a_namespace") {
        return;
    }
    let host = keel_testkit::Netns::new("nk-host");
    let ctr = keel_testkit::Netns::new("nk-ctr");
    let ctr_ns = Netns::open(&ctr.path()).expect("open ctr netns");
    let host_ns = Netns::open(&host.path()).expect("open host netns");

    let caller_ns = std::fs::read_link("/proc/thread-self/ns/net").expect("own netns");
    host_ns
        .run(|| {
            let mut nl = Rtnl::open()?;
            nl.create_bridge("br-t", Some(1400))?;
            let br = nl.link("br-t")?;
            assert_eq!(br.kind.as_deref(), Some("bridge"));
            assert_eq!(br.mtu, 1400);
            assert!(
                nl.create_bridge("br-t", None)
                    .expect_err("exists")
                    .is_exists()
            );
            nl.set_up(br.index)?;

            nl.create_veth("vh0", "eth0", Some(ctr_ns.fd()), Some(1400))?;
            let vh = nl.link("vh0")?;
            assert_eq!(vh.kind.as_deref(), Some("veth"));
            nl.set_master(vh.index, br.index)?;
            nl.set_hairpin(vh.index, true)?;
            assert!(nl.hairpin(vh.index)?);
            nl.set_promisc(vh.index, true)?;
            nl.set_mac(vh.index, &[0x02, 0, 0, 0, 0, 0x42])?;
            nl.set_up(vh.index)?;
            let vh = nl.link("vh0")?;
            assert_eq!(vh.master, Some(br.index));
            assert!(vh.promisc && vh.up);
            assert_eq!(vh.mac_string(), "02:00:00:00:00:42");

            nl.add_address(br.index, net("10.250.0.1/24"), false)?;
            nl.add_address(br.index, net("fd00:250::1/64"), true)?;
            let addrs = nl.addresses(Some(br.index))?;
            assert!(addrs.iter().any(|a| a.net == net("10.250.0.1/24")));
            assert!(addrs.iter().any(|a| a.net == net("fd00:250::1/64")));
            nl.del_address(br.index, net("10.250.0.1/24"))?;
            assert!(
                !nl.addresses(Some(br.index))?
                    .iter()
                    .any(|a| a.net == net("10.250.0.1/24"))
            );

            sysctl::write("net/ipv4/ip_forward", "1")?;
            assert_eq!(sysctl::read("net/ipv4/ip_forward")?, "1");
            Ok::<_, keel_netkit::Error>(())
        })
        .expect("enter host netns")
        .expect("host side");
    // The caller's thread never moved.
    assert_eq!(
        std::fs::read_link("/proc/thread-self/ns/net").expect("own netns"),
        caller_ns
    );

    ctr_ns
        .run(|| {
            let mut nl = Rtnl::open()?;
            let eth0 = nl.link("eth0")?;
            assert_eq!(eth0.mtu, 1400);
            sysctl::set_accept_dad("eth0", 0)?;
            assert_eq!(sysctl::read("net/ipv6/conf/eth0/accept_dad")?, "0");
            nl.set_up(eth0.index)?;
            nl.add_address(eth0.index, net("10.250.0.2/24"), false)?;
            nl.add_address(eth0.index, net("fd00:250::2/64"), true)?;
            let gw: IpAddr = "10.250.0.1".parse().expect("literal");
            let default = RouteSpec::new(net("0.0.0.0/0"), Some(gw), Some(eth0.index));
            nl.add_route(&default)?;
            let onlink = RouteSpec {
                onlink: true,
                ..RouteSpec::new(
                    net("192.0.2.0/24"),
                    Some("10.99.0.1".parse().expect("l")),
                    Some(eth0.index),
                )
            };
            nl.add_route(&onlink)?;
            let v6 = RouteSpec::new(
                net("::/0"),
                Some("fd00:250::1".parse().expect("l")),
                Some(eth0.index),
            );
            nl.add_route(&v6)?;
            let routes = nl.routes(None)?;
            assert!(
                routes
                    .iter()
                    .any(|r| r.dst == net("0.0.0.0/0") && r.gateway == Some(gw))
            );
            assert!(
                routes
                    .iter()
                    .any(|r| r.dst == net("192.0.2.0/24") && r.onlink)
            );
            assert!(routes.iter().any(|r| r.dst == net("::/0")));
            assert!(
                routes
                    .iter()
                    .any(|r| r.dst == net("10.250.0.0/24") && r.gateway.is_none())
            );
            let nodad = nl
                .addresses(Some(eth0.index))?
                .into_iter()
                .find(|a| a.net == net("fd00:250::2/64"))
                .expect("v6 address");
            assert_ne!(nodad.flags & 0x02, 0, "IFA_F_NODAD set");
            nl.del_route(&onlink)?;
            assert!(
                !nl.routes(None)?
                    .iter()
                    .any(|r| r.dst == net("192.0.2.0/24"))
            );
            assert!(nl.del_route(&onlink).expect_err("gone").is_not_found());
            Ok::<_, keel_netkit::Error>(())
        })
        .expect("enter ctr netns")
        .expect("container side");

    // The bridge reaches the container through the veth.
    let out = host.exec(&["busybox", "ping", "-c1", "-W2", "fd00:250::2"]);
    assert!(
        out.status.success(),
        "ping: {}",
        String::from_utf8_lossy(&out.stdout)
    );

    host_ns
        .run(|| {
            let mut nl = Rtnl::open()?;
            let vh = nl.link("vh0")?;
            nl.delete_link(vh.index)?;
            assert!(nl.link_by_name("vh0")?.is_none());
            assert!(nl.delete_link(vh.index).expect_err("gone").is_not_found());
            Ok::<_, keel_netkit::Error>(())
        })
        .expect("enter host netns")
        .expect("delete");
    ctr_ns
        .run(|| Rtnl::open()?.link_by_name("eth0"))
        .expect("enter")
        .map(|l| assert!(l.is_none(), "peer went with the veth"))
        .expect("lookup");
}

#[test]
fn opening_a_missing_or_wrong_namespace_names_it() {
    let e =
        Netns::open(std::path::Path::new("/run/netns/keel-does-not-exist")).expect_err("missing");
    assert!(
        e.to_string().contains("/run/netns/keel-does-not-exist"),
        "{e}"
    );
    assert!(e.is_not_found());
    let e = Netns::open(std::path::Path::new("/etc/hostname")).expect_err("not a netns");
    assert!(e.to_string().contains("/etc/hostname"), "{e}");
}

#[test]
fn masquerade_rules_by_comment_in_a_namespace() {
    if !require_root("masquerade_rules_by_comment_in_a_namespace") {
        return;
    }
    use keel_netkit::nft::{Family, Nft, masquerade_batch};
    // nftables tables live in the namespace: deleting it removes them, whatever happens.
    let ns = keel_testkit::Netns::new("nk-nft");
    let handle = Netns::open(&ns.path()).expect("open netns");
    let ip: IpAddr = "10.250.3.5".parse().expect("l");
    let ip6: IpAddr = "fd00:250::5".parse().expect("l");
    handle
        .run(|| {
            let mut nft = Nft::open()?;
            nft.apply(&masquerade_batch(
                "keel-cni",
                ip,
                &net("10.250.3.5/24"),
                "ctr-1",
            ))?;
            nft.apply(&masquerade_batch(
                "keel-cni",
                "10.250.3.6".parse().expect("l"),
                &net("10.250.3.6/24"),
                "ctr-2",
            ))?;
            nft.apply(&masquerade_batch(
                "keel-cni",
                ip6,
                &net("fd00:250::5/64"),
                "ctr-1",
            ))?;
            let rules = nft.rules(Family::Ipv4, "keel-cni")?;
            assert_eq!(rules.len(), 4, "{rules:?}");
            assert_eq!(
                rules
                    .iter()
                    .filter(|r| r.comment.as_deref() == Some("ctr-1"))
                    .count(),
                2
            );
            Ok::<_, keel_netkit::Error>(())
        })
        .expect("enter")
        .expect("add rules");

    let listed = keel_testkit::run(
        "ip",
        &["netns", "exec", ns.name(), "nft", "list", "ruleset"],
    );
    for want in [
        "type nat hook postrouting priority srcnat; policy accept;",
        "ip saddr 10.250.3.5 ip daddr 10.250.3.0/24 return comment \"ctr-1\"",
        "ip saddr 10.250.3.5 ip daddr != 224.0.0.0/4 masquerade comment \"ctr-1\"",
        "ip6 saddr fd00:250::5 ip6 daddr fd00:250::/64 return comment \"ctr-1\"",
        "ip6 saddr fd00:250::5 ip6 daddr != ff00::/8 masquerade comment \"ctr-1\"",
    ] {
        assert!(listed.contains(want), "missing {want:?} in:\n{listed}");
    }

    handle
        .run(|| {
            let mut nft = Nft::open()?;
            assert_eq!(
                nft.delete_rules_with_comment(Family::Ipv4, "keel-cni", "ctr-1")?,
                2
            );
            assert_eq!(
                nft.delete_rules_with_comment(Family::Ipv4, "keel-cni", "ctr-1")?,
                0
            );
            assert_eq!(
                nft.delete_rules_with_comment(Family::Ipv6, "keel-cni", "ctr-1")?,
                2
            );
            let left = nft.rules(Family::Ipv4, "keel-cni")?;
            assert!(
                left.iter().all(|r| r.comment.as_deref() == Some("ctr-2")),
                "{left:?}"
            );
            assert!(nft.rules(Family::Ipv4, "no-such-table")?.is_empty());
            let mut del = keel_netkit::nft::Batch::new();
            del.del_table(Family::Ipv4, "keel-cni");
            nft.apply(&del)?;
            let err = nft.apply(&del).expect_err("already gone");
            assert!(
                err.to_string().contains("deleting table ip keel-cni"),
                "{err}"
            );
            Ok::<_, keel_netkit::Error>(())
        })
        .expect("enter")
        .expect("delete rules");
}

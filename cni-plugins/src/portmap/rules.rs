//! The nf_tables rules of one container's port mappings, as a pure function of the config and
//! the container IPs: no kernel here, so the shape is unit-tested without root.
//!
//! Per family, table `keel-portmap` holds three NAT base chains, shared by all containers:
//! ```text
//! prerouting  (hook prerouting, priority dstnat -100)  traffic arriving from outside
//! output      (hook output,     priority -100)         connections made on the host itself
//! postrouting (hook postrouting, priority srcnat 100)  masquerade of hairpin/localhost traffic
//! ```
//! For each mapping and each container IP of the mapping's family (a `hostIP` fixes the family;
//! without one both families get the mapping):
//! ```text
//! prerouting, output: <dst> meta l4proto P th dport HOSTPORT dnat to CIP:CPORT
//!   <dst> = ip daddr HOSTIP              with a hostIP
//!         = fib daddr type local         without one: any address of the host, 127.0.0.1 too
//! postrouting (snat):    meta l4proto P ip daddr CIP th dport CPORT ct status dnat ip saddr CIP masquerade
//!                        ... ip saddr 127.0.0.0/8 masquerade                     (IPv4 only)
//! postrouting (masqAll): meta l4proto P ip daddr CIP th dport CPORT ct status dnat masquerade
//! ```
//! `ct status dnat` limits masquerading to connections that came through a DNAT (the mapping),
//! so a neighbour talking to the container's port directly keeps its source address. Matching
//! the translated destination in postrouting replaces the reference plugin's mark bit. Every
//! rule carries the comment `<network>:<container id>`, which is how DEL and CHECK find them.

use std::net::{IpAddr, Ipv4Addr};

use ipnet::{IpNet, Ipv4Net};
use keel_netkit::nft::{Batch, CmpOp, Expr, Family, Hook};

use super::config::{Mapping, NetConf};

/// The nftables table (in both the ip and ip6 families) holding the port mapping rules.
pub const TABLE: &str = "keel-portmap";

/// The chains of [`TABLE`]: name, hook, priority.
pub const CHAINS: [(&str, Hook, i32); 3] = [
    ("prerouting", Hook::Prerouting, -100),
    ("output", Hook::Output, -100),
    ("postrouting", Hook::Postrouting, 100),
];

/// One rule to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub family: Family,
    pub chain: &'static str,
    pub exprs: Vec<Expr>,
}

fn same_family(a: &IpAddr, b: &IpAddr) -> bool {
    a.is_ipv4() == b.is_ipv4()
}

fn dnat(m: &Mapping, cip: IpAddr) -> Vec<Expr> {
    let mut e = match m.host_ip {
        Some(h) => Expr::daddr(CmpOp::Eq, &IpNet::from(h)),
        None => Expr::fib_daddr_local(),
    };
    e.extend(Expr::l4proto(m.protocol.number()));
    e.extend(Expr::dport(m.host_port));
    e.push(Expr::Dnat {
        addr: cip,
        port: m.container_port,
    });
    e
}

/// `meta l4proto P ip daddr CIP th dport CPORT ct status dnat`, then `source` and masquerade.
fn masq(m: &Mapping, cip: IpAddr, source: Option<IpNet>) -> Vec<Expr> {
    let mut e = Expr::l4proto(m.protocol.number());
    e.extend(Expr::daddr(CmpOp::Eq, &IpNet::from(cip)));
    e.extend(Expr::dport(m.container_port));
    e.extend(Expr::ct_status_dnat());
    if let Some(src) = source {
        e.extend(Expr::saddr(CmpOp::Eq, &src));
    }
    e.push(Expr::Masquerade);
    e
}

/// The rules of a container with IPs `ips`.
pub fn plan(conf: &NetConf, ips: &[IpAddr]) -> Vec<Rule> {
    let loopback = IpNet::V4(Ipv4Net::new(Ipv4Addr::LOCALHOST, 8).unwrap_or_default());
    let mut rules = Vec::new();
    for m in &conf.mappings {
        for cip in ips
            .iter()
            .copied()
            .filter(|ip| m.host_ip.is_none_or(|h| same_family(&h, ip)))
        {
            let family = Family::of(&cip);
            let rule = |chain, exprs| Rule {
                family,
                chain,
                exprs,
            };
            rules.push(rule("prerouting", dnat(m, cip)));
            rules.push(rule("output", dnat(m, cip)));
            if conf.masq_all {
                rules.push(rule("postrouting", masq(m, cip, None)));
            } else if conf.snat {
                rules.push(rule("postrouting", masq(m, cip, Some(IpNet::from(cip)))));
                if cip.is_ipv4() {
                    rules.push(rule("postrouting", masq(m, cip, Some(loopback))));
                }
            }
        }
    }
    rules
}

/// The transactions writing `rules` (one per family: table, chains, rules), each rule with
/// `comment`.
pub fn batches(rules: &[Rule], comment: &str) -> Vec<Batch> {
    let mut out = Vec::new();
    for family in [Family::Ipv4, Family::Ipv6] {
        let mine: Vec<&Rule> = rules.iter().filter(|r| r.family == family).collect();
        if mine.is_empty() {
            continue;
        }
        let mut b = Batch::new();
        b.add_table(family, TABLE);
        for (chain, hook, prio) in CHAINS {
            b.add_nat_chain(family, TABLE, chain, hook, prio);
        }
        for r in mine {
            b.add_rule(family, TABLE, r.chain, &r.exprs, Some(comment));
        }
        out.push(b);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::config::Protocol;
    use super::*;

    fn conf(snat: bool, masq_all: bool, host_ip: Option<&str>) -> NetConf {
        NetConf {
            snat,
            masq_all,
            mappings: vec![Mapping {
                host_port: 8080,
                container_port: 80,
                protocol: Protocol::Tcp,
                host_ip: host_ip.and_then(|s| s.parse().ok()),
            }],
        }
    }

    fn shape(rules: &[Rule]) -> Vec<String> {
        rules
            .iter()
            .map(|r| format!("{} {} {}", r.family.name(), r.chain, r.exprs.len()))
            .collect()
    }

    fn ips() -> Vec<IpAddr> {
        ["10.1.0.5", "fd00::5"]
            .iter()
            .filter_map(|s| s.parse().ok())
            .collect()
    }

    #[test]
    fn both_families_without_host_ip_and_localhost_masquerade_for_ipv4_only() {
        let r = plan(&conf(true, false, None), &ips());
        expect_test::expect![[r#"
            [
                "ip prerouting 7",
                "ip output 7",
                "ip postrouting 12",
                "ip postrouting 13",
                "ip6 prerouting 7",
                "ip6 output 7",
                "ip6 postrouting 12",
            ]
        "#]]
        .assert_debug_eq(&shape(&r));
        assert!(r[0].exprs.contains(&Expr::Dnat {
            addr: ips()[0],
            port: 80
        }));
    }

    #[test]
    fn a_host_ip_fixes_the_family_and_masq_all_replaces_snat() {
        let r = plan(&conf(true, true, Some("192.168.1.1")), &ips());
        expect_test::expect![[r#"
            [
                "ip prerouting 7",
                "ip output 7",
                "ip postrouting 10",
            ]
        "#]]
        .assert_debug_eq(&shape(&r));
        assert!(plan(&conf(false, false, None), &ips()[..1]).len() == 2);
    }
}

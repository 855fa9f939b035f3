//! The `bridge` CNI plugin: connects a container to a Linux bridge on the host through a veth
//! pair, with addresses from the IPAM plugin named in the config.
//!
//! ADD, step by step (each host change pushes its undo onto an [`Undo`] stack, run in reverse
//! if a later step fails, so a failed ADD leaves no veth and no IP allocation):
//! 1. read the config; open the container's netns (nothing is touched before both succeed);
//! 2. ensure the bridge exists, is a bridge, is up (with the config's MTU when creating it),
//!    and filters by VLAN when `vlan` or `vlanTrunk` is set;
//! 3. create the veth in one request: its container end named `CNI_IFNAME` directly in the
//!    netns with a MAC chosen here; the host end a port of the bridge, up (after its
//!    VLANs when it has some: `vlan` as PVID untagged, `vlanTrunk` tagged, VLAN 1 dropped
//!    unless `preserveDefaultVlan`); hairpin as asked; `macspoofchk` rule ([`spoofcheck`]);
//! 4. IPAM ADD; in the container: `accept_dad = 0` unless `enabledad`, addresses (IFA_F_NODAD),
//!    the IPAM routes and the default route when `isDefaultGateway`;
//! 5. `isGateway`: gateway addresses on the bridge (and the bridge itself in `vlan`, PVID
//!    untagged), forwarding on; `ipMasq`: masquerade rules;
//! 6. the result: interfaces [bridge, host veth, container interface], IPs on index 2.
//!
//! DEL is idempotent: IPAM DEL, then the container interface if netns and interface still
//! exist, then the masquerade and spoof check rules. It never deletes the bridge (other
//! containers share it) nor its VLAN settings.
//!
//! Owns nothing on the host but what it creates per container; shared state (the bridge, its
//! gateway address, `ip_forward`) is only ever added to.

pub mod config;
pub mod masq;
pub mod spoofcheck;

use std::net::IpAddr;
use std::path::Path;

use ipnet::IpNet;
use keel_netkit::netns::Netns;
use keel_netkit::{Link, RouteSpec, Rtnl, VethSpec, VlanTarget, sysctl};

use crate::plugin::{Command, INTERNAL, Invocation, Plugin, PluginError, delegate};
use crate::spec::{CniResult, Interface, Route};
use config::NetConf;

/// The plugin, for `plugin::run`.
#[derive(Debug, Default)]
pub struct Bridge;

/// Index of the container interface in the result's `interfaces`.
const CONTAINER_IF: usize = 2;

fn internal(context: impl std::fmt::Display) -> impl FnOnce(keel_netkit::Error) -> PluginError {
    move |e| PluginError::new(INTERNAL, format!("{context}: {e}"))
}

/// Undo steps of a multi-step host change, run in reverse on drop unless [`Undo::commit`]ed.
#[derive(Default)]
struct Undo {
    steps: Vec<Box<dyn FnOnce()>>,
}

impl Undo {
    fn push(&mut self, step: impl FnOnce() + 'static) {
        self.steps.push(Box::new(step));
    }

    fn commit(mut self) {
        self.steps.clear();
    }
}

impl Drop for Undo {
    fn drop(&mut self) {
        while let Some(step) = self.steps.pop() {
            step();
        }
    }
}

fn open_netns(inv: &Invocation) -> Result<Netns, PluginError> {
    let path = inv
        .netns
        .as_deref()
        .ok_or_else(|| PluginError::new(INTERNAL, "CNI_NETNS is not set"))?;
    Netns::open(path).map_err(|e| {
        PluginError::new(
            INTERNAL,
            format!("failed to open netns {:?}: {e}", path.display()),
        )
    })
}

/// Random bytes from the kernel (getrandom(2), no file to open).
fn random_bytes<const N: usize>() -> Result<[u8; N], PluginError> {
    let mut bytes = [0u8; N];
    let mut filled = 0;
    while filled < N {
        // SAFETY: the pointer and length describe the unfilled tail of `bytes`, which outlives
        // the call.
        let n = unsafe { libc::getrandom(bytes[filled..].as_mut_ptr().cast(), N - filled, 0) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(PluginError::new(INTERNAL, format!("getrandom: {e}")));
        }
        filled += n as usize;
    }
    Ok(bytes)
}

/// A fresh host-side veth name: `veth` and 8 random hex digits, as the reference plugin names it.
fn host_veth_name() -> Result<String, PluginError> {
    Ok(format!("veth{:08x}", u32::from_ne_bytes(random_bytes()?)))
}

/// A random unicast, locally administered MAC for the container interface (what the kernel
/// would pick; chosen here so that no read-back is needed).
fn container_mac() -> Result<[u8; 6], PluginError> {
    let mut mac: [u8; 6] = random_bytes()?;
    mac[0] = (mac[0] & 0xfe) | 0x02;
    Ok(mac)
}

/// The error of a bridge change, saying so when the kernel cannot filter by VLAN (built without
/// CONFIG_BRIDGE_VLAN_FILTERING: EOPNOTSUPP).
fn vlan_filtering_err(
    conf: &NetConf,
    context: String,
) -> impl FnOnce(keel_netkit::Error) -> PluginError {
    let vlans = conf.vlan_filtering();
    move |e| {
        if vlans && e.errno() == Some(libc::EOPNOTSUPP) {
            PluginError::new(
                INTERNAL,
                format!(
                    "{context}: vlan and vlanTrunk need VLAN filtering on the bridge, which this \
                     kernel does not support (built without CONFIG_BRIDGE_VLAN_FILTERING): {e}"
                ),
            )
        } else {
            internal(context)(e)
        }
    }
}

/// Ensures the bridge exists, is a bridge and is up; returns it.
fn ensure_bridge(nl: &mut Rtnl, conf: &NetConf) -> Result<Link, PluginError> {
    let name = &conf.bridge;
    let ctx = || format!("failed to set up bridge {name:?}");
    let mut link = match nl.link_by_name(name).map_err(internal(ctx()))? {
        Some(l) => l,
        None => {
            match nl.create_bridge_with(name, conf.mtu, conf.vlan_filtering()) {
                // Another ADD may have created it in the meantime.
                Err(e) if e.is_exists() => {}
                other => other.map_err(vlan_filtering_err(conf, ctx()))?,
            }
            nl.link(name).map_err(internal(ctx()))?
        }
    };
    if link.kind.as_deref() != Some("bridge") {
        return Err(PluginError::new(
            INTERNAL,
            format!(
                "{}: the interface exists and is a {}, not a bridge",
                ctx(),
                link.kind.as_deref().unwrap_or("device")
            ),
        ));
    }
    if conf.vlan_filtering() && link.vlan_filtering != Some(true) {
        nl.set_vlan_filtering(link.index, true)
            .map_err(vlan_filtering_err(conf, ctx()))?;
        link.vlan_filtering = Some(true);
    }
    if conf.promisc_mode && !link.promisc {
        nl.set_promisc(link.index, true).map_err(internal(ctx()))?;
    }
    if !link.up {
        nl.set_up(link.index).map_err(internal(ctx()))?;
    }
    Ok(link)
}

/// The VLANs of a container's port: out of VLAN 1 unless `preserveDefaultVlan`, the trunk
/// tagged, `vlan` as PVID untagged.
fn setup_port_vlans(nl: &mut Rtnl, conf: &NetConf, index: u32) -> Result<(), keel_netkit::Error> {
    if !conf.preserve_default_vlan {
        match nl.bridge_vlan_del(index, VlanTarget::Port, (1, 1)) {
            Err(e) if e.is_not_found() => {}
            other => other?,
        }
    }
    for range in conf.trunk() {
        nl.bridge_vlan_add(index, VlanTarget::Port, range, false, false)?;
    }
    if let Some(vid) = conf.vlan_id() {
        nl.bridge_vlan_add(index, VlanTarget::Port, (vid, vid), true, true)?;
    }
    Ok(())
}

/// Creates the veth pair (container end with `mac`) and makes the host end a port of the
/// bridge in its VLANs, up; returns the host end.
fn setup_veth(
    nl: &mut Rtnl,
    conf: &NetConf,
    bridge: &Link,
    netns: &Netns,
    ifname: &str,
    mac: [u8; 6],
    undo: &mut Undo,
) -> Result<Link, PluginError> {
    // A port with VLANs comes up only once it is in them.
    let up_at_once = !conf.vlan_filtering();
    let mut attempt = 0;
    let host = loop {
        let name = host_veth_name()?;
        let spec = VethSpec {
            name: &name,
            peer: ifname,
            peer_netns: Some(netns.fd()),
            mtu: conf.mtu,
            master: Some(bridge.index),
            up: up_at_once,
            peer_mac: Some(mac),
        };
        match nl.create_veth_pair(&spec) {
            Ok(link) => break link,
            // Either name may be taken; a random host name is retried a few times.
            Err(e) if e.is_exists() && attempt < 3 => attempt += 1,
            Err(e) if e.is_exists() => {
                return Err(PluginError::new(
                    INTERNAL,
                    format!(
                        "failed to make veth pair: container interface {ifname:?} already exists in {}",
                        netns.path().display()
                    ),
                ));
            }
            Err(e) => return Err(internal("failed to make veth pair")(e)),
        }
    };
    let index = host.index;
    undo.push(move || {
        if let Ok(mut nl) = Rtnl::open() {
            let _ = nl.delete_link(index);
        }
    });
    let ctx = format!(
        "failed to connect {:?} to bridge {:?}",
        host.name, conf.bridge
    );
    if conf.hairpin_mode {
        nl.set_hairpin(index, true).map_err(internal(&ctx))?;
    }
    if !up_at_once {
        setup_port_vlans(nl, conf, index).map_err(internal(format!(
            "failed to set up the vlans of {:?}",
            host.name
        )))?;
        nl.set_up(index).map_err(internal(&ctx))?;
    }
    Ok(host)
}

/// The first usable address of a subnet (the gateway when IPAM names none).
fn first_host(net: &IpNet) -> IpAddr {
    match net.network() {
        IpAddr::V4(a) => IpAddr::V4(std::net::Ipv4Addr::from(u32::from(a).wrapping_add(1))),
        IpAddr::V6(a) => IpAddr::V6(std::net::Ipv6Addr::from(u128::from(a).wrapping_add(1))),
    }
}

fn default_net(v4: bool) -> IpNet {
    if v4 {
        IpNet::V4(Default::default())
    } else {
        IpNet::V6(Default::default())
    }
}

/// Gateways per family (with the IP's prefix, for the bridge address), filling in missing ones
/// when the bridge is the gateway, and the default routes `isDefaultGateway` adds.
fn plan_gateways(conf: &NetConf, result: &mut CniResult) -> Vec<IpNet> {
    let mut gateways: Vec<IpNet> = Vec::new();
    for ip in &mut result.ips {
        ip.interface = Some(CONTAINER_IF);
        if ip.gateway.is_none() && conf.is_gateway {
            ip.gateway = Some(first_host(&ip.address.trunc()));
        }
        if let Some(gw) = ip.gateway
            && let Ok(net) = IpNet::new(gw, ip.address.prefix_len())
            && !gateways.contains(&net)
        {
            gateways.push(net);
        }
    }
    if conf.is_default_gateway {
        for v4 in [true, false] {
            let has_default = result.routes.iter().any(|r| r.dst == default_net(v4));
            let gw = gateways.iter().find(|g| g.addr().is_ipv4() == v4);
            if let (false, Some(gw)) = (has_default, gw) {
                result.routes.push(Route {
                    dst: default_net(v4),
                    gw: Some(gw.addr()),
                    mtu: None,
                    advmss: None,
                    priority: None,
                    table: None,
                    scope: None,
                });
            }
        }
    }
    gateways
}

/// Container side of ADD: `ifname` up, its addresses and routes; its index is `index` when
/// the caller knows it.
fn configure_container(
    conf: &NetConf,
    ifname: &str,
    index: Option<u32>,
    result: &CniResult,
) -> Result<(), PluginError> {
    let mut nl = Rtnl::open().map_err(internal("in the container"))?;
    let index = match index {
        Some(i) => i,
        None => {
            nl.link(ifname)
                .map_err(internal(format!(
                    "failed to find {ifname:?} in the container"
                )))?
                .index
        }
    };
    let ctx = format!("failed to configure {ifname:?} in the container");
    if !conf.enable_dad {
        sysctl::set_accept_dad(ifname, 0).map_err(internal(&ctx))?;
    }
    nl.set_up(index).map_err(internal(&ctx))?;
    for ip in &result.ips {
        nl.add_address(index, ip.address, !conf.enable_dad)
            .map_err(internal(&ctx))?;
    }
    for route in &result.routes {
        let v4 = route.dst.addr().is_ipv4();
        // A route without a gateway goes via the interface's gateway of its family.
        let gw = route.gw.or_else(|| {
            result
                .ips
                .iter()
                .filter(|ip| ip.address.addr().is_ipv4() == v4)
                .find_map(|ip| ip.gateway)
        });
        let mut spec = RouteSpec::new(route.dst, gw, Some(index));
        spec.priority = route.priority;
        spec.mtu = route.mtu;
        spec.advmss = route.advmss;
        spec.table = route.table;
        spec.scope = route.scope.and_then(|s| u8::try_from(s).ok());
        match nl.add_route(&spec) {
            Err(e) if e.is_exists() => {}
            other => other.map_err(internal(&ctx))?,
        }
    }
    Ok(())
}

/// Puts the gateway addresses on the bridge. An IPv4 bridge holds one address: a different
/// one is replaced with `forceAddress`, an error otherwise (as in the reference plugin); IPv6
/// addresses may coexist unless their subnets overlap.
fn ensure_gateway_addrs(
    nl: &mut Rtnl,
    conf: &NetConf,
    bridge: &Link,
    gateways: &[IpNet],
) -> Result<(), PluginError> {
    let ctx = format!(
        "failed to set the gateway address on bridge {:?}",
        conf.bridge
    );
    let existing = nl.addresses(Some(bridge.index)).map_err(internal(&ctx))?;
    for gw in gateways {
        if existing.iter().any(|a| a.net == *gw) {
            continue;
        }
        for a in &existing {
            let same_family = a.net.addr().is_ipv4() == gw.addr().is_ipv4();
            let is_link_local =
                matches!(a.net.addr(), IpAddr::V6(v6) if v6.segments()[0] & 0xffc0 == 0xfe80);
            let conflicts = same_family
                && !is_link_local
                && (gw.addr().is_ipv4()
                    || a.net.contains(&gw.network())
                    || gw.contains(&a.net.network()));
            if !conflicts {
                continue;
            }
            if !conf.force_address {
                return Err(PluginError::new(
                    INTERNAL,
                    format!(
                        "{} {:?} already has an IP address different from {gw} ({})",
                        "bridge", conf.bridge, a.net
                    ),
                ));
            }
            nl.del_address(bridge.index, a.net)
                .map_err(internal(&ctx))?;
        }
        match nl.add_address(bridge.index, *gw, !conf.enable_dad) {
            Err(e) if e.is_exists() => {}
            other => other.map_err(internal(&ctx))?,
        }
    }
    if let Some(vid) = conf.vlan_id()
        && !gateways.is_empty()
    {
        nl.bridge_vlan_add(
            bridge.index,
            VlanTarget::BridgeItself,
            (vid, vid),
            true,
            true,
        )
        .map_err(internal(format!(
            "failed to put bridge {:?} in vlan {vid}",
            conf.bridge
        )))?;
    }
    if gateways.iter().any(|g| g.addr().is_ipv4()) {
        sysctl::enable_ipv4_forwarding().map_err(internal("failed to enable forwarding"))?;
    }
    if gateways.iter().any(|g| g.addr().is_ipv6()) {
        sysctl::enable_ipv6_forwarding().map_err(internal("failed to enable forwarding"))?;
    }
    Ok(())
}

fn with_command(inv: &Invocation, command: Command) -> Invocation {
    let mut other = inv.clone();
    other.command = command;
    other
}

impl Bridge {
    fn do_add(&self, inv: &Invocation, conf: &NetConf) -> Result<CniResult, PluginError> {
        let netns = open_netns(inv)?;
        let ipam_type = conf.ipam_type()?.map(str::to_string);
        let mut nl = Rtnl::open().map_err(internal("opening rtnetlink"))?;
        let mut undo = Undo::default();

        let bridge = ensure_bridge(&mut nl, conf)?;
        let mac = container_mac()?;
        let host = setup_veth(&mut nl, conf, &bridge, &netns, &inv.ifname, mac, &mut undo)?;
        if conf.macspoofchk {
            let comment = masq::comment(inv.network_name(), &inv.container_id);
            let undo_comment = comment.clone();
            // Pushed first: the transaction may have applied before an error was read.
            undo.push(move || {
                let _ = spoofcheck::teardown(&undo_comment);
            });
            spoofcheck::setup(&host.name, mac, &comment)?;
        }

        let mut result = CniResult {
            cni_version: inv.version.to_string(),
            ..CniResult::default()
        };
        if let Some(ipam) = &ipam_type {
            result = delegate(ipam, inv)?.ok_or_else(|| {
                PluginError::new(INTERNAL, format!("IPAM plugin {ipam} returned no result"))
            })?;
            let del = with_command(inv, Command::Del);
            let ipam = ipam.clone();
            undo.push(move || {
                let _ = delegate(&ipam, &del);
            });
            if result.ips.is_empty() {
                return Err(PluginError::new(
                    INTERNAL,
                    "IPAM plugin returned missing IP config",
                ));
            }
        }
        let gateways = plan_gateways(conf, &mut result);

        netns
            .run(|| configure_container(conf, &inv.ifname, host.peer_index, &result))
            .map_err(internal("entering the container's netns"))??;

        if conf.is_gateway {
            ensure_gateway_addrs(&mut nl, conf, &bridge, &gateways)?;
        }
        if conf.ip_masq {
            // Pushed first: a failure half-way leaves rules of some IPs.
            let id = inv.container_id.clone();
            let name = inv.network_name().to_string();
            undo.push(move || {
                let _ = masq::teardown(&id, &name);
            });
            masq::setup(&inv.container_id, inv.network_name(), &result)?;
        }

        // Read the bridge again: its MAC follows its ports until it has one of its own.
        let bridge = nl
            .link_by_index(bridge.index)
            .map_err(internal("reading the bridge"))?
            .unwrap_or(bridge);
        result.interfaces = vec![
            Interface {
                name: bridge.name.clone(),
                mac: bridge.mac_string(),
                mtu: None,
                sandbox: String::new(),
            },
            Interface {
                name: host.name.clone(),
                mac: host.mac_string(),
                mtu: None,
                sandbox: String::new(),
            },
            Interface {
                name: inv.ifname.clone(),
                mac: keel_netkit::rtnl::format_mac(&mac),
                mtu: None,
                sandbox: netns.path().display().to_string(),
            },
        ];
        undo.commit();
        Ok(result)
    }
}

/// Deletes `ifname` in the namespace at `path`; a missing namespace or interface is fine.
fn delete_container_iface(path: &Path, ifname: &str) -> Result<(), PluginError> {
    let netns = match Netns::open(path) {
        Ok(n) => n,
        Err(e) if e.is_not_found() => return Ok(()),
        Err(e) => return Err(internal("failed to open the netns")(e)),
    };
    netns
        .run(|| {
            let mut nl = Rtnl::open()?;
            match nl.link_by_name(ifname)? {
                None => Ok(()),
                Some(l) => match nl.delete_link(l.index) {
                    Err(e) if e.is_not_found() => Ok(()),
                    other => other,
                },
            }
        })
        .map_err(internal("entering the container's netns"))?
        .map_err(internal(format!("failed to delete {ifname:?}")))
}

/// CHECK's comparisons, run inside the container's namespace.
fn check_container(ifname: &str, prev: &CniResult) -> Result<(), PluginError> {
    let fail = |msg: String| PluginError::new(INTERNAL, msg);
    let mut nl = Rtnl::open().map_err(internal("in the container"))?;
    let link = nl
        .link_by_name(ifname)
        .map_err(internal("in the container"))?
        .ok_or_else(|| fail(format!("container interface {ifname:?} not found")))?;
    if let Some(want) = prev
        .interfaces
        .iter()
        .find(|i| i.name == ifname && !i.sandbox.is_empty())
        && !want.mac.is_empty()
        && !want.mac.eq_ignore_ascii_case(&link.mac_string())
    {
        return Err(fail(format!(
            "interface {ifname:?} has MAC {}, the previous result says {}",
            link.mac_string(),
            want.mac
        )));
    }
    let addrs = nl
        .addresses(Some(link.index))
        .map_err(internal("in the container"))?;
    for ip in prev.ips_of(ifname) {
        if !addrs.iter().any(|a| a.net == ip.address) {
            return Err(fail(format!(
                "address {} not found on {ifname:?}",
                ip.address
            )));
        }
    }
    let routes = nl.routes(None).map_err(internal("in the container"))?;
    for r in &prev.routes {
        if !routes
            .iter()
            .any(|have| have.dst == r.dst && (r.gw.is_none() || have.gateway == r.gw))
        {
            let via = r.gw.map(|g| format!(" via {g}")).unwrap_or_default();
            return Err(fail(format!("route to {}{via} not found", r.dst)));
        }
    }
    Ok(())
}

/// CHECK's VLAN comparisons for one host-side port.
fn check_port_vlans(
    nl: &mut Rtnl,
    conf: &NetConf,
    bridge: &Link,
    port: &Link,
) -> Result<(), PluginError> {
    if !conf.vlan_filtering() {
        return Ok(());
    }
    let fail = |msg: String| PluginError::new(INTERNAL, msg);
    if bridge.vlan_filtering != Some(true) {
        return Err(fail(format!(
            "bridge {:?} does not filter by vlan",
            conf.bridge
        )));
    }
    let vlans = nl
        .bridge_vlans(port.index)
        .map_err(internal("checking the port's vlans"))?;
    if let Some(vid) = conf.vlan_id()
        && !vlans.iter().any(|v| v.vid == vid && v.pvid && v.untagged)
    {
        return Err(fail(format!(
            "{:?} is not in vlan {vid} as PVID untagged",
            port.name
        )));
    }
    for (min, max) in conf.trunk() {
        if let Some(missing) = (min..=max).find(|id| !vlans.iter().any(|v| v.vid == *id)) {
            return Err(fail(format!(
                "{:?} does not carry trunk vlan {missing}",
                port.name
            )));
        }
    }
    Ok(())
}

impl Plugin for Bridge {
    fn add(&self, inv: &Invocation) -> Result<CniResult, PluginError> {
        let conf = NetConf::from_config(&inv.config)?;
        self.do_add(inv, &conf)
    }

    fn del(&self, inv: &Invocation) -> Result<(), PluginError> {
        let conf = NetConf::from_config(&inv.config)?;
        if let Some(ipam) = conf.ipam_type()? {
            delegate(ipam, inv)?;
        }
        if let Some(path) = inv.netns.as_deref() {
            delete_container_iface(path, &inv.ifname)?;
        }
        if conf.ip_masq {
            masq::teardown(&inv.container_id, inv.network_name())?;
        }
        if conf.macspoofchk {
            spoofcheck::teardown(&masq::comment(inv.network_name(), &inv.container_id))?;
        }
        Ok(())
    }

    fn check(&self, inv: &Invocation) -> Result<(), PluginError> {
        let conf = NetConf::from_config(&inv.config)?;
        let prev = inv
            .prev_result()?
            .ok_or_else(|| PluginError::new(INTERNAL, "required prevResult missing"))?;
        if let Some(ipam) = conf.ipam_type()? {
            delegate(ipam, inv)?;
        }
        let mut nl = Rtnl::open().map_err(internal("opening rtnetlink"))?;
        let bridge = nl
            .link_by_name(&conf.bridge)
            .map_err(internal("checking the bridge"))?
            .filter(|l| l.kind.as_deref() == Some("bridge"))
            .ok_or_else(|| {
                PluginError::new(INTERNAL, format!("bridge {:?} not found", conf.bridge))
            })?;
        for host in prev
            .interfaces
            .iter()
            .filter(|i| i.sandbox.is_empty() && i.name != conf.bridge)
        {
            let link = nl
                .link_by_name(&host.name)
                .map_err(internal("checking the host veth"))?
                .ok_or_else(|| {
                    PluginError::new(
                        INTERNAL,
                        format!("host interface {:?} not found", host.name),
                    )
                })?;
            if link.master != Some(bridge.index) {
                return Err(PluginError::new(
                    INTERNAL,
                    format!("{:?} is not a port of bridge {:?}", host.name, conf.bridge),
                ));
            }
            check_port_vlans(&mut nl, &conf, &bridge, &link)?;
        }
        if conf.macspoofchk
            && !spoofcheck::is_set_up(&masq::comment(inv.network_name(), &inv.container_id))?
        {
            return Err(PluginError::new(
                INTERNAL,
                format!(
                    "the MAC spoof check rule of container {} is missing from bridge {}",
                    inv.container_id,
                    spoofcheck::TABLE
                ),
            ));
        }
        let netns = open_netns(inv)?;
        netns
            .run(|| check_container(&inv.ifname, &prev))
            .map_err(internal("entering the container's netns"))?
    }

    fn status(&self, inv: &Invocation) -> Result<(), PluginError> {
        let conf = NetConf::from_config(&inv.config)?;
        if let Some(ipam) = conf.ipam_type()? {
            delegate(ipam, inv)?;
        }
        Ok(())
    }

    fn gc(&self, inv: &Invocation) -> Result<(), PluginError> {
        self.status(inv)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::IpConfig;

    fn result(ips: &[(&str, Option<&str>)]) -> CniResult {
        CniResult {
            cni_version: "1.0.0".into(),
            ips: ips
                .iter()
                .map(|(a, g)| IpConfig {
                    address: a.parse().expect("literal"),
                    gateway: g.map(|g| g.parse().expect("literal")),
                    interface: None,
                })
                .collect(),
            ..CniResult::default()
        }
    }

    fn conf(v: serde_json::Value) -> NetConf {
        NetConf::from_config(v.as_object().expect("object")).expect("valid")
    }

    #[test]
    fn default_gateway_fills_gateways_and_routes() {
        let c = conf(serde_json::json!({"isDefaultGateway": true}));
        let mut r = result(&[("10.1.0.5/24", None), ("fd00::5/64", Some("fd00::1"))]);
        let gws = plan_gateways(&c, &mut r);
        assert_eq!(
            gws,
            vec![
                "10.1.0.1/24".parse::<IpNet>().expect("l"),
                "fd00::1/64".parse().expect("l")
            ]
        );
        assert_eq!(r.ips[0].interface, Some(CONTAINER_IF));
        let dsts: Vec<String> = r
            .routes
            .iter()
            .map(|r| format!("{} {:?}", r.dst, r.gw))
            .collect();
        assert_eq!(dsts, ["0.0.0.0/0 Some(10.1.0.1)", "::/0 Some(fd00::1)"]);
    }

    #[test]
    fn an_ipam_default_route_is_kept_and_no_gateway_is_invented_without_is_gateway() {
        let c = conf(serde_json::json!({"isDefaultGateway": true}));
        let mut r = result(&[("10.1.0.5/24", Some("10.1.0.254"))]);
        r.routes.push(Route {
            dst: "0.0.0.0/0".parse().expect("l"),
            gw: Some("10.1.0.254".parse().expect("l")),
            mtu: None,
            advmss: None,
            priority: None,
            table: None,
            scope: None,
        });
        plan_gateways(&c, &mut r);
        assert_eq!(r.routes.len(), 1);

        let plain = conf(serde_json::json!({}));
        let mut r = result(&[("10.1.0.5/24", None)]);
        assert!(plan_gateways(&plain, &mut r).is_empty());
        assert!(r.routes.is_empty() && r.ips[0].gateway.is_none());
    }
}

//! A synchronous rtnetlink socket ([`Rtnl`]) and the link, address and route operations Keel
//! needs. Messages are encoded by `netlink-packet-route`; this module owns the request/ack loop.
//!
//! An [`Rtnl`] acts in the network namespace of the thread that opened it: open one inside
//! [`crate::netns::Netns::run`] to work in a container. Operations take interface indexes;
//! [`Rtnl::link_by_name`] turns names into [`Link`]s.

use std::net::IpAddr;
use std::os::fd::{AsRawFd, BorrowedFd};

use ipnet::IpNet;
use netlink_packet_core::{
    NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL, NLM_F_REQUEST, NetlinkBuffer, NetlinkHeader,
    NetlinkMessage, NetlinkPayload,
};
use netlink_packet_route::address::{
    AddressAttribute, AddressFlags, AddressHeaderFlags, AddressMessage, AddressScope,
};
use netlink_packet_route::link::{
    AfSpecBridge, BridgeFlag, BridgeVlanInfo, BridgeVlanInfoFlags, InfoBridge, InfoBridgePort,
    InfoData, InfoKind, InfoPortData, InfoPortKind, InfoVeth, LinkAttribute, LinkExtentMask,
    LinkFlags, LinkInfo, LinkMessage,
};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteFlags, RouteHeader, RouteMessage, RouteMetric,
    RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};

use crate::error::{Error, Result};

/// Longest interface name the kernel accepts (IFNAMSIZ - 1).
pub const MAX_IFNAME: usize = 15;

/// A network interface as the kernel reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub index: u32,
    pub name: String,
    /// Hardware address (empty for links without one).
    pub mac: Vec<u8>,
    pub mtu: u32,
    pub up: bool,
    pub promisc: bool,
    /// Index of the bridge (or bond) this link is a port of.
    pub master: Option<u32>,
    /// `IFLA_INFO_KIND`: "bridge", "veth", ... (None for physical devices and loopback).
    pub kind: Option<String>,
    /// `IFLA_LINK`: for a veth, the peer's index (in the peer's namespace).
    pub peer_index: Option<u32>,
    /// For a bridge: whether it filters by VLAN (`IFLA_BR_VLAN_FILTERING`).
    pub vlan_filtering: Option<bool>,
}

/// A veth pair to create in one request ([`Rtnl::create_veth_pair`]): the host end can be
/// attached to a bridge and brought up, the peer created in another namespace with a MAC of
/// the caller's choosing, so that no further round trip is needed on the host side.
#[derive(Debug, Clone, Copy)]
pub struct VethSpec<'a> {
    pub name: &'a str,
    pub peer: &'a str,
    /// Create the peer directly in this namespace (its name only has to be free there).
    pub peer_netns: Option<BorrowedFd<'a>>,
    pub mtu: Option<u32>,
    /// Make the host end a port of this bridge (`IFLA_MASTER`).
    pub master: Option<u32>,
    /// Bring the host end up. (The peer cannot be: the kernel opens it before it is paired,
    /// and refuses with ENOTCONN.)
    pub up: bool,
    pub peer_mac: Option<[u8; 6]>,
}

/// One VLAN of a bridge port, as `bridge vlan show` lists it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BridgeVlan {
    pub vid: u16,
    /// Untagged frames entering the port get this VLAN.
    pub pvid: bool,
    /// Frames leave the port without a tag.
    pub untagged: bool,
}

/// Whether a bridge VLAN change applies to a port (through its bridge) or to the bridge
/// device's own port (`self`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VlanTarget {
    Port,
    BridgeItself,
}

impl Link {
    /// The MAC as `aa:bb:cc:dd:ee:ff` (empty when the link has none).
    pub fn mac_string(&self) -> String {
        format_mac(&self.mac)
    }
}

/// Formats a hardware address as lowercase colon-separated hex.
pub fn format_mac(mac: &[u8]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// An address on an interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Address {
    pub index: u32,
    pub net: IpNet,
    /// `IFA_F_*` flags (full 32 bits).
    pub flags: u32,
    pub scope: u8,
}

/// A route to add, delete or compare with the routing table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteSpec {
    pub dst: IpNet,
    pub gateway: Option<IpAddr>,
    /// Output interface index.
    pub oif: Option<u32>,
    /// Kernel scope (`RT_SCOPE_*`): 0 universe, 253 link, 254 host. None: link when there is no
    /// gateway, else universe.
    pub scope: Option<u8>,
    /// Routing table (None: main).
    pub table: Option<u32>,
    pub priority: Option<u32>,
    pub mtu: Option<u32>,
    pub advmss: Option<u32>,
    /// `RTNH_F_ONLINK`: the gateway is reachable on the link even if no connected route covers it.
    pub onlink: bool,
}

impl RouteSpec {
    /// A route to `dst` (via `gateway` if given) out of interface `oif`.
    pub fn new(dst: IpNet, gateway: Option<IpAddr>, oif: Option<u32>) -> RouteSpec {
        RouteSpec {
            dst,
            gateway,
            oif,
            scope: None,
            table: None,
            priority: None,
            mtu: None,
            advmss: None,
            onlink: false,
        }
    }
}

/// A synchronous NETLINK_ROUTE socket.
pub struct Rtnl {
    sock: Socket,
    seq: u32,
    buf: Vec<u8>,
}

impl std::fmt::Debug for Rtnl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Rtnl(fd {})", self.sock.as_raw_fd())
    }
}

fn sock_err(op: &str, source: std::io::Error) -> Error {
    Error::Netlink {
        op: op.to_string(),
        source,
    }
}

fn family_of(net: &IpNet) -> AddressFamily {
    match net {
        IpNet::V4(_) => AddressFamily::Inet,
        IpNet::V6(_) => AddressFamily::Inet6,
    }
}

impl Rtnl {
    /// Opens a socket in the calling thread's network namespace.
    pub fn open() -> Result<Rtnl> {
        let op = "opening an rtnetlink socket";
        let mut sock = Socket::new(NETLINK_ROUTE).map_err(|e| sock_err(op, e))?;
        sock.bind_auto().map_err(|e| sock_err(op, e))?;
        sock.connect(&SocketAddr::new(0, 0))
            .map_err(|e| sock_err(op, e))?;
        // Extended acks make the kernel's refusals more precise; not fatal if unsupported.
        let _ = sock.set_ext_ack(true);
        Ok(Rtnl {
            sock,
            seq: 0,
            buf: Vec::with_capacity(1 << 16),
        })
    }

    /// Sends one request and collects the answers (several for a dump). `op` names the request
    /// in errors.
    fn request(
        &mut self,
        msg: RouteNetlinkMessage,
        flags: u16,
        op: &dyn Fn() -> String,
    ) -> Result<Vec<RouteNetlinkMessage>> {
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | NLM_F_ACK | flags;
        header.sequence_number = seq;
        let mut packet = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(msg));
        packet.finalize();
        let mut out = vec![0u8; packet.buffer_len()];
        packet.serialize(&mut out);
        self.sock.send(&out, 0).map_err(|e| sock_err(&op(), e))?;

        let dump = flags & NLM_F_DUMP == NLM_F_DUMP;
        let mut answers = Vec::new();
        loop {
            self.buf.clear();
            self.sock
                .recv(&mut self.buf, 0)
                .map_err(|e| sock_err(&op(), e))?;
            let mut off = 0;
            while off < self.buf.len() {
                let len = NetlinkBuffer::new_checked(&self.buf[off..])
                    .map_err(|e| Error::Decode {
                        op: op(),
                        msg: e.to_string(),
                    })?
                    .length() as usize;
                if len == 0 || off + len > self.buf.len() {
                    return Err(Error::Decode {
                        op: op(),
                        msg: format!("message length {len} at offset {off}"),
                    });
                }
                let msg =
                    NetlinkMessage::<RouteNetlinkMessage>::deserialize(&self.buf[off..off + len])
                        .map_err(|e| Error::Decode {
                        op: op(),
                        msg: e.to_string(),
                    })?;
                off += (len + 3) & !3;
                if msg.header.sequence_number != seq {
                    continue;
                }
                match msg.payload {
                    NetlinkPayload::Error(e) => match e.code {
                        None => {
                            if !dump {
                                return Ok(answers);
                            }
                        }
                        Some(_) => return Err(sock_err(&op(), e.to_io())),
                    },
                    NetlinkPayload::Done(_) => return Ok(answers),
                    NetlinkPayload::InnerMessage(m) => answers.push(m),
                    _ => {}
                }
            }
        }
    }

    // ---- links ----

    /// All links of the namespace.
    pub fn links(&mut self) -> Result<Vec<Link>> {
        let msgs = self.request(
            RouteNetlinkMessage::GetLink(LinkMessage::default()),
            NLM_F_DUMP,
            &|| "listing links".to_string(),
        )?;
        Ok(msgs
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewLink(l) => Some(parse_link(&l)),
                _ => None,
            })
            .collect())
    }

    /// The link named `name`, or None.
    pub fn link_by_name(&mut self, name: &str) -> Result<Option<Link>> {
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::IfName(name.to_string()));
        self.get_link(msg, &|| format!("looking up interface {name:?}"))
    }

    /// The link with index `index`, or None.
    pub fn link_by_index(&mut self, index: u32) -> Result<Option<Link>> {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        self.get_link(msg, &|| format!("looking up interface #{index}"))
    }

    /// The link named `name`, or [`Error::NoSuchLink`].
    pub fn link(&mut self, name: &str) -> Result<Link> {
        self.link_by_name(name)?.ok_or_else(|| Error::NoSuchLink {
            name: name.to_string(),
            netns: None,
        })
    }

    fn get_link(&mut self, msg: LinkMessage, op: &dyn Fn() -> String) -> Result<Option<Link>> {
        match self.request(RouteNetlinkMessage::GetLink(msg), 0, op) {
            Ok(msgs) => Ok(msgs.into_iter().find_map(|m| match m {
                RouteNetlinkMessage::NewLink(l) => Some(parse_link(&l)),
                _ => None,
            })),
            Err(e) if e.errno() == Some(libc::ENODEV) => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn new_link(&mut self, msg: LinkMessage, flags: u16, op: &dyn Fn() -> String) -> Result<()> {
        self.request(RouteNetlinkMessage::NewLink(msg), flags, op)
            .map(|_| ())
    }

    fn set_link(&mut self, msg: LinkMessage, op: &dyn Fn() -> String) -> Result<()> {
        self.request(RouteNetlinkMessage::SetLink(msg), 0, op)
            .map(|_| ())
    }

    /// Creates a bridge (fails with EEXIST when the name is taken).
    pub fn create_bridge(&mut self, name: &str, mtu: Option<u32>) -> Result<()> {
        self.create_bridge_with(name, mtu, false)
    }

    /// Creates a bridge, with VLAN filtering on when asked (fails with EEXIST when the name is
    /// taken).
    pub fn create_bridge_with(
        &mut self,
        name: &str,
        mtu: Option<u32>,
        vlan_filtering: bool,
    ) -> Result<()> {
        check_name(name)?;
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::IfName(name.to_string()));
        if let Some(mtu) = mtu {
            msg.attributes.push(LinkAttribute::Mtu(mtu));
        }
        let mut info = vec![LinkInfo::Kind(InfoKind::Bridge)];
        if vlan_filtering {
            info.push(LinkInfo::Data(InfoData::Bridge(vec![
                InfoBridge::VlanFiltering(true),
            ])));
        }
        msg.attributes.push(LinkAttribute::LinkInfo(info));
        self.new_link(msg, NLM_F_CREATE | NLM_F_EXCL, &|| {
            format!("creating bridge {name:?}")
        })
    }

    /// Creates a veth pair `name` <-> `peer`. With `peer_netns`, the peer is created directly in
    /// that namespace (`IFLA_NET_NS_FD`), so its name only has to be free there.
    pub fn create_veth(
        &mut self,
        name: &str,
        peer: &str,
        peer_netns: Option<BorrowedFd<'_>>,
        mtu: Option<u32>,
    ) -> Result<()> {
        self.create_veth_pair(&VethSpec {
            name,
            peer,
            peer_netns,
            mtu,
            master: None,
            up: false,
            peer_mac: None,
        })
        .map(|_| ())
    }

    /// Creates a veth pair as `spec` says, in one request, and returns the host end (read back
    /// by name).
    pub fn create_veth_pair(&mut self, spec: &VethSpec<'_>) -> Result<Link> {
        let (name, peer) = (spec.name, spec.peer);
        check_name(name)?;
        check_name(peer)?;
        let mut peer_msg = LinkMessage::default();
        peer_msg
            .attributes
            .push(LinkAttribute::IfName(peer.to_string()));
        if let Some(mac) = spec.peer_mac {
            peer_msg
                .attributes
                .push(LinkAttribute::Address(mac.to_vec()));
        }
        if let Some(mtu) = spec.mtu {
            peer_msg.attributes.push(LinkAttribute::Mtu(mtu));
        }
        if let Some(fd) = spec.peer_netns {
            peer_msg
                .attributes
                .push(LinkAttribute::NetNsFd(fd.as_raw_fd()));
        }
        let mut msg = LinkMessage::default();
        if spec.up {
            msg.header.flags = LinkFlags::Up;
            msg.header.change_mask = LinkFlags::Up;
        }
        msg.attributes.push(LinkAttribute::IfName(name.to_string()));
        if let Some(mtu) = spec.mtu {
            msg.attributes.push(LinkAttribute::Mtu(mtu));
        }
        if let Some(master) = spec.master {
            msg.attributes.push(LinkAttribute::Controller(master));
        }
        msg.attributes.push(LinkAttribute::LinkInfo(vec![
            LinkInfo::Kind(InfoKind::Veth),
            LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(peer_msg))),
        ]));
        // No NLM_F_ECHO: the kernel would also echo the peer's creation, and fails the whole
        // request when the peer is in a namespace where this socket does not exist.
        self.new_link(msg, NLM_F_CREATE | NLM_F_EXCL, &|| {
            format!("creating veth pair {name:?} <-> {peer:?}")
        })?;
        self.link(name)
    }

    // ---- bridge VLANs ----

    /// Turns VLAN filtering on or off on an existing bridge.
    pub fn set_vlan_filtering(&mut self, bridge: u32, on: bool) -> Result<()> {
        let mut msg = LinkMessage::default();
        msg.header.index = bridge;
        msg.attributes.push(LinkAttribute::LinkInfo(vec![
            LinkInfo::Kind(InfoKind::Bridge),
            LinkInfo::Data(InfoData::Bridge(vec![InfoBridge::VlanFiltering(on)])),
        ]));
        self.new_link(msg, 0, &|| {
            format!("setting vlan_filtering {on} on bridge #{bridge}")
        })
    }

    fn vlan_message(index: u32, target: VlanTarget, infos: &[BridgeVlanInfo]) -> LinkMessage {
        let mut msg = LinkMessage::default();
        msg.header.interface_family = AddressFamily::Bridge;
        msg.header.index = index;
        let mut spec = vec![AfSpecBridge::Flags(match target {
            VlanTarget::Port => BridgeFlag::Controller,
            VlanTarget::BridgeItself => BridgeFlag::LowerDev,
        })];
        spec.extend(infos.iter().copied().map(AfSpecBridge::VlanInfo));
        msg.attributes.push(LinkAttribute::AfSpecBridge(spec));
        msg
    }

    fn vlan_infos(min: u16, max: u16, pvid: bool, untagged: bool) -> Vec<BridgeVlanInfo> {
        let mut flags = BridgeVlanInfoFlags::empty();
        if pvid {
            flags |= BridgeVlanInfoFlags::Pvid;
        }
        if untagged {
            flags |= BridgeVlanInfoFlags::Untagged;
        }
        if min == max {
            return vec![BridgeVlanInfo { flags, vid: min }];
        }
        vec![
            BridgeVlanInfo {
                flags: flags | BridgeVlanInfoFlags::RangeBegin,
                vid: min,
            },
            BridgeVlanInfo {
                flags: flags | BridgeVlanInfoFlags::RangeEnd,
                vid: max,
            },
        ]
    }

    /// Adds VLANs `min..=max` to a bridge port (or the bridge's own port), as
    /// `bridge vlan add vid MIN-MAX [pvid] [untagged] dev DEV [self]` does. A PVID is one VLAN.
    pub fn bridge_vlan_add(
        &mut self,
        index: u32,
        target: VlanTarget,
        (min, max): (u16, u16),
        pvid: bool,
        untagged: bool,
    ) -> Result<()> {
        let msg = Self::vlan_message(index, target, &Self::vlan_infos(min, max, pvid, untagged));
        self.set_link(msg, &|| {
            format!("adding vlan {min}-{max} to interface #{index}")
        })
    }

    /// Removes VLANs `min..=max` from a bridge port (or the bridge's own port).
    pub fn bridge_vlan_del(
        &mut self,
        index: u32,
        target: VlanTarget,
        (min, max): (u16, u16),
    ) -> Result<()> {
        let msg = Self::vlan_message(index, target, &Self::vlan_infos(min, max, false, false));
        self.request(RouteNetlinkMessage::DelLink(msg), 0, &|| {
            format!("removing vlan {min}-{max} from interface #{index}")
        })
        .map(|_| ())
    }

    /// The VLANs of a bridge port (or of the bridge's own port, asked by the bridge's index).
    pub fn bridge_vlans(&mut self, index: u32) -> Result<Vec<BridgeVlan>> {
        let mut q = LinkMessage::default();
        q.header.interface_family = AddressFamily::Bridge;
        q.attributes
            .push(LinkAttribute::ExtMask(vec![LinkExtentMask::Brvlan]));
        let msgs = self.request(RouteNetlinkMessage::GetLink(q), NLM_F_DUMP, &|| {
            format!("listing the vlans of interface #{index}")
        })?;
        let mut out = Vec::new();
        for m in msgs {
            let RouteNetlinkMessage::NewLink(l) = m else {
                continue;
            };
            if l.header.index != index {
                continue;
            }
            for a in &l.attributes {
                let LinkAttribute::AfSpecBridge(spec) = a else {
                    continue;
                };
                for s in spec {
                    if let AfSpecBridge::VlanInfo(v) = s
                        && !out.iter().any(|o: &BridgeVlan| o.vid == v.vid)
                    {
                        out.push(BridgeVlan {
                            vid: v.vid,
                            pvid: v.flags.contains(BridgeVlanInfoFlags::Pvid),
                            untagged: v.flags.contains(BridgeVlanInfoFlags::Untagged),
                        });
                    }
                }
            }
        }
        Ok(out)
    }

    fn set_flags(&mut self, index: u32, flag: LinkFlags, on: bool, what: &str) -> Result<()> {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        msg.header.change_mask = flag;
        if on {
            msg.header.flags = flag;
        }
        self.set_link(msg, &|| format!("{what} interface #{index}"))
    }

    /// Brings a link up.
    pub fn set_up(&mut self, index: u32) -> Result<()> {
        self.set_flags(index, LinkFlags::Up, true, "bringing up")
    }

    /// Brings a link down.
    pub fn set_down(&mut self, index: u32) -> Result<()> {
        self.set_flags(index, LinkFlags::Up, false, "bringing down")
    }

    /// Turns promiscuous mode on or off.
    pub fn set_promisc(&mut self, index: u32, on: bool) -> Result<()> {
        let what = if on {
            "enabling promiscuous mode on"
        } else {
            "disabling promiscuous mode on"
        };
        self.set_flags(index, LinkFlags::Promisc, on, what)
    }

    fn set_attr(&mut self, index: u32, attr: LinkAttribute, what: &str) -> Result<()> {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        msg.attributes.push(attr);
        self.set_link(msg, &|| format!("{what} of interface #{index}"))
    }

    /// Makes `index` a port of `master` (0 detaches it).
    pub fn set_master(&mut self, index: u32, master: u32) -> Result<()> {
        self.set_attr(
            index,
            LinkAttribute::Controller(master),
            &format!("setting master #{master}"),
        )
    }

    pub fn set_mtu(&mut self, index: u32, mtu: u32) -> Result<()> {
        self.set_attr(
            index,
            LinkAttribute::Mtu(mtu),
            &format!("setting MTU {mtu}"),
        )
    }

    pub fn set_mac(&mut self, index: u32, mac: &[u8]) -> Result<()> {
        self.set_attr(
            index,
            LinkAttribute::Address(mac.to_vec()),
            &format!("setting MAC {}", format_mac(mac)),
        )
    }

    /// Renames a link (it must be down).
    pub fn set_name(&mut self, index: u32, name: &str) -> Result<()> {
        check_name(name)?;
        self.set_attr(
            index,
            LinkAttribute::IfName(name.to_string()),
            &format!("renaming to {name:?}"),
        )
    }

    /// Moves a link into another namespace.
    pub fn move_to_netns(&mut self, index: u32, netns: BorrowedFd<'_>) -> Result<()> {
        self.set_attr(
            index,
            LinkAttribute::NetNsFd(netns.as_raw_fd()),
            "moving to another network namespace",
        )
    }

    /// Sets hairpin mode on a bridge port (`IFLA_BRPORT_MODE`): frames may leave through the
    /// port they came in by, so a container can reach itself through a service IP.
    pub fn set_hairpin(&mut self, index: u32, on: bool) -> Result<()> {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        msg.attributes.push(LinkAttribute::LinkInfo(vec![
            LinkInfo::PortKind(InfoPortKind::Bridge),
            LinkInfo::PortData(InfoPortData::BridgePort(vec![InfoBridgePort::HairpinMode(
                on,
            )])),
        ]));
        self.new_link(msg, 0, &|| {
            format!("setting hairpin mode {on} on bridge port #{index}")
        })
    }

    /// Reads a bridge port's hairpin mode.
    pub fn hairpin(&mut self, index: u32) -> Result<bool> {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        let msgs = self.request(RouteNetlinkMessage::GetLink(msg), 0, &|| {
            format!("reading bridge port #{index}")
        })?;
        for m in msgs {
            if let RouteNetlinkMessage::NewLink(l) = m {
                for a in &l.attributes {
                    if let LinkAttribute::LinkInfo(infos) = a {
                        for i in infos {
                            if let LinkInfo::PortData(InfoPortData::BridgePort(p)) = i {
                                return Ok(p.contains(&InfoBridgePort::HairpinMode(true)));
                            }
                        }
                    }
                }
            }
        }
        Ok(false)
    }

    /// Deletes a link (a veth takes its peer with it).
    pub fn delete_link(&mut self, index: u32) -> Result<()> {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        self.request(RouteNetlinkMessage::DelLink(msg), 0, &|| {
            format!("deleting interface #{index}")
        })
        .map(|_| ())
    }

    // ---- addresses ----

    /// Adds `net` (address with prefix) to a link. `nodad` sets IFA_F_NODAD (IPv6: usable at once).
    pub fn add_address(&mut self, index: u32, net: IpNet, nodad: bool) -> Result<()> {
        let mut msg = AddressMessage::default();
        msg.header.family = family_of(&net);
        msg.header.prefix_len = net.prefix_len();
        msg.header.index = index;
        msg.header.scope = AddressScope::Universe;
        let ip = net.addr();
        msg.attributes.push(AddressAttribute::Local(ip));
        msg.attributes.push(AddressAttribute::Address(ip));
        if let IpNet::V4(v4) = net
            && v4.prefix_len() < 31
        {
            msg.attributes
                .push(AddressAttribute::Broadcast(v4.broadcast()));
        }
        if nodad {
            msg.header.flags = AddressHeaderFlags::Nodad;
            msg.attributes
                .push(AddressAttribute::Flags(AddressFlags::Nodad));
        }
        self.request(
            RouteNetlinkMessage::NewAddress(msg),
            NLM_F_CREATE | NLM_F_EXCL,
            &|| format!("adding address {net} to interface #{index}"),
        )
        .map(|_| ())
    }

    /// Removes `net` from a link.
    pub fn del_address(&mut self, index: u32, net: IpNet) -> Result<()> {
        let mut msg = AddressMessage::default();
        msg.header.family = family_of(&net);
        msg.header.prefix_len = net.prefix_len();
        msg.header.index = index;
        msg.attributes.push(AddressAttribute::Local(net.addr()));
        msg.attributes.push(AddressAttribute::Address(net.addr()));
        self.request(RouteNetlinkMessage::DelAddress(msg), 0, &|| {
            format!("removing address {net} from interface #{index}")
        })
        .map(|_| ())
    }

    /// The addresses of the namespace, or of one link.
    pub fn addresses(&mut self, index: Option<u32>) -> Result<Vec<Address>> {
        let msgs = self.request(
            RouteNetlinkMessage::GetAddress(AddressMessage::default()),
            NLM_F_DUMP,
            &|| "listing addresses".to_string(),
        )?;
        let mut out = Vec::new();
        for m in msgs {
            let RouteNetlinkMessage::NewAddress(a) = m else {
                continue;
            };
            if index.is_some_and(|i| i != a.header.index) {
                continue;
            }
            let mut ip = None;
            let mut local = None;
            let mut flags = u32::from(a.header.flags.bits());
            for attr in &a.attributes {
                match attr {
                    AddressAttribute::Address(x) => ip = Some(*x),
                    AddressAttribute::Local(x) => local = Some(*x),
                    AddressAttribute::Flags(f) => flags = f.bits(),
                    _ => {}
                }
            }
            let Some(ip) = local.or(ip) else { continue };
            let Ok(net) = IpNet::new(ip, a.header.prefix_len) else {
                continue;
            };
            out.push(Address {
                index: a.header.index,
                net,
                flags,
                scope: u8::from(a.header.scope),
            });
        }
        Ok(out)
    }

    // ---- routes ----

    fn route_message(route: &RouteSpec) -> RouteMessage {
        let mut msg = RouteMessage::default();
        msg.header.address_family = family_of(&route.dst);
        msg.header.destination_prefix_length = route.dst.prefix_len();
        msg.header.protocol = RouteProtocol::Boot;
        msg.header.kind = RouteType::Unicast;
        msg.header.scope = match route.scope {
            Some(s) => RouteScope::from(s),
            None if route.gateway.is_none() => RouteScope::Link,
            None => RouteScope::Universe,
        };
        let table = route.table.unwrap_or(u32::from(RouteHeader::RT_TABLE_MAIN));
        msg.header.table = u8::try_from(table).unwrap_or(RouteHeader::RT_TABLE_UNSPEC);
        if table > 255 {
            msg.attributes.push(RouteAttribute::Table(table));
        }
        if route.onlink {
            msg.header.flags = RouteFlags::Onlink;
        }
        if route.dst.prefix_len() > 0 {
            msg.attributes
                .push(RouteAttribute::Destination(RouteAddress::from(
                    route.dst.network(),
                )));
        }
        if let Some(gw) = route.gateway {
            msg.attributes
                .push(RouteAttribute::Gateway(RouteAddress::from(gw)));
        }
        if let Some(oif) = route.oif {
            msg.attributes.push(RouteAttribute::Oif(oif));
        }
        if let Some(p) = route.priority {
            msg.attributes.push(RouteAttribute::Priority(p));
        }
        let mut metrics = Vec::new();
        if let Some(mtu) = route.mtu {
            metrics.push(RouteMetric::Mtu(mtu));
        }
        if let Some(advmss) = route.advmss {
            metrics.push(RouteMetric::Advmss(advmss));
        }
        if !metrics.is_empty() {
            msg.attributes.push(RouteAttribute::Metrics(metrics));
        }
        msg
    }

    /// Adds a route (EEXIST when an identical one is there).
    pub fn add_route(&mut self, route: &RouteSpec) -> Result<()> {
        let msg = Self::route_message(route);
        self.request(
            RouteNetlinkMessage::NewRoute(msg),
            NLM_F_CREATE | NLM_F_EXCL,
            &|| describe_route("adding route", route),
        )
        .map(|_| ())
    }

    /// Deletes a route.
    pub fn del_route(&mut self, route: &RouteSpec) -> Result<()> {
        let mut msg = Self::route_message(route);
        msg.header.protocol = RouteProtocol::Unspec;
        msg.header.scope = RouteScope::NoWhere;
        self.request(RouteNetlinkMessage::DelRoute(msg), 0, &|| {
            describe_route("deleting route", route)
        })
        .map(|_| ())
    }

    /// The unicast routes of the main table (or of `table`), IPv4 and IPv6.
    pub fn routes(&mut self, table: Option<u32>) -> Result<Vec<RouteSpec>> {
        let want = table.unwrap_or(u32::from(RouteHeader::RT_TABLE_MAIN));
        let mut out = Vec::new();
        for family in [AddressFamily::Inet, AddressFamily::Inet6] {
            let mut q = RouteMessage::default();
            q.header.address_family = family;
            let msgs = self.request(RouteNetlinkMessage::GetRoute(q), NLM_F_DUMP, &|| {
                "listing routes".to_string()
            })?;
            for m in msgs {
                let RouteNetlinkMessage::NewRoute(r) = m else {
                    continue;
                };
                if r.header.kind != RouteType::Unicast {
                    continue;
                }
                if let Some(spec) = parse_route(&r)
                    && spec.table == Some(want)
                {
                    out.push(spec);
                }
            }
        }
        Ok(out)
    }
}

fn describe_route(what: &str, r: &RouteSpec) -> String {
    let mut s = format!("{what} to {}", r.dst);
    if let Some(gw) = r.gateway {
        s.push_str(&format!(" via {gw}"));
    }
    if let Some(oif) = r.oif {
        s.push_str(&format!(" dev #{oif}"));
    }
    s
}

fn check_name(name: &str) -> Result<()> {
    if name.is_empty()
        || name.len() > MAX_IFNAME
        || name == "."
        || name == ".."
        || name.contains(['/', ':', '\0'])
        || name.chars().any(char::is_whitespace)
    {
        return Err(Error::Invalid(format!(
            "invalid interface name {name:?} (1 to {MAX_IFNAME} bytes, no '/', ':' or spaces)"
        )));
    }
    Ok(())
}

fn parse_link(l: &LinkMessage) -> Link {
    let mut link = Link {
        index: l.header.index,
        name: String::new(),
        mac: Vec::new(),
        mtu: 0,
        up: l.header.flags.contains(LinkFlags::Up),
        promisc: l.header.flags.contains(LinkFlags::Promisc),
        master: None,
        kind: None,
        peer_index: None,
        vlan_filtering: None,
    };
    for a in &l.attributes {
        match a {
            LinkAttribute::IfName(n) => link.name = n.clone(),
            LinkAttribute::Address(m) => link.mac = m.clone(),
            LinkAttribute::Mtu(m) => link.mtu = *m,
            LinkAttribute::Controller(m) if *m != 0 => link.master = Some(*m),
            LinkAttribute::Link(p) if *p != 0 => link.peer_index = Some(*p),
            LinkAttribute::LinkInfo(infos) => {
                for i in infos {
                    match i {
                        LinkInfo::Kind(k) => link.kind = Some(k.to_string()),
                        LinkInfo::Data(InfoData::Bridge(opts)) => {
                            link.vlan_filtering = opts.iter().find_map(|o| match o {
                                InfoBridge::VlanFiltering(on) => Some(*on),
                                _ => None,
                            });
                        }
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    link
}

fn route_ip(a: &RouteAddress) -> Option<IpAddr> {
    match a {
        RouteAddress::Inet(v) => Some(IpAddr::V4(*v)),
        RouteAddress::Inet6(v) => Some(IpAddr::V6(*v)),
        _ => None,
    }
}

fn parse_route(r: &RouteMessage) -> Option<RouteSpec> {
    let mut dst = None;
    let mut spec = RouteSpec::new(
        match r.header.address_family {
            AddressFamily::Inet6 => IpNet::V6(Default::default()),
            _ => IpNet::V4(Default::default()),
        },
        None,
        None,
    );
    spec.scope = Some(u8::from(r.header.scope));
    spec.table = Some(u32::from(r.header.table));
    spec.onlink = r.header.flags.contains(RouteFlags::Onlink);
    for a in &r.attributes {
        match a {
            RouteAttribute::Destination(d) => dst = route_ip(d),
            RouteAttribute::Gateway(g) => spec.gateway = route_ip(g),
            RouteAttribute::Oif(o) => spec.oif = Some(*o),
            RouteAttribute::Priority(p) => spec.priority = Some(*p),
            RouteAttribute::Table(t) => spec.table = Some(*t),
            RouteAttribute::Metrics(ms) => {
                for m in ms {
                    match m {
                        RouteMetric::Mtu(v) => spec.mtu = Some(*v),
                        RouteMetric::Advmss(v) => spec.advmss = Some(*v),
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    if let Some(ip) = dst {
        spec.dst = IpNet::new(ip, r.header.destination_prefix_length).ok()?;
    }
    Some(spec)
}

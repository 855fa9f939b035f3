//! nf_tables over netlink, without the `nft` binary: atomic transactions ([`Batch`]) of tables,
//! chains and rules built from a small set of expressions ([`Expr`]), and rule listing by
//! comment. Enough for the CNI bridge's masquerade rules and the portmap plugin's DNAT rules
//! (layer 4 protocol and port matches, `fib daddr type local`, `ct status dnat`, `dnat to`);
//! keel-proxy will extend [`Expr`].
//!
//! Wire format (include/uapi/linux/netfilter/nf_tables.h): every message is an `nlmsghdr`, an
//! `nfgenmsg` (family, version 0, resource id big-endian) and attributes; numbers inside
//! attributes are big-endian. Changes travel in a batch framed by `NFNL_MSG_BATCH_BEGIN/END`,
//! which the kernel applies all or nothing; every message asks for an ack, so the reply is one
//! ack or error per message. Comments are stored as nft stores them (userdata TLV type 0), so
//! `nft list` shows them.

use std::net::IpAddr;
use std::os::fd::AsRawFd;

use ipnet::IpNet;
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_NETFILTER};

use crate::error::{Error, Result};

const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFNL_MSG_BATCH_BEGIN: u16 = 16;
const NFNL_MSG_BATCH_END: u16 = 17;

const NFT_MSG_NEWTABLE: u16 = 0;
const NFT_MSG_DELTABLE: u16 = 2;
const NFT_MSG_NEWCHAIN: u16 = 3;
const NFT_MSG_NEWRULE: u16 = 6;
const NFT_MSG_GETRULE: u16 = 7;
const NFT_MSG_DELRULE: u16 = 8;

const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_DUMP: u16 = 0x300;
/// Set on the messages of a dump that a concurrent change interrupted.
const NLM_F_DUMP_INTR: u16 = 0x10;
/// How often a dump (or a deletion built on one) is taken again before giving up.
const MAX_DUMP_ATTEMPTS: usize = 16;
const NLM_F_CREATE: u16 = 0x400;
const NLM_F_APPEND: u16 = 0x800;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLA_F_NESTED: u16 = 0x8000;

const NFTA_TABLE_NAME: u16 = 1;
const NFTA_CHAIN_TABLE: u16 = 1;
const NFTA_CHAIN_NAME: u16 = 3;
const NFTA_CHAIN_HOOK: u16 = 4;
const NFTA_CHAIN_POLICY: u16 = 5;
const NFTA_CHAIN_TYPE: u16 = 7;
const NFTA_HOOK_HOOKNUM: u16 = 1;
const NFTA_HOOK_PRIORITY: u16 = 2;
const NFTA_RULE_TABLE: u16 = 1;
const NFTA_RULE_CHAIN: u16 = 2;
const NFTA_RULE_HANDLE: u16 = 3;
const NFTA_RULE_EXPRESSIONS: u16 = 4;
const NFTA_RULE_USERDATA: u16 = 7;
const NFTA_LIST_ELEM: u16 = 1;
const NFTA_EXPR_NAME: u16 = 1;
const NFTA_EXPR_DATA: u16 = 2;
const NFTA_DATA_VALUE: u16 = 1;
const NFTA_DATA_VERDICT: u16 = 2;
const NFTA_VERDICT_CODE: u16 = 1;

/// Userdata TLV type nft uses for a rule's comment.
const UDATA_RULE_COMMENT: u8 = 0;

/// `NFT_REG_1`: a 16-byte register, wide enough for an IPv6 address.
const REG_1: u32 = 1;
/// `NFT_REG_2`: the port operand of `dnat to addr:port`.
const REG_2: u32 = 2;
const REG_VERDICT: u32 = 0;
/// `NFT_RETURN`.
const VERDICT_RETURN: i32 = -5;

/// Address family of a table (`NFPROTO_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    Ipv4,
    Ipv6,
    /// Frames crossing a Linux bridge (`bridge` tables, e.g. the MAC spoof check).
    Bridge,
}

impl Family {
    fn proto(self) -> u8 {
        match self {
            Family::Ipv4 => 2,
            Family::Ipv6 => 10,
            Family::Bridge => 7,
        }
    }

    pub fn of(ip: &IpAddr) -> Family {
        if ip.is_ipv4() {
            Family::Ipv4
        } else {
            Family::Ipv6
        }
    }

    /// `ip` or `ip6`, as nft names it.
    pub fn name(self) -> &'static str {
        match self {
            Family::Ipv4 => "ip",
            Family::Ipv6 => "ip6",
            Family::Bridge => "bridge",
        }
    }
}

/// Offset and length of the source (or destination) address of `net`'s IP version in the
/// network header.
fn addr_offsets(net: &IpNet, source: bool) -> (u32, u32) {
    match (net, source) {
        (IpNet::V4(_), true) => (12, 4),
        (IpNet::V4(_), false) => (16, 4),
        (IpNet::V6(_), true) => (8, 16),
        (IpNet::V6(_), false) => (24, 16),
    }
}

/// Netfilter hooks a base chain can attach to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hook {
    Prerouting,
    Input,
    Forward,
    Output,
    Postrouting,
}

impl Hook {
    fn num(self) -> u32 {
        match self {
            Hook::Prerouting => 0,
            Hook::Input => 1,
            Hook::Forward => 2,
            Hook::Output => 3,
            Hook::Postrouting => 4,
        }
    }
}

/// The type of a base chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChainType {
    Nat,
    Filter,
}

/// Comparison operators of `cmp`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    Eq,
    Neq,
}

/// The expressions a rule is built from (evaluated in order; a false `cmp` ends the rule).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expr {
    /// Load `len` bytes at `offset` of the network header into register 1.
    NetworkPayload { offset: u32, len: u32 },
    /// Load `len` bytes at `offset` of the link layer header into register 1 (`ether saddr`).
    LinkPayload { offset: u32, len: u32 },
    /// Register 1 &= mask (the mask's length is the operand length).
    Mask(Vec<u8>),
    /// Compare register 1 with `data`.
    Cmp(CmpOp, Vec<u8>),
    /// Stop evaluating this chain.
    Return,
    /// Drop the packet (or frame).
    Drop,
    /// Source NAT to the outgoing interface's address.
    Masquerade,
    /// Load `len` bytes at `offset` of the transport header into register 1 (`th dport`).
    TransportPayload { offset: u32, len: u32 },
    /// Load a `meta` key into register 1 (e.g. [`META_L4PROTO`], one byte).
    Meta(u32),
    /// Load the routing type of the destination address into register 1 (`fib daddr type`,
    /// a host-endian u32 `RTN_*`; compare with [`Expr::fib_daddr_local`]).
    FibDaddrType,
    /// Load the conntrack status bits into register 1 (host-endian u32).
    CtStatus,
    /// Destination NAT to `addr:port` (`dnat to`).
    Dnat { addr: IpAddr, port: u16 },
}

/// `meta l4proto`: the layer 4 protocol number, one byte.
pub const META_L4PROTO: u32 = 16;
/// `meta iifname`: the input interface's name, IFNAMSIZ (16) bytes, NUL-padded.
pub const META_IIFNAME: u32 = 6;
/// `NF_DROP`.
const VERDICT_DROP: i32 = 0;
/// `RTN_LOCAL`: an address of this host.
const RTN_LOCAL: u32 = 2;
/// `IPS_DST_NAT`: the connection's destination was translated.
const IPS_DST_NAT: u32 = 0x20;

impl Expr {
    /// `<saddr|daddr> in net` as expressions (exact match for a host prefix).
    fn addr_match((offset, len): (u32, u32), op: CmpOp, net: &IpNet) -> Vec<Expr> {
        let mut out = vec![Expr::NetworkPayload { offset, len }];
        if net.prefix_len() != net.max_prefix_len() {
            out.push(Expr::Mask(ip_bytes(&net.netmask())));
        }
        out.push(Expr::Cmp(op, ip_bytes(&net.network())));
        out
    }

    /// `ip saddr == net` (or `ip6 saddr`, after `net`'s IP version).
    pub fn saddr(op: CmpOp, net: &IpNet) -> Vec<Expr> {
        Self::addr_match(addr_offsets(net, true), op, net)
    }

    /// `ip daddr == net` (or `ip6 daddr`).
    pub fn daddr(op: CmpOp, net: &IpNet) -> Vec<Expr> {
        Self::addr_match(addr_offsets(net, false), op, net)
    }

    /// `meta iifname == name` (exact name; names are at most 15 bytes).
    pub fn iifname(name: &str) -> Vec<Expr> {
        let mut padded = [0u8; 16];
        let n = name.len().min(15);
        padded[..n].copy_from_slice(&name.as_bytes()[..n]);
        vec![
            Expr::Meta(META_IIFNAME),
            Expr::Cmp(CmpOp::Eq, padded.to_vec()),
        ]
    }

    /// `ether saddr <op> mac`.
    pub fn ether_saddr(op: CmpOp, mac: [u8; 6]) -> Vec<Expr> {
        vec![
            Expr::LinkPayload { offset: 6, len: 6 },
            Expr::Cmp(op, mac.to_vec()),
        ]
    }

    /// `meta l4proto == proto` (6 tcp, 17 udp, 132 sctp).
    pub fn l4proto(proto: u8) -> Vec<Expr> {
        vec![Expr::Meta(META_L4PROTO), Expr::Cmp(CmpOp::Eq, vec![proto])]
    }

    /// `th dport == port` (after an [`Expr::l4proto`] match).
    pub fn dport(port: u16) -> Vec<Expr> {
        vec![
            Expr::TransportPayload { offset: 2, len: 2 },
            Expr::Cmp(CmpOp::Eq, port.to_be_bytes().to_vec()),
        ]
    }

    /// `fib daddr type local`: the destination is an address of this host.
    pub fn fib_daddr_local() -> Vec<Expr> {
        vec![
            Expr::FibDaddrType,
            Expr::Cmp(CmpOp::Eq, RTN_LOCAL.to_ne_bytes().to_vec()),
        ]
    }

    /// `ct status dnat`: the connection went through a destination NAT.
    pub fn ct_status_dnat() -> Vec<Expr> {
        vec![
            Expr::CtStatus,
            Expr::Mask(IPS_DST_NAT.to_ne_bytes().to_vec()),
            Expr::Cmp(CmpOp::Neq, vec![0; 4]),
        ]
    }

    fn immediate(m: &mut Msg, reg: u32, value: &[u8]) {
        let elem = m.nest_start(NFTA_LIST_ELEM);
        m.attr_str(NFTA_EXPR_NAME, "immediate");
        let data = m.nest_start(NFTA_EXPR_DATA);
        m.attr_u32(1, reg); // NFTA_IMMEDIATE_DREG
        let d = m.nest_start(2); // NFTA_IMMEDIATE_DATA
        m.attr(NFTA_DATA_VALUE, value);
        m.nest_end(d);
        m.nest_end(data);
        m.nest_end(elem);
    }

    fn emit(&self, m: &mut Msg) {
        if let Expr::Dnat { addr, port } = self {
            // Two immediates load the operands, then the nat expression reads them.
            Self::immediate(m, REG_1, &ip_bytes(addr));
            Self::immediate(m, REG_2, &port.to_be_bytes());
            let elem = m.nest_start(NFTA_LIST_ELEM);
            m.attr_str(NFTA_EXPR_NAME, "nat");
            let data = m.nest_start(NFTA_EXPR_DATA);
            m.attr_u32(1, 1); // NFTA_NAT_TYPE: NFT_NAT_DNAT
            m.attr_u32(2, u32::from(Family::of(addr).proto())); // NFTA_NAT_FAMILY
            m.attr_u32(3, REG_1); // NFTA_NAT_REG_ADDR_MIN
            m.attr_u32(5, REG_2); // NFTA_NAT_REG_PROTO_MIN
            m.nest_end(data);
            m.nest_end(elem);
            return;
        }
        let elem = m.nest_start(NFTA_LIST_ELEM);
        match self {
            Expr::LinkPayload { offset, len }
            | Expr::NetworkPayload { offset, len }
            | Expr::TransportPayload { offset, len } => {
                // NFTA_PAYLOAD_BASE: NFT_PAYLOAD_{LL,NETWORK,TRANSPORT}_HEADER.
                let base = match self {
                    Expr::LinkPayload { .. } => 0,
                    Expr::NetworkPayload { .. } => 1,
                    _ => 2,
                };
                m.attr_str(NFTA_EXPR_NAME, "payload");
                let data = m.nest_start(NFTA_EXPR_DATA);
                m.attr_u32(1, REG_1); // NFTA_PAYLOAD_DREG
                m.attr_u32(2, base);
                m.attr_u32(3, *offset); // NFTA_PAYLOAD_OFFSET
                m.attr_u32(4, *len); // NFTA_PAYLOAD_LEN
                m.nest_end(data);
            }
            Expr::Mask(mask) => {
                m.attr_str(NFTA_EXPR_NAME, "bitwise");
                let data = m.nest_start(NFTA_EXPR_DATA);
                m.attr_u32(1, REG_1); // NFTA_BITWISE_SREG
                m.attr_u32(2, REG_1); // NFTA_BITWISE_DREG
                m.attr_u32(3, mask.len() as u32); // NFTA_BITWISE_LEN
                let mk = m.nest_start(4); // NFTA_BITWISE_MASK
                m.attr(NFTA_DATA_VALUE, mask);
                m.nest_end(mk);
                let xor = m.nest_start(5); // NFTA_BITWISE_XOR
                m.attr(NFTA_DATA_VALUE, &vec![0u8; mask.len()]);
                m.nest_end(xor);
                m.nest_end(data);
            }
            Expr::Cmp(op, value) => {
                m.attr_str(NFTA_EXPR_NAME, "cmp");
                let data = m.nest_start(NFTA_EXPR_DATA);
                m.attr_u32(1, REG_1); // NFTA_CMP_SREG
                m.attr_u32(2, if *op == CmpOp::Eq { 0 } else { 1 }); // NFTA_CMP_OP
                let d = m.nest_start(3); // NFTA_CMP_DATA
                m.attr(NFTA_DATA_VALUE, value);
                m.nest_end(d);
                m.nest_end(data);
            }
            Expr::Return | Expr::Drop => {
                let code = if *self == Expr::Drop {
                    VERDICT_DROP
                } else {
                    VERDICT_RETURN
                };
                m.attr_str(NFTA_EXPR_NAME, "immediate");
                let data = m.nest_start(NFTA_EXPR_DATA);
                m.attr_u32(1, REG_VERDICT); // NFTA_IMMEDIATE_DREG
                let d = m.nest_start(2); // NFTA_IMMEDIATE_DATA
                let v = m.nest_start(NFTA_DATA_VERDICT);
                m.attr(NFTA_VERDICT_CODE, &code.to_be_bytes());
                m.nest_end(v);
                m.nest_end(d);
                m.nest_end(data);
            }
            Expr::Masquerade => {
                m.attr_str(NFTA_EXPR_NAME, "masq");
            }
            Expr::Meta(key) => {
                m.attr_str(NFTA_EXPR_NAME, "meta");
                let data = m.nest_start(NFTA_EXPR_DATA);
                m.attr_u32(1, REG_1); // NFTA_META_DREG
                m.attr_u32(2, *key); // NFTA_META_KEY
                m.nest_end(data);
            }
            Expr::FibDaddrType => {
                m.attr_str(NFTA_EXPR_NAME, "fib");
                let data = m.nest_start(NFTA_EXPR_DATA);
                m.attr_u32(1, REG_1); // NFTA_FIB_DREG
                m.attr_u32(2, 3); // NFTA_FIB_RESULT: NFT_FIB_RESULT_ADDRTYPE
                m.attr_u32(3, 2); // NFTA_FIB_FLAGS: NFTA_FIB_F_DADDR
                m.nest_end(data);
            }
            Expr::CtStatus => {
                m.attr_str(NFTA_EXPR_NAME, "ct");
                let data = m.nest_start(NFTA_EXPR_DATA);
                m.attr_u32(1, REG_1); // NFTA_CT_DREG
                m.attr_u32(2, 2); // NFTA_CT_KEY: NFT_CT_STATUS
                m.nest_end(data);
            }
            Expr::Dnat { .. } => {}
        }
        m.nest_end(elem);
    }
}

fn ip_bytes(ip: &IpAddr) -> Vec<u8> {
    match ip {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    }
}

/// One netlink message being built.
struct Msg {
    buf: Vec<u8>,
}

impl Msg {
    fn new(msg_type: u16, flags: u16, seq: u32, family: u8, res_id: u16) -> Msg {
        let mut buf = Vec::with_capacity(256);
        buf.extend_from_slice(&0u32.to_ne_bytes()); // length, set in finish
        buf.extend_from_slice(&msg_type.to_ne_bytes());
        buf.extend_from_slice(&flags.to_ne_bytes());
        buf.extend_from_slice(&seq.to_ne_bytes());
        buf.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel's
        buf.push(family);
        buf.push(0); // NFNETLINK_V0
        buf.extend_from_slice(&res_id.to_be_bytes());
        Msg { buf }
    }

    fn align(&mut self) {
        while !self.buf.len().is_multiple_of(4) {
            self.buf.push(0);
        }
    }

    fn attr(&mut self, kind: u16, value: &[u8]) {
        let len = (4 + value.len()) as u16;
        self.buf.extend_from_slice(&len.to_ne_bytes());
        self.buf.extend_from_slice(&kind.to_ne_bytes());
        self.buf.extend_from_slice(value);
        self.align();
    }

    fn attr_str(&mut self, kind: u16, value: &str) {
        let mut v = value.as_bytes().to_vec();
        v.push(0);
        self.attr(kind, &v);
    }

    fn attr_u32(&mut self, kind: u16, value: u32) {
        self.attr(kind, &value.to_be_bytes());
    }

    fn nest_start(&mut self, kind: u16) -> usize {
        let at = self.buf.len();
        self.buf.extend_from_slice(&0u16.to_ne_bytes());
        self.buf
            .extend_from_slice(&(kind | NLA_F_NESTED).to_ne_bytes());
        at
    }

    fn nest_end(&mut self, at: usize) {
        let len = (self.buf.len() - at) as u16;
        self.buf[at..at + 2].copy_from_slice(&len.to_ne_bytes());
    }

    fn finish(mut self) -> Vec<u8> {
        self.align();
        let len = self.buf.len() as u32;
        self.buf[0..4].copy_from_slice(&len.to_ne_bytes());
        self.buf
    }
}

/// A rule as listed by [`Nft::rules`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleInfo {
    pub chain: String,
    pub handle: u64,
    pub comment: Option<String>,
}

/// An atomic nf_tables transaction: everything in it applies, or nothing.
#[derive(Debug, Default)]
pub struct Batch {
    msgs: Vec<(u16, u16, u8, Vec<u8>)>,
    what: Vec<String>,
}

impl Batch {
    pub fn new() -> Batch {
        Batch::default()
    }

    fn push(&mut self, what: String, msg_type: u16, flags: u16, family: Family, attrs: Msg) {
        // Attributes were built in a scratch message; keep only them (after the 20-byte headers).
        let body = attrs.finish()[20..].to_vec();
        self.msgs.push((msg_type, flags, family.proto(), body));
        self.what.push(what);
    }

    fn scratch() -> Msg {
        Msg::new(0, 0, 0, 0, 0)
    }

    /// Creates the table if it does not exist.
    pub fn add_table(&mut self, family: Family, table: &str) -> &mut Batch {
        let mut m = Self::scratch();
        m.attr_str(NFTA_TABLE_NAME, table);
        self.push(
            format!("adding table {} {table}", family.name()),
            NFT_MSG_NEWTABLE,
            NLM_F_CREATE,
            family,
            m,
        );
        self
    }

    /// Deletes a table with everything in it.
    pub fn del_table(&mut self, family: Family, table: &str) -> &mut Batch {
        let mut m = Self::scratch();
        m.attr_str(NFTA_TABLE_NAME, table);
        self.push(
            format!("deleting table {} {table}", family.name()),
            NFT_MSG_DELTABLE,
            0,
            family,
            m,
        );
        self
    }

    /// Creates a NAT base chain on `hook` at `priority` (accept policy) if it does not exist.
    pub fn add_nat_chain(
        &mut self,
        family: Family,
        table: &str,
        chain: &str,
        hook: Hook,
        priority: i32,
    ) -> &mut Batch {
        self.add_base_chain(family, table, chain, ChainType::Nat, hook, priority)
    }

    /// Creates a base chain of `kind` on `hook` at `priority` (accept policy) if it does not
    /// exist.
    pub fn add_base_chain(
        &mut self,
        family: Family,
        table: &str,
        chain: &str,
        kind: ChainType,
        hook: Hook,
        priority: i32,
    ) -> &mut Batch {
        let mut m = Self::scratch();
        m.attr_str(NFTA_CHAIN_TABLE, table);
        m.attr_str(NFTA_CHAIN_NAME, chain);
        let h = m.nest_start(NFTA_CHAIN_HOOK);
        m.attr_u32(NFTA_HOOK_HOOKNUM, hook.num());
        m.attr(NFTA_HOOK_PRIORITY, &priority.to_be_bytes());
        m.nest_end(h);
        m.attr_u32(NFTA_CHAIN_POLICY, 1); // NF_ACCEPT
        m.attr_str(
            NFTA_CHAIN_TYPE,
            match kind {
                ChainType::Nat => "nat",
                ChainType::Filter => "filter",
            },
        );
        self.push(
            format!("adding chain {} {table} {chain}", family.name()),
            NFT_MSG_NEWCHAIN,
            NLM_F_CREATE,
            family,
            m,
        );
        self
    }

    /// Appends a rule to a chain, with an optional comment (at most 128 bytes).
    pub fn add_rule(
        &mut self,
        family: Family,
        table: &str,
        chain: &str,
        exprs: &[Expr],
        comment: Option<&str>,
    ) -> &mut Batch {
        let mut m = Self::scratch();
        m.attr_str(NFTA_RULE_TABLE, table);
        m.attr_str(NFTA_RULE_CHAIN, chain);
        let list = m.nest_start(NFTA_RULE_EXPRESSIONS);
        for e in exprs {
            e.emit(&mut m);
        }
        m.nest_end(list);
        if let Some(c) = comment {
            let mut ud = vec![UDATA_RULE_COMMENT, (c.len() + 1).min(255) as u8];
            ud.extend_from_slice(c.as_bytes());
            ud.push(0);
            m.attr(NFTA_RULE_USERDATA, &ud);
        }
        self.push(
            format!("adding a rule to {} {table} {chain}", family.name()),
            NFT_MSG_NEWRULE,
            NLM_F_CREATE | NLM_F_APPEND,
            family,
            m,
        );
        self
    }

    /// Deletes a rule by handle.
    pub fn del_rule(
        &mut self,
        family: Family,
        table: &str,
        chain: &str,
        handle: u64,
    ) -> &mut Batch {
        let mut m = Self::scratch();
        m.attr_str(NFTA_RULE_TABLE, table);
        m.attr_str(NFTA_RULE_CHAIN, chain);
        m.attr(NFTA_RULE_HANDLE, &handle.to_be_bytes());
        self.push(
            format!(
                "deleting rule {handle} of {} {table} {chain}",
                family.name()
            ),
            NFT_MSG_DELRULE,
            0,
            family,
            m,
        );
        self
    }

    pub fn is_empty(&self) -> bool {
        self.msgs.is_empty()
    }
}

/// A NETLINK_NETFILTER socket in the calling thread's network namespace.
pub struct Nft {
    sock: Socket,
    seq: u32,
}

impl std::fmt::Debug for Nft {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Nft(fd {})", self.sock.as_raw_fd())
    }
}

fn nl_err(op: &str, source: std::io::Error) -> Error {
    Error::Netlink {
        op: op.to_string(),
        source,
    }
}

/// Splits a datagram into (type, flags, seq, payload after the nlmsghdr).
fn split_messages(buf: &[u8]) -> Vec<(u16, u16, u32, &[u8])> {
    let mut out = Vec::new();
    let mut off = 0;
    while off + 16 <= buf.len() {
        let len = u32::from_ne_bytes([buf[off], buf[off + 1], buf[off + 2], buf[off + 3]]) as usize;
        if len < 16 || off + len > buf.len() {
            break;
        }
        let t = u16::from_ne_bytes([buf[off + 4], buf[off + 5]]);
        let flags = u16::from_ne_bytes([buf[off + 6], buf[off + 7]]);
        let seq = u32::from_ne_bytes([buf[off + 8], buf[off + 9], buf[off + 10], buf[off + 11]]);
        out.push((t, flags, seq, &buf[off + 16..off + len]));
        off += (len + 3) & !3;
    }
    out
}

/// Iterates the attributes of a payload as (type without flags, value).
fn attributes(mut buf: &[u8]) -> Vec<(u16, &[u8])> {
    let mut out = Vec::new();
    while buf.len() >= 4 {
        let len = u16::from_ne_bytes([buf[0], buf[1]]) as usize;
        let kind = u16::from_ne_bytes([buf[2], buf[3]]) & 0x3fff;
        if len < 4 || len > buf.len() {
            break;
        }
        out.push((kind, &buf[4..len]));
        let next = ((len + 3) & !3).min(buf.len());
        buf = &buf[next..];
    }
    out
}

fn c_string(v: &[u8]) -> String {
    let end = v.iter().position(|b| *b == 0).unwrap_or(v.len());
    String::from_utf8_lossy(&v[..end]).into_owned()
}

impl Nft {
    /// Opens a socket in the calling thread's network namespace.
    pub fn open() -> Result<Nft> {
        let op = "opening an nf_tables netlink socket";
        let mut sock = Socket::new(NETLINK_NETFILTER).map_err(|e| nl_err(op, e))?;
        sock.bind_auto().map_err(|e| nl_err(op, e))?;
        sock.connect(&SocketAddr::new(0, 0))
            .map_err(|e| nl_err(op, e))?;
        let _ = sock.set_ext_ack(true);
        // No reply must ever block a plugin forever.
        let tv = libc::timeval {
            tv_sec: 10,
            tv_usec: 0,
        };
        // SAFETY: SO_RCVTIMEO takes a timeval; the pointer and size describe `tv`, which outlives the call.
        let rc = unsafe {
            libc::setsockopt(
                sock.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&tv as *const libc::timeval).cast(),
                std::mem::size_of::<libc::timeval>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(nl_err(op, std::io::Error::last_os_error()));
        }
        Ok(Nft { sock, seq: 0 })
    }

    fn next_seq(&mut self) -> u32 {
        self.seq = self.seq.wrapping_add(1);
        self.seq
    }

    fn recv(&mut self, op: &str) -> Result<Vec<u8>> {
        let mut buf = Vec::with_capacity(1 << 16);
        self.sock.recv(&mut buf, 0).map_err(|e| nl_err(op, e))?;
        Ok(buf)
    }

    /// Applies a batch atomically. The error names the first refused change.
    pub fn apply(&mut self, batch: &Batch) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let mut out = Vec::new();
        let begin_seq = self.next_seq();
        out.extend(
            Msg::new(
                NFNL_MSG_BATCH_BEGIN,
                NLM_F_REQUEST,
                begin_seq,
                0,
                NFNL_SUBSYS_NFTABLES,
            )
            .finish(),
        );
        let mut seqs = Vec::new();
        for (t, flags, family, body) in &batch.msgs {
            let seq = self.next_seq();
            seqs.push(seq);
            let mut m = Msg::new(
                (NFNL_SUBSYS_NFTABLES << 8) | t,
                NLM_F_REQUEST | NLM_F_ACK | flags,
                seq,
                *family,
                0,
            );
            m.buf.extend_from_slice(body);
            out.extend(m.finish());
        }
        let end_seq = self.next_seq();
        out.extend(
            Msg::new(
                NFNL_MSG_BATCH_END,
                NLM_F_REQUEST,
                end_seq,
                0,
                NFNL_SUBSYS_NFTABLES,
            )
            .finish(),
        );
        let op = "applying an nf_tables batch";
        self.sock.send(&out, 0).map_err(|e| nl_err(op, e))?;

        let mut pending = seqs.len();
        let mut first_error: Option<Error> = None;
        while pending > 0 {
            let buf = self.recv(op)?;
            for (t, _flags, seq, payload) in split_messages(&buf) {
                if t != NLMSG_ERROR {
                    continue;
                }
                let code = payload
                    .get(0..4)
                    .map(|b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
                    .unwrap_or(0);
                if (seq == begin_seq || seq == end_seq) && code != 0 {
                    return Err(nl_err(op, std::io::Error::from_raw_os_error(-code)));
                }
                let Some(i) = seqs.iter().position(|s| *s == seq) else {
                    continue;
                };
                pending = pending.saturating_sub(1);
                if code != 0 && first_error.is_none() {
                    first_error = Some(nl_err(
                        &batch.what[i],
                        std::io::Error::from_raw_os_error(-code),
                    ));
                }
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// The rules of a table (empty when the table does not exist). A dump that the kernel marks
    /// as interrupted by a concurrent change (NLM_F_DUMP_INTR) is taken again, so that no rule is
    /// missing from the answer.
    pub fn rules(&mut self, family: Family, table: &str) -> Result<Vec<RuleInfo>> {
        for _ in 0..MAX_DUMP_ATTEMPTS {
            let (rules, interrupted) = self.rules_once(family, table)?;
            if !interrupted {
                return Ok(rules);
            }
        }
        Err(nl_err(
            &format!("listing the rules of table {} {table}", family.name()),
            std::io::Error::other("the table kept changing while it was listed"),
        ))
    }

    fn rules_once(&mut self, family: Family, table: &str) -> Result<(Vec<RuleInfo>, bool)> {
        let seq = self.next_seq();
        let mut m = Msg::new(
            (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_GETRULE,
            NLM_F_REQUEST | NLM_F_DUMP | NLM_F_ACK,
            seq,
            family.proto(),
            0,
        );
        m.attr_str(NFTA_RULE_TABLE, table);
        let op = format!("listing the rules of table {} {table}", family.name());
        self.sock.send(&m.finish(), 0).map_err(|e| nl_err(&op, e))?;
        let mut rules = Vec::new();
        let mut interrupted = false;
        loop {
            let buf = self.recv(&op)?;
            for (t, flags, s, payload) in split_messages(&buf) {
                if s != seq {
                    continue;
                }
                interrupted |= flags & NLM_F_DUMP_INTR != 0;
                match t {
                    NLMSG_DONE => return Ok((rules, interrupted)),
                    NLMSG_ERROR => {
                        let code = payload
                            .get(0..4)
                            .map(|b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
                            .unwrap_or(0);
                        match code {
                            0 => return Ok((rules, interrupted)),
                            c if -c == libc::ENOENT => return Ok((Vec::new(), false)),
                            c => return Err(nl_err(&op, std::io::Error::from_raw_os_error(-c))),
                        }
                    }
                    _ if t == (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWRULE => {
                        // Skip the 4-byte nfgenmsg.
                        let Some(attrs) = payload.get(4..) else {
                            continue;
                        };
                        let mut rule = RuleInfo {
                            chain: String::new(),
                            handle: 0,
                            comment: None,
                        };
                        for (kind, v) in attributes(attrs) {
                            match kind {
                                NFTA_RULE_CHAIN => rule.chain = c_string(v),
                                NFTA_RULE_HANDLE if v.len() == 8 => {
                                    let mut b = [0u8; 8];
                                    b.copy_from_slice(v);
                                    rule.handle = u64::from_be_bytes(b);
                                }
                                NFTA_RULE_USERDATA => rule.comment = parse_comment(v),
                                _ => {}
                            }
                        }
                        rules.push(rule);
                    }
                    _ => {}
                }
            }
        }
    }

    /// Deletes, in one transaction, the rules of a table whose comment is `comment`; returns how
    /// many there were. A transaction is all or nothing: when a concurrent change made one of
    /// the listed handles stale (ENOENT), nothing was deleted, so the rules are listed again and
    /// the deletion retried.
    pub fn delete_rules_with_comment(
        &mut self,
        family: Family,
        table: &str,
        comment: &str,
    ) -> Result<usize> {
        let mut last_error = None;
        for _ in 0..MAX_DUMP_ATTEMPTS {
            let mut batch = Batch::new();
            let mut n = 0;
            for r in self.rules(family, table)? {
                if r.comment.as_deref() == Some(comment) {
                    batch.del_rule(family, table, &r.chain, r.handle);
                    n += 1;
                }
            }
            match self.apply(&batch) {
                Ok(()) => return Ok(n),
                Err(e) if e.errno() == Some(libc::ENOENT) => last_error = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last_error.unwrap_or_else(|| {
            nl_err(
                &format!(
                    "deleting the rules {comment:?} of table {} {table}",
                    family.name()
                ),
                std::io::Error::other("the table kept changing"),
            )
        }))
    }
}

fn parse_comment(ud: &[u8]) -> Option<String> {
    let mut rest = ud;
    while rest.len() >= 2 {
        let (t, len) = (rest[0], rest[1] as usize);
        let value = rest.get(2..2 + len)?;
        if t == UDATA_RULE_COMMENT {
            return Some(c_string(value));
        }
        rest = &rest[2 + len..];
    }
    None
}

/// The masquerade rules of one source: traffic from `ip` to anywhere but its own `subnet` and
/// multicast leaves with the outgoing interface's address. Appended to `table`'s
/// `postrouting` NAT chain (created with the table when missing), each with `comment`.
pub fn masquerade_batch(table: &str, ip: IpAddr, subnet: &IpNet, comment: &str) -> Batch {
    let family = Family::of(&ip);
    let host = IpNet::from(ip);
    let multicast: IpNet = match ip {
        IpAddr::V4(_) => IpNet::V4(
            ipnet::Ipv4Net::new(std::net::Ipv4Addr::new(224, 0, 0, 0), 4).unwrap_or_default(),
        ),
        IpAddr::V6(_) => IpNet::V6(
            ipnet::Ipv6Net::new(std::net::Ipv6Addr::new(0xff00, 0, 0, 0, 0, 0, 0, 0), 8)
                .unwrap_or_default(),
        ),
    };
    let mut batch = Batch::new();
    batch.add_table(family, table).add_nat_chain(
        family,
        table,
        "postrouting",
        Hook::Postrouting,
        100,
    );
    let mut within = Expr::saddr(CmpOp::Eq, &host);
    within.extend(Expr::daddr(CmpOp::Eq, &subnet.trunc()));
    within.push(Expr::Return);
    batch.add_rule(family, table, "postrouting", &within, Some(comment));
    let mut out = Expr::saddr(CmpOp::Eq, &host);
    out.extend(Expr::daddr(CmpOp::Neq, &multicast));
    out.push(Expr::Masquerade);
    batch.add_rule(family, table, "postrouting", &out, Some(comment));
    batch
}

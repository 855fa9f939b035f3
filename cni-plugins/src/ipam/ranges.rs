//! Address ranges of host-local: one [`Range`] (a subnet with an allocatable window and a
//! gateway), a [`RangeSet`] (ranges of one family that one interface gets one address from) and
//! the round-robin order in which a set's addresses are tried ([`RangeSet::candidates`]).
//!
//! Pure: no files, no locks. The rules follow the reference plugin so that both accept the same
//! configs: the subnet must be a network address and hold at least two host addresses; the
//! gateway defaults to the subnet's first address; `rangeStart` defaults to that same first
//! address and `rangeEnd` to the last (the broadcast address excluded for IPv4); the gateway
//! is never handed out; ranges inside a set, and sets among themselves, must not overlap.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

/// Why a range or a range set is not usable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RangeError {
    #[error("invalid CIDR address: {0}")]
    InvalidSubnet(String),
    #[error("invalid IP address {value:?} for {field}")]
    InvalidAddress { field: &'static str, value: String },
    #[error("network {0} too small to allocate from")]
    TooSmall(IpNet),
    #[error("network {subnet} has host bits set (the network address is {network})")]
    HostBits { subnet: IpNet, network: IpAddr },
    #[error("{field} {ip} not in network {subnet}")]
    Outside {
        field: &'static str,
        ip: IpAddr,
        subnet: IpNet,
    },
    #[error("rangeStart {start} is after rangeEnd {end}")]
    StartAfterEnd { start: IpAddr, end: IpAddr },
    #[error("empty range set")]
    EmptySet,
    #[error("mixed address families in one range set")]
    MixedFamilies,
    #[error("ranges {a} and {b} overlap")]
    Overlap { a: String, b: String },
}

/// One allocatable window of a subnet, every field filled in (see [`Range::new`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Range {
    pub subnet: IpNet,
    pub range_start: IpAddr,
    pub range_end: IpAddr,
    pub gateway: IpAddr,
}

/// An address as a number, for arithmetic common to both families.
pub(crate) fn to_u128(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

/// The address `n` of the family of `like`.
pub(crate) fn from_u128(like: IpAddr, n: u128) -> IpAddr {
    match like {
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::from(n as u32)),
        IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::from(n)),
    }
}

fn parse_addr(field: &'static str, value: &str) -> Result<IpAddr, RangeError> {
    value
        .trim()
        .parse()
        .map_err(|_| RangeError::InvalidAddress {
            field,
            value: value.to_string(),
        })
}

impl Range {
    /// Builds a range from the config's strings, filling in the defaults and checking it.
    pub fn new(
        subnet: &str,
        range_start: Option<&str>,
        range_end: Option<&str>,
        gateway: Option<&str>,
    ) -> Result<Range, RangeError> {
        let subnet: IpNet = subnet
            .trim()
            .parse()
            .map_err(|_| RangeError::InvalidSubnet(subnet.to_string()))?;
        let host_bits = u32::from(subnet.max_prefix_len() - subnet.prefix_len());
        if host_bits < 2 {
            return Err(RangeError::TooSmall(subnet));
        }
        if subnet.addr() != subnet.network() {
            return Err(RangeError::HostBits {
                subnet,
                network: subnet.network(),
            });
        }
        let network = to_u128(subnet.network());
        let first = from_u128(subnet.network(), network + 1);
        let last = match subnet {
            IpNet::V4(_) => from_u128(subnet.network(), to_u128(subnet.broadcast()) - 1),
            IpNet::V6(_) => subnet.broadcast(),
        };
        let inside = |field: &'static str, ip: IpAddr| {
            if subnet.contains(&ip) {
                Ok(ip)
            } else {
                Err(RangeError::Outside { field, ip, subnet })
            }
        };
        let range_start = match range_start {
            Some(s) => inside("rangeStart", parse_addr("rangeStart", s)?)?,
            None => first,
        };
        let range_end = match range_end {
            Some(s) => inside("rangeEnd", parse_addr("rangeEnd", s)?)?,
            None => last,
        };
        if to_u128(range_start) > to_u128(range_end) {
            return Err(RangeError::StartAfterEnd {
                start: range_start,
                end: range_end,
            });
        }
        let gateway = match gateway {
            Some(s) => parse_addr("gateway", s)?,
            None => first,
        };
        if gateway.is_ipv4() != subnet.addr().is_ipv4() {
            return Err(RangeError::Outside {
                field: "gateway",
                ip: gateway,
                subnet,
            });
        }
        Ok(Range {
            subnet,
            range_start,
            range_end,
            gateway,
        })
    }

    /// True when `ip` lies in the allocatable window (the gateway included).
    pub fn contains(&self, ip: IpAddr) -> bool {
        ip.is_ipv4() == self.range_start.is_ipv4()
            && (to_u128(self.range_start)..=to_u128(self.range_end)).contains(&to_u128(ip))
    }

    fn overlaps(&self, other: &Range) -> bool {
        self.range_start.is_ipv4() == other.range_start.is_ipv4()
            && to_u128(self.range_start) <= to_u128(other.range_end)
            && to_u128(other.range_start) <= to_u128(self.range_end)
    }

    /// How many addresses the window holds (saturating for a whole IPv6 space).
    fn len(&self) -> u128 {
        (to_u128(self.range_end) - to_u128(self.range_start)).saturating_add(1)
    }
}

impl std::fmt::Display for Range {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.range_start, self.range_end)
    }
}

/// Ranges of one family; an interface gets one address from each set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RangeSet {
    pub ranges: Vec<Range>,
}

impl RangeSet {
    /// Checks that the set is not empty, of one family, and free of overlaps.
    pub fn new(ranges: Vec<Range>) -> Result<RangeSet, RangeError> {
        let first = ranges.first().ok_or(RangeError::EmptySet)?;
        let v4 = first.subnet.addr().is_ipv4();
        if ranges.iter().any(|r| r.subnet.addr().is_ipv4() != v4) {
            return Err(RangeError::MixedFamilies);
        }
        for (i, a) in ranges.iter().enumerate() {
            if let Some(b) = ranges[i + 1..].iter().find(|b| a.overlaps(b)) {
                return Err(RangeError::Overlap {
                    a: a.to_string(),
                    b: b.to_string(),
                });
            }
        }
        Ok(RangeSet { ranges })
    }

    /// The range whose window holds `ip`.
    pub fn range_for(&self, ip: IpAddr) -> Option<&Range> {
        self.ranges.iter().find(|r| r.contains(ip))
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        self.range_for(ip).is_some()
    }

    /// True when some range of `self` overlaps some range of `other`.
    pub fn overlaps(&self, other: &RangeSet) -> bool {
        self.ranges
            .iter()
            .any(|a| other.ranges.iter().any(|b| a.overlaps(b)))
    }

    /// Every allocatable address of the set once (gateways skipped), in round-robin order:
    /// starting just after `last_reserved` when it lies in the set (and ending with it),
    /// otherwise at the first range's start; wrapping from a range's end to the next range.
    pub fn candidates(&self, last_reserved: Option<IpAddr>) -> Candidates<'_> {
        let total = self
            .ranges
            .iter()
            .fold(0u128, |acc, r| acc.saturating_add(r.len()));
        let position = last_reserved.and_then(|last| {
            let idx = self.ranges.iter().position(|r| r.contains(last))?;
            Some((idx, to_u128(last)))
        });
        let (range, next) = match position {
            Some((idx, last)) => self.step(idx, last),
            None => (0, self.ranges.first().map_or(0, |r| to_u128(r.range_start))),
        };
        Candidates {
            set: self,
            range,
            next,
            remaining: total,
        }
    }

    /// The address after `cur` in range `idx`, wrapping to the next range's start.
    fn step(&self, idx: usize, cur: u128) -> (usize, u128) {
        match self.ranges.get(idx) {
            Some(r) if cur < to_u128(r.range_end) => (idx, cur + 1),
            _ => {
                let idx = (idx + 1) % self.ranges.len().max(1);
                (
                    idx,
                    self.ranges.get(idx).map_or(0, |r| to_u128(r.range_start)),
                )
            }
        }
    }
}

impl std::fmt::Display for RangeSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts: Vec<String> = self.ranges.iter().map(Range::to_string).collect();
        f.write_str(&parts.join(","))
    }
}

/// See [`RangeSet::candidates`]. Yields each address with the range it belongs to.
#[derive(Debug)]
pub struct Candidates<'a> {
    set: &'a RangeSet,
    range: usize,
    next: u128,
    remaining: u128,
}

impl<'a> Iterator for Candidates<'a> {
    type Item = (IpAddr, &'a Range);

    fn next(&mut self) -> Option<Self::Item> {
        while self.remaining > 0 {
            self.remaining -= 1;
            let r = self.set.ranges.get(self.range)?;
            let ip = from_u128(r.range_start, self.next);
            (self.range, self.next) = self.set.step(self.range, self.next);
            if ip != r.gateway {
                return Some((ip, r));
            }
        }
        None
    }
}

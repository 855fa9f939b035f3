//! Service ClusterIP and NodePort allocation: a bitmap over the range, a lower band kept for
//! static (user-chosen) values, random dynamic picks above it, and a rebuild from stored Services.

use std::net::IpAddr;
use std::ops::RangeInclusive;

use ipnet::IpNet;

/// The largest range served (a /12 of IPv4, a /108 of IPv6), as kube-apiserver limits it.
const MAX_RANGE_SIZE: u128 = 1 << 20;

/// Allocation failures, with kube-apiserver's messages.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AllocError {
    #[error("range is full")]
    Full,
    #[error("provided IP is already allocated")]
    IpAllocated,
    #[error("the provided IP ({ip}) is not in the valid range. The range of valid IPs is {range}")]
    IpNotInRange { ip: IpAddr, range: IpNet },
    #[error("provided port is already allocated")]
    PortAllocated,
    #[error("provided port is not in the valid range. The range of valid ports is {first}-{last}")]
    PortNotInRange { first: u16, last: u16 },
    #[error("the service IP range {0} is too large (at most 2^20 addresses)")]
    RangeTooLarge(IpNet),
    #[error("the service IP range {0} has no usable addresses")]
    RangeEmpty(IpNet),
}

/// The offsets [0, size) of one range: which are taken, and where dynamic picks start.
#[derive(Clone, Debug)]
struct Bitmap {
    words: Vec<u64>,
    size: usize,
    used: usize,
    /// Dynamic allocation prefers offsets >= this, leaving the lower band to static requests.
    dynamic_start: usize,
}

impl Bitmap {
    fn new(size: usize, dynamic_start: usize) -> Self {
        Bitmap {
            words: vec![0; size.div_ceil(64)],
            size,
            used: 0,
            dynamic_start: dynamic_start.min(size),
        }
    }

    fn is_set(&self, offset: usize) -> bool {
        self.words[offset / 64] & (1 << (offset % 64)) != 0
    }

    /// Marks `offset` taken; false when it already was.
    fn set(&mut self, offset: usize) -> bool {
        if self.is_set(offset) {
            return false;
        }
        self.words[offset / 64] |= 1 << (offset % 64);
        self.used += 1;
        true
    }

    fn clear(&mut self, offset: usize) {
        if self.is_set(offset) {
            self.words[offset / 64] &= !(1 << (offset % 64));
            self.used -= 1;
        }
    }

    fn clear_all(&mut self) {
        self.words.iter_mut().for_each(|w| *w = 0);
        self.used = 0;
    }

    /// A free offset from a random point of the upper band, then of the lower band.
    fn take_free(&mut self, skip: Option<usize>) -> Option<usize> {
        let bands = [(self.dynamic_start, self.size), (0, self.dynamic_start)];
        for (start, end) in bands {
            if let Some(offset) = self.first_free_in(start, end, skip) {
                self.set(offset);
                return Some(offset);
            }
        }
        None
    }

    fn first_free_in(&self, start: usize, end: usize, skip: Option<usize>) -> Option<usize> {
        if start >= end {
            return None;
        }
        let len = end - start;
        let origin = rand::random_range(0..len);
        (0..len)
            .map(|i| start + (origin + i) % len)
            .find(|&offset| Some(offset) != skip && !self.is_set(offset))
    }
}

/// Size of the static band at the bottom of a range: kube's min(max(min_band, size/divisor), cap).
fn static_band(size: usize, divisor: usize, cap: usize) -> usize {
    (size / divisor).clamp(16, cap).min(size)
}

/// ClusterIPs of one Service CIDR.
#[derive(Clone, Debug)]
pub struct ClusterIpAllocator {
    range: IpNet,
    /// The first usable address (network address + 1): offset 0.
    base: u128,
    bitmap: Bitmap,
}

impl ClusterIpAllocator {
    /// Usable addresses skip the network address and, for IPv4, the broadcast address.
    pub fn new(range: IpNet) -> Result<Self, AllocError> {
        let range = range.trunc();
        let host_bits = u32::from(range.max_prefix_len() - range.prefix_len());
        let total: u128 = 1u128.checked_shl(host_bits).unwrap_or(u128::MAX);
        if total > MAX_RANGE_SIZE {
            return Err(AllocError::RangeTooLarge(range));
        }
        let unusable = if range.addr().is_ipv4() { 2 } else { 1 };
        let size = total.saturating_sub(unusable) as usize;
        if size == 0 {
            return Err(AllocError::RangeEmpty(range));
        }
        Ok(ClusterIpAllocator {
            range,
            base: ip_to_u128(range.network()) + 1,
            bitmap: Bitmap::new(size, static_band(size, 16, 256)),
        })
    }

    pub fn range(&self) -> IpNet {
        self.range
    }

    /// The first usable address (10.96.0.1 in 10.96.0.0/12): the `kubernetes` Service's IP.
    /// `allocate_next` never hands it out; claim it with `allocate_specific`.
    pub fn reserved_kubernetes_ip(&self) -> IpAddr {
        self.ip_at(0)
    }

    /// A free address, chosen at random (the static lower band only once the rest is full).
    pub fn allocate_next(&mut self) -> Result<IpAddr, AllocError> {
        self.bitmap
            .take_free(Some(0))
            .map(|offset| self.ip_at(offset))
            .ok_or(AllocError::Full)
    }

    /// Claims a user-chosen address.
    pub fn allocate_specific(&mut self, ip: IpAddr) -> Result<(), AllocError> {
        let offset = self.offset_of(ip).ok_or(AllocError::IpNotInRange {
            ip,
            range: self.range,
        })?;
        if self.bitmap.set(offset) {
            Ok(())
        } else {
            Err(AllocError::IpAllocated)
        }
    }

    /// Frees an address; addresses outside the range or not taken are ignored.
    pub fn release(&mut self, ip: IpAddr) {
        if let Some(offset) = self.offset_of(ip) {
            self.bitmap.clear(offset);
        }
    }

    pub fn is_allocated(&self, ip: IpAddr) -> bool {
        self.offset_of(ip).is_some_and(|o| self.bitmap.is_set(o))
    }

    /// Whether `ip` is one of the range's usable addresses.
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.offset_of(ip).is_some()
    }

    /// Resets to exactly the given addresses (the ClusterIPs of stored Services); addresses
    /// outside the range are returned so the caller can report them.
    pub fn rebuild_from(&mut self, ips: impl IntoIterator<Item = IpAddr>) -> Vec<IpAddr> {
        self.bitmap.clear_all();
        let mut outside = Vec::new();
        for ip in ips {
            match self.offset_of(ip) {
                Some(offset) => {
                    self.bitmap.set(offset);
                }
                None => outside.push(ip),
            }
        }
        outside
    }

    pub fn used(&self) -> usize {
        self.bitmap.used
    }

    pub fn free(&self) -> usize {
        self.bitmap.size - self.bitmap.used
    }

    fn ip_at(&self, offset: usize) -> IpAddr {
        u128_to_ip(self.base + offset as u128, self.range.addr().is_ipv4())
    }

    fn offset_of(&self, ip: IpAddr) -> Option<usize> {
        if ip.is_ipv4() != self.range.addr().is_ipv4() || !self.range.contains(&ip) {
            return None;
        }
        let offset = ip_to_u128(ip).checked_sub(self.base)?;
        usize::try_from(offset)
            .ok()
            .filter(|&o| o < self.bitmap.size)
    }
}

fn ip_to_u128(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

fn u128_to_ip(n: u128, v4: bool) -> IpAddr {
    if v4 {
        IpAddr::from((n as u32).to_be_bytes())
    } else {
        IpAddr::from(n.to_be_bytes())
    }
}

/// NodePorts of one port range (30000-32767 by default).
#[derive(Clone, Debug)]
pub struct NodePortAllocator {
    first: u16,
    last: u16,
    bitmap: Bitmap,
}

/// kube-apiserver's default `--service-node-port-range`.
pub const DEFAULT_NODE_PORT_RANGE: RangeInclusive<u16> = 30000..=32767;

impl NodePortAllocator {
    pub fn new(range: RangeInclusive<u16>) -> Self {
        let (first, last) = (*range.start(), *range.end());
        let size = if last >= first {
            usize::from(last - first) + 1
        } else {
            0
        };
        NodePortAllocator {
            first,
            last,
            bitmap: Bitmap::new(size, static_band(size, 32, 128)),
        }
    }

    pub fn allocate_next(&mut self) -> Result<u16, AllocError> {
        self.bitmap
            .take_free(None)
            .map(|offset| self.first + offset as u16)
            .ok_or(AllocError::Full)
    }

    pub fn allocate_specific(&mut self, port: u16) -> Result<(), AllocError> {
        let offset = self.offset_of(port).ok_or(AllocError::PortNotInRange {
            first: self.first,
            last: self.last,
        })?;
        if self.bitmap.set(offset) {
            Ok(())
        } else {
            Err(AllocError::PortAllocated)
        }
    }

    pub fn release(&mut self, port: u16) {
        if let Some(offset) = self.offset_of(port) {
            self.bitmap.clear(offset);
        }
    }

    pub fn is_allocated(&self, port: u16) -> bool {
        self.offset_of(port).is_some_and(|o| self.bitmap.is_set(o))
    }

    /// Whether `port` is in the range.
    pub fn contains(&self, port: u16) -> bool {
        self.offset_of(port).is_some()
    }

    /// Resets to exactly the given ports; ports outside the range are returned.
    pub fn rebuild_from(&mut self, ports: impl IntoIterator<Item = u16>) -> Vec<u16> {
        self.bitmap.clear_all();
        let mut outside = Vec::new();
        for port in ports {
            match self.offset_of(port) {
                Some(offset) => {
                    self.bitmap.set(offset);
                }
                None => outside.push(port),
            }
        }
        outside
    }

    pub fn used(&self) -> usize {
        self.bitmap.used
    }

    pub fn free(&self) -> usize {
        self.bitmap.size - self.bitmap.used
    }

    fn offset_of(&self, port: u16) -> Option<usize> {
        (self.first..=self.last)
            .contains(&port)
            .then(|| usize::from(port - self.first))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    fn net(s: &str) -> IpNet {
        s.parse().expect("cidr")
    }

    #[test]
    fn kubernetes_ip_is_the_first_address_and_never_dynamic() {
        let mut a = ClusterIpAllocator::new(net("10.96.0.0/12")).expect("range");
        assert_eq!(a.reserved_kubernetes_ip(), ip("10.96.0.1"));
        let mut small = ClusterIpAllocator::new(net("10.0.0.0/29")).expect("range");
        let mut seen = HashSet::new();
        for _ in 0..5 {
            seen.insert(small.allocate_next().expect("free"));
        }
        assert!(!seen.contains(&ip("10.0.0.1")));
        assert!(!seen.contains(&ip("10.0.0.0")) && !seen.contains(&ip("10.0.0.7")));
        assert_eq!(small.allocate_next(), Err(AllocError::Full));
        assert_eq!(AllocError::Full.to_string(), "range is full");
        small
            .allocate_specific(ip("10.0.0.1"))
            .expect("kubernetes ip");
        a.allocate_specific(ip("10.96.0.1")).expect("kubernetes ip");
    }

    #[test]
    fn specific_errors() {
        let mut a = ClusterIpAllocator::new(net("10.96.0.0/12")).expect("range");
        a.allocate_specific(ip("10.96.0.10")).expect("free");
        let again = a.allocate_specific(ip("10.96.0.10")).expect_err("taken");
        assert_eq!(again.to_string(), "provided IP is already allocated");
        let outside = a.allocate_specific(ip("192.168.0.1")).expect_err("outside");
        assert_eq!(
            outside.to_string(),
            "the provided IP (192.168.0.1) is not in the valid range. The range of valid IPs is 10.96.0.0/12"
        );
        assert!(a.allocate_specific(ip("10.96.0.0")).is_err());
        assert!(a.allocate_specific(ip("10.111.255.255")).is_err());
        a.release(ip("10.96.0.10"));
        a.allocate_specific(ip("10.96.0.10")).expect("released");
    }

    #[test]
    fn dynamic_picks_avoid_the_static_band_until_needed() {
        let mut a = ClusterIpAllocator::new(net("10.96.0.0/24")).expect("range");
        // 254 usable, static band 16 (offsets 0..16 → .1 to .16)
        for _ in 0..(254 - 16) {
            let got = a.allocate_next().expect("free");
            assert!(ip_to_u128(got) > ip_to_u128(ip("10.96.0.16")), "{got}");
        }
        let low = a.allocate_next().expect("lower band");
        assert!(ip_to_u128(low) <= ip_to_u128(ip("10.96.0.16")));
    }

    #[test]
    fn rebuild_and_ipv6() {
        let mut a = ClusterIpAllocator::new(net("fd00:10:96::/112")).expect("range");
        assert_eq!(a.reserved_kubernetes_ip(), ip("fd00:10:96::1"));
        let outside = a.rebuild_from([ip("fd00:10:96::1"), ip("fd00:10:96::5"), ip("10.0.0.1")]);
        assert_eq!(outside, vec![ip("10.0.0.1")]);
        assert_eq!(a.used(), 2);
        assert!(a.is_allocated(ip("fd00:10:96::5")));
        assert!(a.allocate_specific(ip("fd00:10:96::5")).is_err());
        assert!(ClusterIpAllocator::new(net("fd00::/64")).is_err());
        assert!(ClusterIpAllocator::new(net("10.0.0.0/8")).is_err());
        assert!(ClusterIpAllocator::new(net("10.0.0.0/32")).is_err());
    }

    #[test]
    fn node_ports() {
        let mut p = NodePortAllocator::new(DEFAULT_NODE_PORT_RANGE);
        p.allocate_specific(30080).expect("free");
        assert_eq!(
            p.allocate_specific(30080).expect_err("taken").to_string(),
            "provided port is already allocated"
        );
        assert_eq!(
            p.allocate_specific(8080).expect_err("outside").to_string(),
            "provided port is not in the valid range. The range of valid ports is 30000-32767"
        );
        let got = p.allocate_next().expect("free");
        assert!((30000 + 86..=32767).contains(&got), "{got}");
        assert_eq!(p.rebuild_from([30001, 80]), vec![80]);
        assert_eq!(p.used(), 1);
    }

    #[test]
    fn node_port_exhaustion() {
        let mut p = NodePortAllocator::new(30000..=30009);
        let ports: HashSet<u16> = (0..10).map(|_| p.allocate_next().expect("free")).collect();
        assert_eq!(ports.len(), 10);
        assert_eq!(p.allocate_next(), Err(AllocError::Full));
        p.release(30005);
        assert_eq!(p.allocate_next(), Ok(30005));
    }
}

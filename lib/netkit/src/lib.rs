//! keel-netkit: Linux networking shared by several Keel components (the CNI bridge plugin, and
//! later keel-proxy and keel-cri), spoken directly over netlink: no `ip`, `sysctl` or `nft`
//! processes, and no async runtime (a CNI plugin is a short-lived process).
//!
//! - [`netns`]: run a closure inside a network namespace on a dedicated thread, so the caller's
//!   thread never changes namespace.
//! - [`rtnl`]: a synchronous rtnetlink socket: links (bridge, veth, up/down, master, MTU, MAC,
//!   promiscuity, hairpin), addresses and routes.
//! - [`nft`]: nf_tables transactions over netlink (tables, NAT chains, rules with comments).
//! - [`sysctl`]: `/proc/sys/net/...` knobs (`ip_forward`, `accept_dad`).
//!
//! Every error names what it was acting on (interface, netns path, sysctl, table).

pub mod error;
pub mod netns;
pub mod nft;
pub mod rtnl;
pub mod sysctl;

pub use error::Error;
pub use rtnl::{Address, BridgeVlan, Link, RouteSpec, Rtnl, VethSpec, VlanTarget};

//! keel-netkit: Linux networking shared by several Keel components (network namespaces, rtnetlink, nftables).

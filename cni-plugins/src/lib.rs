//! keel-cni: CNI 1.1 spec types, the plugin skeleton, and the runtime side that invokes plugin chains.

//! keel-control-plane: the apiserver, its storage, the scheduler and the controllers.

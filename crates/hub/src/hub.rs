//! CONTRACT SKELETON (owned by hub-core). Hub::spawn wires everything on given listeners.

/// The hub entry point.
pub struct Hub;
/// Handle to a running hub.
pub struct HubHandle;
/// The listeners the hub serves on.
pub struct HubListeners;

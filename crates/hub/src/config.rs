//! CONTRACT SKELETON (owned by hub-core). Resolved hub configuration.

/// Resolved hub configuration.
#[derive(Debug, Clone)]
pub struct HubConfig {}

//! What a simulated device does: answer methods ([`method`], [`reboot`]), acknowledge desired
//! properties ([`desired`]), come and go ([`connectivity`]) and send telemetry ([`telemetry`]).
//!
//! Every behaviour is configuration plus a pure decision function over an RNG stream; none of them
//! does I/O. [`Behaviour`] bundles one group's behaviours and is shared (`Arc`) by its devices.

pub mod connectivity;
pub mod desired;
pub mod method;
pub mod reboot;
pub mod telemetry;

use std::collections::BTreeMap;

use self::connectivity::Connectivity;
use self::desired::DesiredBehaviour;
use self::method::MethodBehaviour;
use self::telemetry::Telemetry;

/// One group's behaviour.
#[derive(Debug, Clone)]
pub struct Behaviour {
    /// Behaviour per method name.
    pub methods: BTreeMap<String, MethodBehaviour>,
    /// Behaviour for every method not in `methods` (`[group.methods.default]`; without it, an
    /// immediate 200 with a `null` payload).
    pub default_method: MethodBehaviour,
    /// Desired-property acknowledgement; `None` ignores desired patches.
    pub desired: Option<DesiredBehaviour>,
    /// Connectivity.
    pub connectivity: Connectivity,
    /// Telemetry; `None` sends none.
    pub telemetry: Option<Telemetry>,
}

impl Behaviour {
    /// The behaviour for `method_name`.
    pub fn method(&self, method_name: &str) -> &MethodBehaviour {
        self.methods.get(method_name).unwrap_or(&self.default_method)
    }
}

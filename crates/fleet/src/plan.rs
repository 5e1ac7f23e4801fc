//! Expanding a profile into concrete devices: ids, tags, initial reported properties, RNG seeds.
//!
//! [`Profile::expand`] turns a [`Profile`] plus a run seed and a [`Shard`] into [`DevicePlan`]s.
//! A device's seed is a mix of `(seed, global device index)`; each concern draws from its own
//! ChaCha8 stream ([`Stream`]) of that seed, so a decision never depends on how events of
//! different devices interleave, and the expected outcome of any call can be computed up front
//! ([`DevicePlan::method_decision`]) — that is how tests and reports reconcile a run.
//! Sharding keeps devices whose global index is `I mod N`; ids and seeds do not change with it.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use chrono::{SecondsFormat, Utc};
use protocol::ids::{DeviceId, IdError};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde_json::{Map, Value};

use crate::behaviour::connectivity::Schedule;
use crate::behaviour::desired::DesiredDecision;
use crate::behaviour::method::MethodDecision;
use crate::behaviour::Behaviour;
use crate::profile::{Group, Profile};
use crate::template::Vars;

/// One simulated device, fully resolved.
#[derive(Debug, Clone)]
pub struct DevicePlan {
    /// Global index in the profile (0-based, over all groups in file order).
    pub index: u64,
    /// The group's name.
    pub group: Arc<str>,
    /// Position within the group (0-based; the `{n}` template variable is `position + 1`).
    pub position: u64,
    /// The device id.
    pub device_id: DeviceId,
    /// Twin tags.
    pub tags: Map<String, Value>,
    /// Reported properties the device sends after it first connects.
    pub initial_reported: Option<Value>,
    /// The device's RNG seed, mixed from the run seed and `index`.
    pub seed: u64,
    /// What the device does.
    pub behaviour: Arc<Behaviour>,
}

/// Which part of a fleet one process runs: devices whose index is `index` modulo `count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    /// This shard, 0-based.
    pub index: u32,
    /// Number of shards (≥ 1).
    pub count: u32,
}

/// An independent random stream of a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream<'a> {
    /// Tag values.
    Tags,
    /// Initial reported properties.
    Reported,
    /// Never-connects and outage membership.
    Presence,
    /// Churn periods.
    Churn,
    /// Per-message network delay.
    Network,
    /// The phase of the first telemetry message.
    TelemetryPhase,
    /// Telemetry message `seq`.
    Telemetry(u64),
    /// Call number `call` (0-based, per method name) of a method.
    Method(&'a str, u64),
    /// The desired patch with this `$version`.
    Desired(u64),
}

/// Why a profile cannot be expanded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// Two devices render to the same id.
    #[error("device id {id:?} is produced twice: by group {first_group:?} and by group {second_group:?}")]
    DuplicateId {
        /// The id.
        id: String,
        /// The group that produced it first.
        first_group: String,
        /// The group that produced it again.
        second_group: String,
    },
    /// A rendered id is not a valid device id.
    #[error("group {group:?} renders an invalid device id {id:?}: {source}")]
    BadId {
        /// The group.
        group: String,
        /// The rendered id.
        id: String,
        /// Why it is invalid.
        source: IdError,
    },
}

/// Why a shard spec like `1/4` is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad shard {0:?}: expected I/N with 0 <= I < N, e.g. 0/4 .. 3/4")]
pub struct ShardParseError(String);

impl Shard {
    /// The whole fleet in one process.
    pub const ALL: Shard = Shard { index: 0, count: 1 };

    /// Whether the device with global `device_index` belongs to this shard.
    pub fn contains(&self, device_index: u64) -> bool {
        device_index % u64::from(self.count.max(1)) == u64::from(self.index)
    }
}

impl FromStr for Shard {
    type Err = ShardParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || ShardParseError(s.to_owned());
        let (index, count) = s.split_once('/').ok_or_else(bad)?;
        let index: u32 = index.trim().parse().map_err(|_| bad())?;
        let count: u32 = count.trim().parse().map_err(|_| bad())?;
        if count == 0 || index >= count {
            return Err(bad());
        }
        Ok(Shard { index, count })
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl Profile {
    /// Expands the profile into the devices of `shard`, in index order.
    ///
    /// Ids and tags of *all* devices are rendered to check that ids are unique across the whole
    /// fleet, so every shard sees the same ids.
    ///
    /// # Errors
    /// [`PlanError`] when two devices get the same id or an id is not a valid device id.
    pub fn expand(&self, seed: u64, shard: Shard) -> Result<Vec<DevicePlan>, PlanError> {
        let mut seen: HashMap<String, usize> = HashMap::with_capacity(self.device_count() as usize);
        let mut plans = Vec::new();
        for (group_idx, group) in self.groups.iter().enumerate() {
            let group_name: Arc<str> = Arc::from(group.name.as_str());
            for position in 0..group.count {
                let index = group.first_index + position;
                let device_seed = device_seed(seed, index);
                let tags = render_tags(group, position, device_seed);
                let id = render_id(group, position, index, &tags);
                if let Some(first) = seen.insert(id.clone(), group_idx) {
                    let first_group = self.groups[first].name.clone();
                    return Err(PlanError::DuplicateId {
                        id,
                        first_group,
                        second_group: group.name.clone(),
                    });
                }
                if !shard.contains(index) {
                    continue;
                }
                let device_id = DeviceId::new(id.clone()).map_err(|source| PlanError::BadId {
                    group: group.name.clone(),
                    id,
                    source,
                })?;
                let mut plan = DevicePlan {
                    index,
                    group: group_name.clone(),
                    position,
                    device_id,
                    tags,
                    initial_reported: None,
                    seed: device_seed,
                    behaviour: group.behaviour.clone(),
                };
                plan.initial_reported = group.reported.as_ref().map(|t| {
                    let vars = plan.vars(&[]);
                    t.render(&vars, &mut plan.rng(Stream::Reported))
                });
                plans.push(plan);
            }
        }
        Ok(plans)
    }
}

impl DevicePlan {
    /// A fresh RNG for one stream of this device.
    pub fn rng(&self, stream: Stream<'_>) -> ChaCha8Rng {
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
        rng.set_stream(stream.id());
        rng
    }

    /// Template variables of this device (tags, `deviceId`, `n`, `i`, `group`, `now`) plus `extra`.
    pub fn vars<'a>(&'a self, extra: &'a [(&'a str, Value)]) -> impl Vars + 'a {
        move |name: &str| -> Option<Value> {
            if let Some((_, v)) = extra.iter().find(|(k, _)| *k == name) {
                return Some(v.clone());
            }
            match name {
                "deviceId" => Some(Value::String(self.device_id.to_string())),
                "n" => Some(Value::from(self.position + 1)),
                "i" => Some(Value::from(self.index)),
                "group" => Some(Value::String(self.group.to_string())),
                "now" => {
                    Some(Value::String(Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true)))
                }
                _ => self.tags.get(name).cloned(),
            }
        }
    }

    /// What the device does with call number `call` (0-based, per method name) of `method`.
    pub fn method_decision(
        &self,
        method: &str,
        call: u64,
        request_payload: &Value,
    ) -> MethodDecision {
        let extra =
            [("method", Value::String(method.to_owned())), ("payload", request_payload.clone())];
        let vars = self.vars(&extra);
        self.behaviour.method(method).decide(&mut self.rng(Stream::Method(method, call)), &vars)
    }

    /// What the device does with the desired patch of `version` (`None`: it ignores desired patches).
    pub fn desired_decision(&self, version: u64) -> Option<DesiredDecision> {
        self.behaviour.desired.as_ref().map(|d| d.decide(&mut self.rng(Stream::Desired(version))))
    }

    /// The device's connectivity timeline.
    pub fn schedule(&self) -> Schedule {
        self.behaviour
            .connectivity
            .schedule(&mut self.rng(Stream::Presence), self.rng(Stream::Churn))
    }

    /// Telemetry message `seq`, if the group sends telemetry.
    pub fn telemetry_payload(&self, seq: u64) -> Option<Value> {
        let telemetry = self.behaviour.telemetry.as_ref()?;
        let extra = [("seq", Value::from(seq))];
        let vars = self.vars(&extra);
        Some(telemetry.payload.render(&vars, &mut self.rng(Stream::Telemetry(seq))))
    }
}

impl Stream<'_> {
    /// The ChaCha stream number.
    fn id(self) -> u64 {
        const KIND: u32 = 56;
        let kind = |k: u64, low: u64| (k << KIND) | (low & ((1 << KIND) - 1));
        match self {
            Stream::Tags => kind(1, 0),
            Stream::Reported => kind(2, 0),
            Stream::Presence => kind(3, 0),
            Stream::Churn => kind(4, 0),
            Stream::Network => kind(5, 0),
            Stream::TelemetryPhase => kind(6, 0),
            Stream::Telemetry(seq) => kind(7, seq),
            Stream::Desired(version) => kind(8, version),
            Stream::Method(name, call) => kind(9, splitmix64(fnv1a(name) ^ splitmix64(call))),
        }
    }
}

/// The device seed for `(run seed, device index)`.
pub fn device_seed(seed: u64, device_index: u64) -> u64 {
    splitmix64(seed ^ splitmix64(device_index.wrapping_add(0x9E37_79B9_7F4A_7C15)))
}

fn render_tags(group: &Group, position: u64, device_seed: u64) -> Map<String, Value> {
    let mut rng = ChaCha8Rng::seed_from_u64(device_seed);
    rng.set_stream(Stream::Tags.id());
    group.tags.iter().map(|(name, spec)| (name.clone(), spec.value(position, &mut rng))).collect()
}

fn render_id(group: &Group, position: u64, index: u64, tags: &Map<String, Value>) -> String {
    let vars = |name: &str| match name {
        "n" => Some(Value::from(position + 1)),
        "i" => Some(Value::from(index)),
        "group" => Some(Value::String(group.name.clone())),
        _ => tags.get(name).cloned(),
    };
    // Id templates are checked at load time to contain no random functions, so this RNG is unused.
    let mut no_rng = ChaCha8Rng::seed_from_u64(0);
    group.id.render(&vars, &mut no_rng)
}

fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn fnv1a(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests;

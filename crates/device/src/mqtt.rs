//! The one place that names the MQTT codec types (`rumqttc::mqttbytes::v4`), re-exported crate-private.
//!
//! hubsim uses rumqttc's MQTT 3.1.1 packet codec, not its event loop: rumqttc 0.25 cannot bind a local
//! source address, verifies TLS against the socket address rather than a configured name, and keeps
//! tens of kilobytes of state per connection, all of which matter at 20,000 clients per process.
//! Nothing here is public; no rumqttc type appears in the crate's API.

pub(crate) use rumqttc::mqttbytes::v4::{
    Connect, ConnectReturnCode, Login, Packet, PubAck, Publish, SubAck, Subscribe,
    SubscribeReasonCode,
};
pub(crate) use rumqttc::mqttbytes::{Error as CodecError, QoS};

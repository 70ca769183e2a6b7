//! Counters, as plain C structs filled by `picsou_endpoint_get_stats` and
//! `picsou_node_get_stats`.

use picsou_core::EndpointStats;
use picsou_runtime::node::NodeStats;
use picsou_runtime::transport::TransportStats;

/// The protocol engine's counters.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[allow(non_camel_case_types)]
pub struct picsou_endpoint_stats {
    /// Frames handed out to be sent.
    pub frames_sent: u64,
    /// Bytes handed out to be sent.
    pub bytes_sent: u64,
    /// Frames received.
    pub frames_received: u64,
    /// Bytes received.
    pub bytes_received: u64,
    /// Frames that carried only an ack.
    pub ack_only_frames: u64,
    /// First sends of messages.
    pub first_sends: u64,
    /// Resends of messages.
    pub resends: u64,
    /// Forwards inside the receiving RSM.
    pub forwards: u64,
    /// Repairs inside the receiving RSM.
    pub repairs: u64,
    /// Messages delivered.
    pub delivered: u64,
    /// Copies of messages already held.
    pub duplicates: u64,
    /// Frames or records dropped as misbehaviour.
    pub misbehaviors: u64,
    /// Current QUACK of the outgoing stream.
    pub quack: u64,
    /// Smoothed round-trip time to the other RSM (median over its replicas), in nanoseconds.
    pub srtt_ns: u64,
}

impl From<&EndpointStats> for picsou_endpoint_stats {
    fn from(s: &EndpointStats) -> Self {
        Self {
            frames_sent: s.frames_sent,
            bytes_sent: s.bytes_sent,
            frames_received: s.frames_received,
            bytes_received: s.bytes_received,
            ack_only_frames: s.ack_only_frames,
            first_sends: s.first_sends,
            resends: s.resends,
            forwards: s.forwards,
            repairs: s.repairs,
            delivered: s.delivered,
            duplicates: s.duplicates,
            misbehaviors: s.misbehaviors,
            quack: s.quack,
            srtt_ns: s.srtt_ns,
        }
    }
}

/// The transport's counters.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[allow(non_camel_case_types)]
pub struct picsou_transport_stats {
    /// Frames handed to the wire.
    pub frames_sent: u64,
    /// Bytes handed to the wire.
    pub bytes_sent: u64,
    /// Frames received.
    pub frames_received: u64,
    /// Bytes received.
    pub bytes_received: u64,
    /// Frames dropped because their peer was down.
    pub frames_dropped: u64,
    /// Connections established (both directions, including redials).
    pub connects: u64,
    /// Connections lost.
    pub disconnects: u64,
    /// Incoming connections rejected (unknown or unauthenticated speakers).
    pub rejected: u64,
}

impl From<&TransportStats> for picsou_transport_stats {
    fn from(s: &TransportStats) -> Self {
        Self {
            frames_sent: s.frames_sent,
            bytes_sent: s.bytes_sent,
            frames_received: s.frames_received,
            bytes_received: s.bytes_received,
            frames_dropped: s.frames_dropped,
            connects: s.connects,
            disconnects: s.disconnects,
            rejected: s.rejected,
        }
    }
}

/// A driven node's counters (published by its thread every `[node] stats_interval_ms`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[allow(non_camel_case_types)]
pub struct picsou_node_stats {
    /// The engine's counters.
    pub engine: picsou_endpoint_stats,
    /// The transport's counters.
    pub transport: picsou_transport_stats,
    /// Messages submitted that the engine took.
    pub transmitted: u64,
    /// Messages handed to the application.
    pub delivered: u64,
    /// Frames or connections refused as misbehaving.
    pub misbehaviors: u64,
    /// Peer-down transitions seen.
    pub peer_downs: u64,
    /// Node loop iterations.
    pub loops: u64,
}

impl From<&NodeStats> for picsou_node_stats {
    fn from(s: &NodeStats) -> Self {
        Self {
            engine: (&s.engine).into(),
            transport: (&s.transport).into(),
            transmitted: s.transmitted,
            delivered: s.delivered,
            misbehaviors: s.misbehaviors,
            peer_downs: s.peer_downs,
            loops: s.loops,
        }
    }
}

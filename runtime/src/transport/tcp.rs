//! TCP transport (placeholder: being written).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use picsou_core::ReplicaId;

use super::{SendStatus, TcpOptions, Transport, TransportError, TransportEvent, TransportSetup, TransportStats, Wake};

/// TCP transport.
#[derive(Debug)]
pub struct TcpTransport {}

impl TcpTransport {
    /// Starts listening and dialling.
    pub fn new(_setup: TransportSetup, _opts: &TcpOptions) -> Result<Self, TransportError> {
        Err(TransportError::Config("tcp transport not written yet".into()))
    }
}

impl Transport for TcpTransport {
    fn kind(&self) -> &'static str {
        "tcp"
    }
    fn send(&mut self, _peer: ReplicaId, _frame: Bytes) -> SendStatus {
        SendStatus::Room
    }
    fn flush(&mut self) {}
    fn poll(&mut self, _timeout: Option<Duration>, _events: &mut Vec<TransportEvent>) -> Result<(), TransportError> {
        Ok(())
    }
    fn waker(&self) -> Arc<dyn Wake> {
        unimplemented!()
    }
    fn set_receiving(&mut self, _receiving: bool) {}
    fn stats(&self) -> TransportStats {
        TransportStats::default()
    }
}

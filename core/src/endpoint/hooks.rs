//! The points where a Byzantine replica departs from the protocol, as the engine calls them.
//!
//! With the `adversary` feature they ask the replica's [`Adversary`](crate::adversary::Adversary),
//! if it has one. Without it `Hooks` is an empty type whose answers are constants, so the
//! compiler removes the calls and the branches behind them: the production engine carries no
//! adversary code.

use bytes::Bytes;

use crate::config::EndpointConfig;
use crate::time::Time;
use crate::wire::AckReport;

/// The replica's adversary, if any.
#[cfg(feature = "adversary")]
#[derive(Debug)]
pub(super) struct Hooks(Option<Box<dyn crate::adversary::Adversary>>);

/// Nothing: a correct replica.
#[cfg(not(feature = "adversary"))]
#[derive(Debug)]
pub(super) struct Hooks;

#[cfg(feature = "adversary")]
impl Hooks {
    pub(super) fn new(cfg: &EndpointConfig, start: Time) -> Self {
        Self(cfg.behavior.map(|b| b.adversary(start)))
    }

    pub(super) fn skips_first_send(&mut self, now: Time, seq: u64) -> bool {
        self.0.as_mut().is_some_and(|a| a.skips_first_send(now, seq))
    }

    pub(super) fn skips_resend(&mut self, now: Time, seq: u64) -> bool {
        self.0.as_mut().is_some_and(|a| a.skips_resend(now, seq))
    }

    pub(super) fn skips_rebroadcast(&mut self, now: Time) -> bool {
        self.0.as_mut().is_some_and(|a| a.skips_rebroadcast(now))
    }

    pub(super) fn report<'a>(&'a mut self, now: Time, truth: &'a AckReport, phi_bits: u32) -> &'a AckReport {
        match self.0.as_mut() {
            Some(a) => a.report(now, truth, phi_bits),
            None => truth,
        }
    }

    pub(super) fn forge(&mut self, now: Time, seq: u64, payload: &Bytes, proof: &Bytes) -> Option<(Vec<u8>, Vec<u8>)> {
        self.0.as_mut().and_then(|a| a.forge(now, seq, payload, proof))
    }

    pub(super) fn extra_frame_bytes(&self) -> usize {
        self.0.as_ref().map_or(0, |a| a.extra_frame_bytes())
    }
}

#[cfg(not(feature = "adversary"))]
impl Hooks {
    pub(super) fn new(_cfg: &EndpointConfig, _start: Time) -> Self {
        Self
    }

    #[inline(always)]
    pub(super) fn skips_first_send(&mut self, _now: Time, _seq: u64) -> bool {
        false
    }

    #[inline(always)]
    pub(super) fn skips_resend(&mut self, _now: Time, _seq: u64) -> bool {
        false
    }

    #[inline(always)]
    pub(super) fn skips_rebroadcast(&mut self, _now: Time) -> bool {
        false
    }

    #[inline(always)]
    pub(super) fn report<'a>(&'a mut self, _now: Time, truth: &'a AckReport, _phi_bits: u32) -> &'a AckReport {
        truth
    }

    #[inline(always)]
    pub(super) fn forge(
        &mut self,
        _now: Time,
        _seq: u64,
        _payload: &Bytes,
        _proof: &Bytes,
    ) -> Option<(Vec<u8>, Vec<u8>)> {
        None
    }

    #[inline(always)]
    pub(super) fn extra_frame_bytes(&self) -> usize {
        0
    }
}

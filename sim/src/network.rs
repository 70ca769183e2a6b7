//! The simulated network: NICs, links, latency, loss, jitter, partitions and crashes.
//!
//! # Why reliable FIFO links
//!
//! Real deployments run Picsou over TCP or RDMA reliable connections. On such a transport a
//! frame between two correct replicas is never lost, only delayed (the transport retransmits),
//! and frames on one connection arrive in order. Picsou's guarantees are stated for this
//! *partially synchronous* model: its resend bound (at most f_s + f_r resends of any message)
//! holds because a copy sent from a correct sender to a correct receiver always arrives, and
//! failures come from faulty *replicas*, not from the links. So the model here never drops a
//! frame between live replicas: "loss" is a transport retransmission that costs time (a link
//! RTO of 3× the latency, plus the frame's serialization again), and a partition holds frames
//! until it heals. Reordering happens only *across* links (jitter), as it does across TCP
//! connections. Frames are dropped only to or from crashed replicas.
//!
//! # Timing of one frame of `B` bytes sent at `t` from `a` to `b`
//!
//! 1. CPU (optional): `a`'s CPU builds it, serialized with everything else `a` handles.
//! 2. Egress: `t1 = max(t, egress_free(a)) + B / nic`; a NIC is shared by all its links.
//! 3. Link (cross links with a rate limit, a WAN slice per replica pair):
//!    `t2 = max(t1, link_free) + B / link_rate`.
//! 4. Propagation: `arrival = t2 + latency + jitter`, at least the previous arrival on the link.
//!    A lost attempt is retried `3 × latency` after it left; a frame that would be on a cut
//!    cross link during a partition is sent when the partition heals.
//! 5. Ingress: `t3 = max(arrival, ingress_free(b)) + B / nic`, delivered at
//!    `max(t3, last delivery on the link)`.
//! 6. CPU (optional): `b`'s CPU handles it, serialized per replica.
//!
//! Times are integer nanoseconds; bandwidths are converted once to integer picoseconds per
//! byte, so no floating point is involved once the simulation runs.

use super::rng::SimRng;

/// Converts a bandwidth in megabits per second to picoseconds per byte (0 = unlimited).
pub fn mbps_to_ps_per_byte(mbps: f64) -> u64 {
    if mbps.is_finite() && mbps > 0.0 { (8_000_000.0 / mbps).round() as u64 } else { 0 }
}

/// Converts milliseconds to nanoseconds (rounded; negative and non-finite become 0).
pub fn ms_to_ns(ms: f64) -> u64 {
    if ms.is_finite() && ms > 0.0 { (ms * 1e6).round() as u64 } else { 0 }
}

/// Time to serialize `bytes` at `ps_per_byte`, rounded up to whole nanoseconds.
pub fn serialization_ns(bytes: usize, ps_per_byte: u64) -> u64 {
    let ps = u128::from(ps_per_byte) * bytes as u128;
    u64::try_from(ps.div_ceil(1000)).unwrap_or(u64::MAX)
}

/// Timing of one class of link: between replicas of the same RSM, or across the two.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LinkClass {
    /// One-way propagation latency, in nanoseconds.
    pub latency_ns: u64,
    /// Per-attempt loss probability as a [`probability_threshold`](super::rng::probability_threshold).
    pub loss_threshold: u64,
    /// Rate limit of each directed replica pair, in picoseconds per byte; `None` = unlimited.
    pub ps_per_byte: Option<u64>,
}

/// The network's parameters.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NetConfig {
    /// NIC speed (egress and ingress each), in picoseconds per byte; 0 = infinitely fast.
    pub nic_ps_per_byte: u64,
    /// Links inside an RSM.
    pub local: LinkClass,
    /// Links between the two RSMs.
    pub cross: LinkClass,
    /// Each frame gets a uniform extra delay in `0..=jitter_ns`.
    pub jitter_ns: u64,
    /// Windows `[start, end)` in nanoseconds during which every cross link is cut.
    pub partitions: Vec<(u64, u64)>,
    /// CPU time per frame handled (sent or received), in nanoseconds.
    pub cpu_ns_per_frame: u64,
    /// CPU time per byte of a frame handled, in picoseconds.
    pub cpu_ps_per_byte: u64,
}

impl NetConfig {
    /// CPU time to handle a frame of `bytes`.
    fn cpu_cost(&self, bytes: usize) -> u64 {
        self.cpu_ns_per_frame.saturating_add(serialization_ns(bytes, self.cpu_ps_per_byte))
    }

    /// If a frame on a cross link during `[from, to)` would meet a partition, when it heals.
    fn partition_overlapping(&self, from: u64, to: u64) -> Option<u64> {
        self.partitions.iter().filter(|&&(s, e)| s < e && s <= to && from < e).map(|&(_, e)| e).max()
    }
}

/// The fate of a frame handed to the network, decided when it is sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Flight {
    /// When the frame has left the sender's NIC.
    pub egress_done: u64,
    /// When it reaches the receiver's NIC.
    pub arrival: u64,
    /// Transmission attempts on the link (1 if it was not lost).
    pub attempts: u32,
}

/// State of one directed link.
#[derive(Clone, Copy, Debug, Default)]
struct Link {
    /// When the link's rate limiter is free (rate-limited links only).
    wire_free: u64,
    /// Latest arrival so far: later frames never overtake it (FIFO).
    last_arrival: u64,
    /// Latest delivery so far (FIFO after ingress).
    last_delivery: u64,
}

/// Safety stop for the geometric retry loop (a loss probability near 1 is rejected by
/// scenario validation; this only guards direct users of the model).
const MAX_ATTEMPTS: u32 = 10_000;

/// Smallest link retransmission timeout, so that zero-latency links still make progress.
const MIN_LINK_RTO_NS: u64 = 1_000;

/// The network between `sides.len()` replicas.
#[derive(Debug)]
pub struct Network {
    cfg: NetConfig,
    n: usize,
    /// RSM of each replica (0 or 1).
    side: Vec<u8>,
    /// Crash time of each replica (`u64::MAX` = never).
    crash_at: Vec<u64>,
    egress_free: Vec<u64>,
    ingress_free: Vec<u64>,
    cpu_free: Vec<u64>,
    /// `n × n` directed links, `from * n + to`.
    links: Vec<Link>,
    rng: SimRng,
    retransmissions: u64,
}

impl Network {
    /// A network between replicas whose RSMs are `side[i]` and which crash at `crash_at[i]`
    /// (`u64::MAX` = never); `rng` draws losses and jitter.
    pub fn new(cfg: NetConfig, side: Vec<u8>, crash_at: Vec<u64>, rng: SimRng) -> Self {
        let n = side.len();
        assert_eq!(crash_at.len(), n, "one crash time per replica");
        let mut cfg = cfg;
        cfg.partitions.sort_unstable();
        Self {
            cfg,
            n,
            side,
            crash_at,
            egress_free: vec![0; n],
            ingress_free: vec![0; n],
            cpu_free: vec![0; n],
            links: vec![Link::default(); n * n],
            rng,
            retransmissions: 0,
        }
    }

    /// Number of replicas.
    pub fn len(&self) -> usize {
        self.n
    }

    /// True if the network has no replicas.
    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// When replica `r` crashes (`u64::MAX` = never).
    pub fn crash_at(&self, r: usize) -> u64 {
        self.crash_at[r]
    }

    /// True if replica `r` has crashed by `now`.
    pub fn is_crashed(&self, r: usize, now: u64) -> bool {
        now >= self.crash_at[r]
    }

    /// When replica `r`'s CPU and NIC will have finished everything queued so far.
    pub fn busy_until(&self, r: usize) -> u64 {
        self.egress_free[r].max(self.cpu_free[r])
    }

    /// Bandwidth-delay product of the link `from → to` in bytes: its rate (the link's limit,
    /// or the NIC's) times its one-way latency.
    pub fn bdp_bytes(&self, from: usize, to: usize) -> u64 {
        let class = if self.side[from] != self.side[to] { &self.cfg.cross } else { &self.cfg.local };
        let ps_per_byte = class.ps_per_byte.unwrap_or(self.cfg.nic_ps_per_byte).max(1);
        (u128::from(class.latency_ns) * 1000 / u128::from(ps_per_byte)) as u64
    }

    /// NIC serialization time of `bytes`.
    pub fn nic_time(&self, bytes: usize) -> u64 {
        serialization_ns(bytes, self.cfg.nic_ps_per_byte)
    }

    /// Link-level retransmissions so far (lost attempts).
    pub fn retransmissions(&self) -> u64 {
        self.retransmissions
    }

    /// Sends a frame of `len` bytes from `from` to `to` at `now`. Returns `None` if it is
    /// dropped: the sender crashes before the frame leaves its NIC, or the receiver has
    /// crashed by the time it arrives.
    pub fn send(&mut self, now: u64, from: usize, to: usize, len: usize) -> Option<Flight> {
        let mut t = now;
        let cpu = self.cfg.cpu_cost(len);
        if cpu > 0 {
            t = t.max(self.cpu_free[from]).saturating_add(cpu);
            self.cpu_free[from] = t;
        }
        let egress_done = t.max(self.egress_free[from]).saturating_add(serialization_ns(len, self.cfg.nic_ps_per_byte));
        self.egress_free[from] = egress_done;
        if egress_done > self.crash_at[from] {
            return None;
        }

        let cross = self.side[from] != self.side[to];
        let class = if cross { &self.cfg.cross } else { &self.cfg.local };
        let latency = class.latency_ns;
        let rto = latency.saturating_mul(3).max(MIN_LINK_RTO_NS);
        let link = &mut self.links[from * self.n + to];
        let mut start = egress_done;
        let mut attempts = 1u32;
        let departed = loop {
            let (begin, end) = match class.ps_per_byte {
                Some(ps) => {
                    let b = start.max(link.wire_free);
                    (b, b.saturating_add(serialization_ns(len, ps)))
                }
                None => (start, start),
            };
            if cross && let Some(heal) = self.cfg.partition_overlapping(begin, end.saturating_add(latency)) {
                // The link is cut: the transport holds the frame and sends it at the heal.
                start = heal;
                continue;
            }
            if class.ps_per_byte.is_some() {
                link.wire_free = end;
            }
            if attempts < MAX_ATTEMPTS && self.rng.chance(class.loss_threshold) {
                // Lost: the transport retransmits after its RTO, serializing the frame again.
                attempts += 1;
                self.retransmissions += 1;
                let resend_cost =
                    if class.ps_per_byte.is_some() { 0 } else { serialization_ns(len, self.cfg.nic_ps_per_byte) };
                start = end.saturating_add(rto).saturating_add(resend_cost);
                continue;
            }
            break end;
        };
        let jitter = if self.cfg.jitter_ns > 0 { self.rng.up_to(self.cfg.jitter_ns) } else { 0 };
        let arrival = departed.saturating_add(latency).saturating_add(jitter).max(link.last_arrival);
        link.last_arrival = arrival;
        if arrival >= self.crash_at[to] {
            return None;
        }
        Some(Flight { egress_done, arrival, attempts })
    }

    /// A frame of `len` bytes from `from` reaches `to`'s NIC at `now` (its
    /// [`Flight::arrival`]); call in arrival order. Returns when `to` handles it, or `None`
    /// if `to` has crashed by then.
    pub fn receive(&mut self, now: u64, from: usize, to: usize, len: usize) -> Option<u64> {
        let t3 = now.max(self.ingress_free[to]).saturating_add(serialization_ns(len, self.cfg.nic_ps_per_byte));
        self.ingress_free[to] = t3;
        let link = &mut self.links[from * self.n + to];
        let delivered = t3.max(link.last_delivery);
        link.last_delivery = delivered;
        let mut handled = delivered;
        let cpu = self.cfg.cpu_cost(len);
        if cpu > 0 {
            handled = handled.max(self.cpu_free[to]).saturating_add(cpu);
            self.cpu_free[to] = handled;
        }
        (handled < self.crash_at[to]).then_some(handled)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::probability_threshold;

    const NEVER: u64 = u64::MAX;

    /// 2 + 2 replicas: 0, 1 in RSM 0 and 2, 3 in RSM 1. NIC 8 Mbit/s = 1 ns per byte.
    fn config() -> NetConfig {
        NetConfig {
            nic_ps_per_byte: mbps_to_ps_per_byte(8_000.0),
            local: LinkClass { latency_ns: 100, ..LinkClass::default() },
            cross: LinkClass { latency_ns: 1_000, ..LinkClass::default() },
            ..NetConfig::default()
        }
    }

    fn net(cfg: NetConfig) -> Network {
        Network::new(cfg, vec![0, 0, 1, 1], vec![NEVER; 4], SimRng::new(1))
    }

    #[test]
    fn unit_conversions() {
        assert_eq!(mbps_to_ps_per_byte(8_000.0), 1_000);
        assert_eq!(mbps_to_ps_per_byte(10_000.0), 800);
        assert_eq!(mbps_to_ps_per_byte(0.0), 0);
        assert_eq!(ms_to_ns(0.1), 100_000);
        assert_eq!(ms_to_ns(-3.0), 0);
        assert_eq!(serialization_ns(3, 800), 3); // 2.4 ns rounds up
        assert_eq!(serialization_ns(1_000_000, 800), 800_000);
    }

    #[test]
    fn egress_is_shared_by_all_links_of_a_nic() {
        let mut n = net(config());
        let a = n.send(0, 0, 2, 1000).unwrap();
        let b = n.send(0, 0, 3, 1000).unwrap();
        let c = n.send(0, 0, 1, 1000).unwrap();
        assert_eq!(a.egress_done, 1_000);
        assert_eq!(b.egress_done, 2_000);
        assert_eq!(c.egress_done, 3_000);
        assert_eq!(a.arrival, 2_000); // + cross latency
        assert_eq!(b.arrival, 3_000);
        assert_eq!(c.arrival, 3_100); // + local latency
        assert_eq!(n.busy_until(0), 3_000);
        // An idle NIC starts at `now`.
        assert_eq!(n.send(10_000, 0, 2, 10).unwrap().egress_done, 10_010);
    }

    #[test]
    fn ingress_is_shared_by_all_links_into_a_nic() {
        let mut n = net(config());
        let a = n.send(0, 0, 2, 1000).unwrap();
        let b = n.send(0, 1, 2, 1000).unwrap();
        assert_eq!((a.arrival, b.arrival), (2_000, 2_000));
        assert_eq!(n.receive(a.arrival, 0, 2, 1000), Some(3_000));
        assert_eq!(n.receive(b.arrival, 1, 2, 1000), Some(4_000));
    }

    #[test]
    fn rate_limited_cross_link_adds_its_serialization() {
        let mut cfg = config();
        cfg.cross.ps_per_byte = Some(10_000); // 10 ns per byte per replica pair
        let mut n = net(cfg);
        let a = n.send(0, 0, 2, 100).unwrap();
        let b = n.send(0, 0, 2, 100).unwrap();
        // a: egress 100, link 100..1100, +1000 latency.
        assert_eq!(a.arrival, 2_100);
        // b: egress 200, waits for the link until 1100, link 1100..2100.
        assert_eq!(b.arrival, 3_100);
        // Another pair is not slowed by this one's link (only by the shared egress).
        let c = n.send(0, 0, 3, 100).unwrap();
        assert_eq!(c.arrival, 300 + 1_000 + 1_000);
        // Local links are not rate-limited.
        assert_eq!(n.send(0, 0, 1, 100).unwrap().arrival, 400 + 100);
    }

    #[test]
    fn links_are_fifo_even_with_jitter_but_reorder_across_links() {
        let mut cfg = config();
        cfg.jitter_ns = 50_000;
        let mut n = net(cfg);
        let mut last = [0u64; 2];
        let mut reordered_across = false;
        for i in 0..200u64 {
            let now = i * 2_000;
            let x = n.send(now, 0, 2, 10).unwrap().arrival;
            let y = n.send(now, 1, 2, 10).unwrap().arrival;
            assert!(x >= last[0] && y >= last[1], "FIFO per link");
            // A later frame on link 1→2 arriving before an earlier one on link 0→2.
            reordered_across |= y < last[0];
            last = [x, y];
        }
        assert!(reordered_across, "jitter should reorder frames across links");
    }

    #[test]
    fn fifo_delivery_after_ingress() {
        let mut n = net(config());
        // A big frame then a small one on the same link: the small one cannot overtake.
        let big = n.send(0, 0, 2, 5_000).unwrap();
        let small = n.send(0, 0, 2, 1).unwrap();
        assert!(small.arrival >= big.arrival);
        let h_big = n.receive(big.arrival, 0, 2, 5_000).unwrap();
        let h_small = n.receive(small.arrival, 0, 2, 1).unwrap();
        assert!(h_small >= h_big);
    }

    #[test]
    fn partition_holds_cross_frames_until_heal() {
        let mut cfg = config();
        cfg.partitions = vec![(5_000, 50_000)];
        let mut n = net(cfg);
        // Sent before: arrives before the cut (egress 10, arrives 1010).
        assert_eq!(n.send(0, 0, 2, 10).unwrap().arrival, 1_010);
        // Would still be in flight when the cut starts: re-sent at the heal.
        assert_eq!(n.send(4_500, 0, 2, 10).unwrap().arrival, 51_000);
        // Sent during the partition.
        assert_eq!(n.send(20_000, 1, 3, 10).unwrap().arrival, 51_000);
        // Local links are not cut.
        assert_eq!(n.send(20_000, 2, 3, 10).unwrap().arrival, 20_110);
        // After the heal, normal again.
        assert_eq!(n.send(60_000, 1, 2, 10).unwrap().arrival, 61_010);
    }

    #[test]
    fn loss_delays_by_link_rto_but_never_drops() {
        let mut cfg = config();
        cfg.cross.loss_threshold = probability_threshold(0.5);
        let mut n = net(cfg);
        let mut retried = 0;
        for i in 0..100u64 {
            let now = i * 1_000_000;
            let f = n.send(now, 0, 2, 10).unwrap();
            // Each lost attempt costs an RTO (3 × 1000) plus one more serialization (10).
            let expected = now + 10 + 1_000 + u64::from(f.attempts - 1) * (3_000 + 10);
            assert_eq!(f.arrival, expected);
            retried += u32::from(f.attempts > 1);
        }
        assert!((30..70).contains(&retried), "{retried}");
        assert!(n.retransmissions() >= 30);
        // Local links use their own (zero) loss.
        assert_eq!(n.send(0, 0, 1, 10).unwrap().attempts, 1);
    }

    #[test]
    fn crashed_replicas_drop_frames() {
        let cfg = config();
        let mut n = Network::new(cfg, vec![0, 0, 1, 1], vec![NEVER, 5_000, 3_000, NEVER], SimRng::new(1));
        assert!(n.send(0, 0, 2, 10).is_some());
        // To a receiver that has crashed by the arrival.
        assert!(n.send(2_500, 0, 2, 10).is_none());
        // From a sender whose NIC has not sent the frame out before its crash.
        assert!(n.send(4_000, 1, 3, 500).is_some()); // out at 4500
        assert!(n.send(4_400, 1, 3, 600).is_none()); // would be out at 5100 > crash at 5000
        assert!(n.is_crashed(1, 5_000) && !n.is_crashed(1, 4_999));
        // A frame handled after the receiver's crash is dropped at receive time.
        let mut n = Network::new(config(), vec![0, 0, 1, 1], vec![NEVER, NEVER, 1_500, NEVER], SimRng::new(1));
        let f = n.send(0, 0, 2, 490).unwrap();
        assert_eq!(f.arrival, 1_490);
        assert_eq!(n.receive(f.arrival, 0, 2, 490), None);
    }

    #[test]
    fn cpu_cost_is_serialized_per_replica() {
        let mut cfg = config();
        cfg.cpu_ns_per_frame = 2_000;
        cfg.cpu_ps_per_byte = 1_000;
        let mut n = net(cfg);
        let a = n.send(0, 0, 2, 1000).unwrap();
        // CPU 0..3000, egress 3000..4000, +1000 latency.
        assert_eq!(a.arrival, 5_000);
        assert_eq!(n.busy_until(0), 4_000);
        // Receiving: ingress 5000..6000, CPU 6000..9000.
        assert_eq!(n.receive(a.arrival, 0, 2, 1000), Some(9_000));
        // A second frame to the same replica waits for the CPU.
        let b = n.send(0, 1, 2, 1000).unwrap();
        assert_eq!(n.receive(b.arrival, 1, 2, 1000), Some(12_000));
    }

    #[test]
    fn same_seed_same_timings() {
        let run = |seed| {
            let mut cfg = config();
            cfg.jitter_ns = 10_000;
            cfg.cross.loss_threshold = probability_threshold(0.1);
            let mut n = Network::new(cfg, vec![0, 0, 1, 1], vec![NEVER; 4], SimRng::new(seed));
            (0..50)
                .map(|i| n.send(i * 100, (i % 2) as usize, 2 + (i % 2) as usize, 100).unwrap().arrival)
                .collect::<Vec<_>>()
        };
        assert_eq!(run(5), run(5));
        assert_ne!(run(5), run(6));
    }
}

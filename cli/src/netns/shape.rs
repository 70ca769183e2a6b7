//! Traffic shaping on a replica's interface: an htb root whose class 1:20 takes the traffic to
//! the other RSM's subnet (rate `--wan-mbps`, optional netem delay below it) and whose class
//! 1:10 takes the traffic to the replica's own subnet when `--lan-mbps` caps it (otherwise
//! that traffic bypasses the classes uncapped). The classes' byte counters measure what
//! crossed the link.

use serde::Serialize;

use super::{NetnsError, run};

/// The htb class of cross-RSM traffic.
pub(crate) const WAN_CLASS: &str = "1:20";
/// The htb class of capped intra-RSM traffic.
pub(crate) const LAN_CLASS: &str = "1:10";

/// What to impose on each replica's egress.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub(crate) struct Shaping {
    /// Cross-RSM egress cap per replica, Mbit/s (None: uncapped, but still counted).
    pub(crate) wan_mbps: Option<f64>,
    /// Intra-RSM egress cap per replica, Mbit/s (None: uncapped).
    pub(crate) lan_mbps: Option<f64>,
    /// One-way delay added to cross-RSM traffic, ms (needs netem).
    pub(crate) wan_delay_ms: Option<f64>,
}

/// Rate used for an uncapped WAN class (it still counts bytes).
const UNCAPPED_MBIT: f64 = 100_000.0;

impl Shaping {
    /// Checks the values (positive, finite, within what tc accepts).
    pub(crate) fn validate(&self) -> Result<(), NetnsError> {
        for (flag, v) in [("--wan-mbps", self.wan_mbps), ("--lan-mbps", self.lan_mbps)] {
            if let Some(v) = v
                && !(v.is_finite() && (0.01..=100_000.0).contains(&v))
            {
                return Err(NetnsError::BadValue {
                    flag,
                    reason: format!("{v} is not between 0.01 and 100000 Mbit/s"),
                });
            }
        }
        if let Some(d) = self.wan_delay_ms
            && !(d.is_finite() && (0.0..=10_000.0).contains(&d))
        {
            return Err(NetnsError::BadValue {
                flag: "--wan-delay-ms",
                reason: format!("{d} is not between 0 and 10000 ms"),
            });
        }
        Ok(())
    }

    /// Installs the qdiscs on `dev` in namespace `ns`: traffic to `remote` (a CIDR) in the WAN
    /// class, traffic to `local` (a CIDR) in the LAN class when capped.
    pub(crate) fn install(&self, ns: &str, dev: &str, local: &str, remote: &str) -> Result<(), NetnsError> {
        // `default 0`: unclassified traffic (intra-RSM when uncapped) bypasses the classes.
        run("tc", &["-n", ns, "qdisc", "add", "dev", dev, "root", "handle", "1:", "htb", "default", "0"])?;
        let wan = rate_arg(self.wan_mbps.unwrap_or(UNCAPPED_MBIT));
        class(ns, dev, WAN_CLASS, &wan)?;
        filter(ns, dev, remote, WAN_CLASS, "1")?;
        if let Some(d) = self.wan_delay_ms {
            let delay = format!("{d}ms");
            let r = run(
                "tc",
                &[
                    "-n", ns, "qdisc", "add", "dev", dev, "parent", WAN_CLASS, "handle", "20:", "netem", "delay",
                    &delay, "limit", "100000",
                ],
            );
            if let Err(NetnsError::Command { stderr, .. }) = &r
                && stderr.contains("qdisc kind is unknown")
            {
                return Err(NetnsError::MissingQdisc { qdisc: "netem", module: "sch_netem", flag: "--wan-delay-ms" });
            }
            r?;
        }
        if let Some(lan) = self.lan_mbps {
            class(ns, dev, LAN_CLASS, &rate_arg(lan))?;
            filter(ns, dev, local, LAN_CLASS, "2")?;
        }
        Ok(())
    }
}

/// A rate for tc, in kbit/s (tc takes integers).
fn rate_arg(mbps: f64) -> String {
    format!("{}kbit", ((mbps * 1000.0).round() as u64).max(1))
}

fn class(ns: &str, dev: &str, id: &str, rate: &str) -> Result<(), NetnsError> {
    // An explicit quantum and burst: htb's defaults warn at high rates and starve at low ones.
    run(
        "tc",
        &[
            "-n", ns, "class", "add", "dev", dev, "parent", "1:", "classid", id, "htb", "rate", rate, "ceil", rate,
            "quantum", "60000", "burst", "64k", "cburst", "64k",
        ],
    )
    .map(|_| ())
}

fn filter(ns: &str, dev: &str, dst: &str, flow: &str, prio: &str) -> Result<(), NetnsError> {
    run(
        "tc",
        &[
            "-n", ns, "filter", "add", "dev", dev, "parent", "1:", "protocol", "ip", "prio", prio, "u32", "match",
            "ip", "dst", dst, "flowid", flow,
        ],
    )
    .map(|_| ())
}

/// Bytes and packets sent through one htb class.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub(crate) struct LinkCounters {
    /// Bytes (whole frames: Ethernet, IP and TCP headers included).
    pub(crate) bytes: u64,
    /// Packets (TCP segments).
    pub(crate) packets: u64,
}

impl std::ops::Add for LinkCounters {
    type Output = Self;
    fn add(self, o: Self) -> Self {
        Self { bytes: self.bytes + o.bytes, packets: self.packets + o.packets }
    }
}

/// The counters of class `id` on `dev` in `ns` (`tc -s class show`).
pub(crate) fn class_counters(ns: &str, dev: &str, id: &str) -> Result<LinkCounters, NetnsError> {
    let out = run("tc", &["-n", ns, "-s", "class", "show", "dev", dev, "classid", id])?;
    parse_class_counters(&out).ok_or_else(|| NetnsError::Parse { what: format!("class {id}'s counters"), text: out })
}

/// Reads ` Sent 7583724 bytes 5025 pkt (…)` from `tc -s class show`'s output.
fn parse_class_counters(text: &str) -> Option<LinkCounters> {
    let line = text.lines().find_map(|l| l.trim().strip_prefix("Sent "))?;
    let mut words = line.split_whitespace();
    let bytes = words.next()?.parse().ok()?;
    (words.next()? == "bytes").then_some(())?;
    let packets = words.next()?.parse().ok()?;
    Some(LinkCounters { bytes, packets })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_tc_class_counters() {
        let out = "class htb 1:20 root prio 0 rate 20Mbit ceil 20Mbit burst 1600b cburst 1600b \n \
                   Sent 7583724 bytes 5025 pkt (dropped 0, overlimits 416 requeues 0) \n \
                   backlog 0b 0p requeues 0\n";
        assert_eq!(parse_class_counters(out), Some(LinkCounters { bytes: 7_583_724, packets: 5025 }));
        assert_eq!(parse_class_counters(""), None);
        assert_eq!(parse_class_counters(" Sent x bytes 1 pkt"), None);
    }

    #[test]
    fn bad_shaping_values_are_refused() {
        assert!(Shaping { wan_mbps: Some(0.0), ..Shaping::default() }.validate().is_err());
        assert!(Shaping { lan_mbps: Some(f64::NAN), ..Shaping::default() }.validate().is_err());
        assert!(Shaping { wan_delay_ms: Some(-1.0), ..Shaping::default() }.validate().is_err());
        assert!(Shaping { wan_mbps: Some(50.0), lan_mbps: Some(1000.0), wan_delay_ms: Some(20.0) }.validate().is_ok());
        assert_eq!(rate_arg(20.0), "20000kbit");
        assert_eq!(rate_arg(0.0001), "1kbit");
    }
}

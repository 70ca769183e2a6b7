//! Deployment files: the shipped examples and the embedded default parse, round-trip and build
//! working endpoints; every kind of mistake is reported with the file, line and field.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use picsou_core::proof::{QuorumCertificate, StreamId};
use picsou_core::{Endpoint, FaultModel, ReplicaId, RsmId, Strategy, Time};
use picsou_runtime::deployment::{
    DeploymentConfig, DeploymentError, EMBEDDED_DEFAULT_TOML, EMBEDDED_SOURCE, KeyMaterial, Senders, keygen,
};
use picsou_runtime::transport::TransportKind;
use picsou_runtime::transport::options::RdmaPolling;

const EXAMPLES: [&str; 7] = [
    "local-4x4-tcp.toml",
    "local-4x4-uring.toml",
    "local-4x4-mem.toml",
    "bft-4x4-tcp.toml",
    "stake-weighted.toml",
    "multihost.toml",
    "rdma-4x4.toml",
];

fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples")
}

/// Examples off loopback: they have no keys, and are the input of `picsou keygen`.
const KEYGEN_TEMPLATES: &[&str] = &["multihost.toml", "rdma-4x4.toml"];

/// An example, parsed; a keygen template gets fresh per-replica keys (files under the target
/// directory), after checking that it does not run without them.
fn example(name: &str) -> DeploymentConfig {
    let path = examples_dir().join(name);
    if !KEYGEN_TEMPLATES.contains(&name) {
        return DeploymentConfig::from_path(&path).unwrap_or_else(|e| panic!("{e}"));
    }
    let e = DeploymentConfig::from_path(&path).expect_err("a template without keys does not run");
    assert!(e.reason.contains("picsou keygen"), "{e}");
    let template = DeploymentConfig::template_from_path(&path).unwrap_or_else(|e| panic!("{e}"));
    // Tests run in parallel: each call gets its own directory (under the target directory).
    let dir = tempfile::Builder::new().prefix(name).tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap().keep();
    let keyed = keygen::generate(&template, &dir, false).unwrap_or_else(|e| panic!("{e}"));
    let out = dir.join("deployment.toml");
    std::fs::write(&out, keyed.to_toml_string()).unwrap();
    let mut cfg = DeploymentConfig::from_path(&out).unwrap_or_else(|e| panic!("{e}"));
    cfg.source = path.display().to_string();
    cfg
}

/// Parses `cfg.to_toml_string()` back and checks it is the same configuration.
fn assert_round_trips(cfg: &DeploymentConfig) {
    let text = cfg.to_toml_string();
    let mut back = DeploymentConfig::from_toml_str(&text, "round-trip.toml")
        .unwrap_or_else(|e| panic!("{}: written config does not parse: {e}\n{text}", cfg.source));
    assert_eq!(back.source, "round-trip.toml");
    back.source.clone_from(&cfg.source);
    assert_eq!(&back, cfg, "{}: round trip changed the config:\n{text}", cfg.source);
}

#[test]
fn every_example_parses_and_round_trips() {
    let mut found = HashSet::new();
    for entry in std::fs::read_dir(examples_dir()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            let cfg = example(path.file_name().unwrap().to_str().unwrap());
            assert!(cfg.source.ends_with(path.file_name().unwrap().to_str().unwrap()), "{}", cfg.source);
            assert_round_trips(&cfg);
            found.insert(path.file_name().unwrap().to_string_lossy().into_owned());
        }
    }
    for name in EXAMPLES {
        assert!(found.contains(name), "examples/{name} is missing");
    }
}

#[test]
fn embedded_default_is_the_documented_deployment() {
    let cfg = DeploymentConfig::embedded_default();
    assert_eq!(cfg.source, EMBEDDED_SOURCE);
    assert_eq!(cfg.strategy, Strategy::Picsou);
    assert_eq!(cfg.transport.kind, TransportKind::Tcp);
    for (i, (name, base)) in [("alpha", 27100), ("beta", 27200)].into_iter().enumerate() {
        let rsm = &cfg.rsms[i];
        assert_eq!((rsm.name.as_str(), rsm.fault, rsm.f, rsm.n()), (name, FaultModel::Cft, 1, 4));
        for (k, r) in rsm.replicas.iter().enumerate() {
            assert_eq!(usize::from(r.id), k);
            assert_eq!(r.stake, 1);
            assert_eq!(r.address, SocketAddr::from(([127, 0, 0, 1], base + k as u16)));
        }
    }
    assert_eq!((cfg.load.messages, cfg.load.size, cfg.load.senders), (100_000, 100, Senders::Both));
    assert!(matches!(cfg.keys, KeyMaterial::Shared { signing_seed: None, .. }));
    assert_eq!(cfg.replicas().len(), 8);
    assert_round_trips(&cfg);
    // The commented example is the same deployment.
    let mut commented = example("local-4x4-tcp.toml");
    commented.source = EMBEDDED_SOURCE.to_owned();
    assert_eq!(commented, cfg);
    assert_eq!(
        DeploymentConfig::from_toml_str(EMBEDDED_DEFAULT_TOML, "x.toml").unwrap().to_toml_string().lines().count(),
        cfg.to_toml_string().lines().count()
    );
}

#[test]
fn transport_variants_differ_only_in_kind() {
    let tcp = std::fs::read_to_string(examples_dir().join("local-4x4-tcp.toml")).unwrap();
    let uring = std::fs::read_to_string(examples_dir().join("local-4x4-uring.toml")).unwrap();
    let diff: Vec<_> = tcp.lines().zip(uring.lines()).filter(|(a, b)| a != b).collect();
    assert_eq!(tcp.lines().count(), uring.lines().count());
    assert_eq!(diff, [("kind = \"tcp\"", "kind = \"uring\"")]);
    let mut u = example("local-4x4-uring.toml");
    assert_eq!(u.transport.kind, TransportKind::Uring);
    u.transport.kind = TransportKind::Tcp;
    u.source = EMBEDDED_SOURCE.to_owned();
    assert_eq!(u, DeploymentConfig::embedded_default());

    let mem = example("local-4x4-mem.toml");
    assert_eq!(mem.transport.kind, TransportKind::Mem);
    assert!(mem.replicas().iter().all(|&r| mem.address(r) == SocketAddr::from(([127, 0, 0, 1], 0))));

    let rdma = example("rdma-4x4.toml");
    assert_eq!(rdma.transport.kind, TransportKind::Rdma);
    assert_eq!(rdma.transport.rdma.device, "rxe0");
    assert_eq!(rdma.transport.rdma.polling, RdmaPolling::Busy);
    assert_eq!(rdma.transport.rdma.gid_index, None);

    let multi = example("multihost.toml");
    let alpha2 = multi.replica("alpha", 2).unwrap();
    assert_eq!(multi.address(alpha2), "10.0.0.3:7000".parse().unwrap());
    assert_eq!(multi.transport.tcp.send_buffer, 4 << 20);

    let stake = example("stake-weighted.toml");
    assert_eq!((stake.rsms[0].n(), stake.rsms[1].n()), (4, 7));
    assert_eq!(stake.membership().rsms[1].stakes(), vec![3, 2, 1, 1, 1, 1, 1]);
    assert_eq!((stake.rsms[1].fault, stake.rsms[1].f), (FaultModel::Bft, 3));
}

#[test]
fn every_example_builds_an_endpoint_for_every_replica() {
    for name in EXAMPLES {
        let cfg = example(name);
        for r in cfg.replicas() {
            let ec = cfg.endpoint_config(r).unwrap();
            assert_eq!(ec.local, r);
            assert_eq!(ec.keys.local(), r);
            if let Err(e) = Endpoint::new(ec, Time::ZERO) {
                panic!("{name}: replica {r}: {e}");
            }
        }
    }
}

#[test]
fn transport_setup_lists_every_other_replica_with_shared_link_keys() {
    let cfg = example("stake-weighted.toml");
    let all = cfg.replicas();
    assert_eq!(all.len(), 11);
    assert_eq!(all[0], ReplicaId::new(0, 0));
    assert_eq!(all[4], ReplicaId::new(1, 0));
    let a = ReplicaId::new(0, 1);
    let b = ReplicaId::new(1, 5);
    let sa = cfg.transport_setup(a).unwrap();
    assert_eq!(sa.local, a);
    assert_eq!(sa.listen, "127.0.0.1:27501".parse().unwrap());
    assert_eq!(sa.peers.len(), 10);
    assert!(sa.peers.iter().all(|&(r, addr)| r != a && addr == cfg.address(r)));
    assert_eq!(sa.max_frame_bytes, cfg.tuning.max_frame_bytes_accepted);
    let sb = cfg.transport_setup(b).unwrap();
    assert!(sa.keys.key_for(b).is_some());
    assert_eq!(sa.keys.key_for(b), sb.keys.key_for(a));
    assert_eq!(sa.keys.key_for(b), cfg.endpoint_config(a).unwrap().keys.key_for(b));
}

#[test]
fn bft_verifier_accepts_f_plus_one_signatures_and_nothing_less() {
    let cfg = example("bft-4x4-tcp.toml");
    let stream = StreamId { from: RsmId(0), to: RsmId(1) };
    let signers = all_signers(&cfg, RsmId(0));
    assert_eq!(signers.len(), 4);
    assert!(signers.iter().enumerate().all(|(i, s)| usize::from(s.index()) == i));
    let f = cfg.rsms[0].f as usize;
    for r in (0..4).map(|i| ReplicaId::new(1, i)) {
        let verifier = cfg.endpoint_config(r).unwrap().verifier;
        let cert = |who: &[usize], seq: u64, payload: &[u8]| {
            QuorumCertificate::assemble(who.iter().map(|&i| signers[i].sign_share(stream, seq, payload))).encode()
        };
        let quorum: Vec<usize> = (0..=f).collect();
        let ok = cert(&quorum, 7, b"committed");
        assert_eq!(verifier.verify(stream, 7, b"committed", &ok), Ok(()));
        assert!(verifier.verify(stream, 7, b"forged", &ok).is_err());
        assert!(verifier.verify(stream, 8, b"committed", &ok).is_err());
        assert!(verifier.verify(stream, 7, b"committed", &cert(&quorum[..f], 7, b"committed")).is_err());
        // Shares signed with the other RSM's keys under the same indices.
        let wrong = QuorumCertificate::assemble(
            all_signers(&cfg, RsmId(1)).iter().take(f + 1).map(|s| s.sign_share(stream, 7, b"committed")),
        )
        .encode();
        assert!(verifier.verify(stream, 7, b"committed", &wrong).is_err());
    }
    // RSM 0 receives from RSM 1, also bft: its verifier checks RSM 1's keys.
    let back = StreamId { from: RsmId(1), to: RsmId(0) };
    let s1 = all_signers(&cfg, RsmId(1));
    let cert = QuorumCertificate::assemble(s1[2..4].iter().map(|s| s.sign_share(back, 1, b"x"))).encode();
    assert_eq!(cfg.endpoint_config(ReplicaId::new(0, 3)).unwrap().verifier.verify(back, 1, b"x", &cert), Ok(()));

    // A CFT deployment has no signers and accepts unproven messages.
    let cft = DeploymentConfig::embedded_default();
    assert!(cft.certificate_signers(RsmId(0)).unwrap().is_empty());
    assert_eq!(cft.endpoint_config(ReplicaId::new(1, 0)).unwrap().verifier.verify(stream, 0, b"m", b""), Ok(()));
}

#[test]
fn stake_weighted_verifier_counts_stake() {
    // alpha receives from beta (stakes 3,2,1,1,1,1,1, f = 3: needs stake 4).
    let cfg = example("stake-weighted.toml");
    let stream = StreamId { from: RsmId(1), to: RsmId(0) };
    let s = all_signers(&cfg, RsmId(1));
    let v = cfg.endpoint_config(ReplicaId::new(0, 0)).unwrap().verifier;
    let cert =
        |who: &[usize]| QuorumCertificate::assemble(who.iter().map(|&i| s[i].sign_share(stream, 3, b"p"))).encode();
    assert_eq!(v.verify(stream, 3, b"p", &cert(&[0, 2])), Ok(()));
    assert!(v.verify(stream, 3, b"p", &cert(&[2, 3, 4])).is_err());
    // beta receives from alpha (stakes 3,2,1,1, f = 2: needs stake 3): replica 0 alone will do,
    // replicas 1 and 2 will, an unproven message will not.
    let from_alpha = StreamId { from: RsmId(0), to: RsmId(1) };
    let a = all_signers(&cfg, RsmId(0));
    let v = cfg.endpoint_config(ReplicaId::new(1, 6)).unwrap().verifier;
    let cert =
        |who: &[usize]| QuorumCertificate::assemble(who.iter().map(|&i| a[i].sign_share(from_alpha, 0, b"p"))).encode();
    assert_eq!(v.verify(from_alpha, 0, b"p", &cert(&[0])), Ok(()));
    assert_eq!(v.verify(from_alpha, 0, b"p", &cert(&[1, 2])), Ok(()));
    assert!(v.verify(from_alpha, 0, b"p", &cert(&[2, 3])).is_err());
    assert!(v.verify(from_alpha, 0, b"p", b"").is_err());
}

#[test]
fn a_crash_tolerant_rsm_paired_with_a_byzantine_tolerant_one_is_refused() {
    let text = std::fs::read_to_string(examples_dir().join("stake-weighted.toml")).unwrap();
    let mixed = text.replacen("fault = \"bft\"", "fault = \"cft\"", 1);
    let e = DeploymentConfig::from_toml_str(&mixed, "mixed.toml").unwrap_err();
    assert!(e.to_string().contains("rsm[0].fault"), "{e}");
    assert!(e.to_string().contains("could make its peers deliver messages alpha never sent"), "{e}");
}

#[test]
fn loopback_ports_are_distinct_and_consecutive() {
    for name in EXAMPLES {
        let cfg = example(name);
        let moved = cfg.with_loopback_ports(41000);
        let ports: Vec<u16> = moved.replicas().iter().map(|&r| moved.address(r).port()).collect();
        let expected: Vec<u16> = (41000..).take(cfg.replicas().len()).collect();
        assert_eq!(ports, expected, "{name}");
        assert!(moved.replicas().iter().all(|&r| moved.address(r).ip().is_loopback()));
        assert_eq!(moved.rsms[0].name, cfg.rsms[0].name);
        assert_eq!(moved.keys, cfg.keys);
        assert_round_trips(&moved);
    }
}

#[test]
fn rsms_and_replicas_by_name_or_index() {
    let cfg = DeploymentConfig::embedded_default();
    assert_eq!(cfg.rsm_id("alpha").unwrap(), RsmId(0));
    assert_eq!(cfg.rsm_id("beta").unwrap(), RsmId(1));
    assert_eq!(cfg.rsm_id("0").unwrap(), RsmId(0));
    assert_eq!(cfg.rsm_id("1").unwrap(), RsmId(1));
    let e = cfg.rsm_id("gamma").unwrap_err();
    assert_eq!(e.field, "rsm");
    assert!(e.to_string().contains("\"gamma\"") && e.to_string().contains("\"alpha\""), "{e}");
    assert_eq!(cfg.replica("beta", 3).unwrap(), ReplicaId::new(1, 3));
    assert_eq!(cfg.replica("0", 2).unwrap(), ReplicaId::new(0, 2));
    let e = cfg.replica("beta", 4).unwrap_err();
    assert!(e.to_string().starts_with("<embedded default>: rsm[1].replicas: "), "{e}");
    assert!(e.reason.contains("no replica 4"), "{e}");
}

#[test]
fn membership_is_valid_and_in_id_order() {
    let text = BASE.replace(
        "  { id = 0, address = \"127.0.0.1:27200\" },\n  { id = 1, address = \"127.0.0.1:27201\" },\n",
        "  { id = 1, address = \"127.0.0.1:27201\", stake = 5 },\n  { id = 0, address = \"127.0.0.1:27200\" },\n",
    );
    let cfg = DeploymentConfig::from_toml_str(&text, "order.toml").unwrap();
    assert_eq!(cfg.rsms[1].replicas.iter().map(|r| r.id).collect::<Vec<_>>(), [0, 1, 2, 3]);
    assert_eq!(cfg.address(ReplicaId::new(1, 1)), "127.0.0.1:27201".parse().unwrap());
    let m = cfg.membership();
    m.validate().unwrap();
    assert_eq!(m.rsms[1].stakes(), vec![1, 5, 1, 1]);
    assert_eq!(m.rsms[0].name, "alpha");
}

#[test]
fn secrets_never_show_in_debug_output() {
    let cfg = example("bft-4x4-tcp.toml");
    let debug = format!("{cfg:?}");
    assert!(!debug.contains("706963736f75"), "secret in {debug}");
    assert!(!debug.contains("0f1e2d3c"), "seed in {debug}");
    assert!(!debug.contains("112, 105, 99"), "secret bytes in {debug}");
}

#[test]
fn secret_file_is_relative_to_the_config_file() {
    let dir = tempfile::tempdir().unwrap();
    let hex = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
    std::fs::write(dir.path().join("link.secret"), format!("{hex}\n")).unwrap();
    let text = BASE.replace(&format!("secret = \"{SECRET}\""), "secret_file = \"link.secret\"");
    let path = dir.path().join("deploy.toml");
    std::fs::write(&path, &text).unwrap();
    let cfg = DeploymentConfig::from_path(&path).unwrap();
    let KeyMaterial::Shared { secret, .. } = cfg.keys else { panic!("shared") };
    assert_eq!(secret[..4], [0x00, 0x11, 0x22, 0x33]);
    assert_eq!(secret[31], 0xff);
    // Written back inline.
    assert!(cfg.to_toml_string().contains(hex));
    assert_round_trips(&cfg);

    std::fs::write(dir.path().join("link.secret"), "not hex").unwrap();
    let e = DeploymentConfig::from_path(&path).unwrap_err();
    let line = line_of(&text, "secret_file");
    assert_eq!((e.line, e.field.as_str()), (Some(line), "keys.secret_file"), "{e}");
    assert!(e.reason.contains("link.secret") && e.reason.contains("64 hexadecimal digits"), "{e}");

    std::fs::remove_file(dir.path().join("link.secret")).unwrap();
    let e = DeploymentConfig::from_path(&path).unwrap_err();
    assert!(e.to_string().contains(&format!("deploy.toml:{line}:")), "{e}");
    assert!(e.reason.contains("cannot read"), "{e}");

    let e = DeploymentConfig::from_path(&dir.path().join("absent.toml")).unwrap_err();
    assert!(e.to_string().contains("absent.toml: cannot read the deployment file"), "{e}");
}

// ---------------------------------------------------------------------------------------------
// Errors: each names the file, the exact line and the field, with a helpful reason.

const SECRET: &str = "706963736f7520656d6265646465642064656d6f206b65793a207075626c6963";

/// A valid deployment; tests break one thing at a time.
const BASE: &str = r#"strategy = "picsou"

[[rsm]]
name = "alpha"
fault = "cft"
f = 1
replicas = [
  { id = 0, address = "127.0.0.1:27100" },
  { id = 1, address = "127.0.0.1:27101" },
  { id = 2, address = "127.0.0.1:27102" },
  { id = 3, address = "127.0.0.1:27103" },
]

[[rsm]]
name = "beta"
fault = "cft"
f = 1
replicas = [
  { id = 0, address = "127.0.0.1:27200" },
  { id = 1, address = "127.0.0.1:27201" },
  { id = 2, address = "127.0.0.1:27202" },
  { id = 3, address = "127.0.0.1:27203" },
]

[transport]
kind = "tcp"

[transport.tcp]
nodelay = true

[tuning]
phi_bits = 1024

[node]
batch_messages = 4096

[keys]
secret = "706963736f7520656d6265646465642064656d6f206b65793a207075626c6963"

[load]
size = 100
"#;

/// `BASE` with the single occurrence of `from` replaced by `to`.
fn with(from: &str, to: &str) -> String {
    assert_eq!(BASE.matches(from).count(), 1, "{from:?} must occur once in BASE");
    BASE.replacen(from, to, 1)
}

/// 1-based line of the first occurrence of `needle` in `text`.
fn line_of(text: &str, needle: &str) -> usize {
    let at = text.find(needle).unwrap_or_else(|| panic!("{needle:?} not in text"));
    text[..at].matches('\n').count() + 1
}

/// Parses `text` as `deploy.toml`, expecting an error at `line` about `field` whose reason
/// contains every one of `reasons`.
#[track_caller]
fn expect_error(text: &str, line: usize, field: &str, reasons: &[&str]) -> DeploymentError {
    let Err(e) = DeploymentConfig::from_toml_str(text, "deploy.toml") else {
        panic!("expected an error at line {line} about {field}, but it parsed:\n{text}");
    };
    let shown = e.to_string();
    assert_eq!(e.file, "deploy.toml", "{shown}");
    assert_eq!(e.line, Some(line), "wrong line in: {shown}");
    assert_eq!(e.field, field, "wrong field in: {shown}");
    assert!(shown.starts_with(&format!("deploy.toml:{line}:")), "{shown}");
    if field.is_empty() {
        assert!(shown.starts_with(&format!("deploy.toml:{line}:{}: ", e.column.unwrap())), "{shown}");
    } else {
        assert!(shown.contains(&format!(": {field}: ")), "{shown}");
    }
    for reason in reasons {
        assert!(e.reason.contains(reason), "reason lacks {reason:?}: {shown}");
    }
    assert!(!shown.contains(SECRET), "the secret leaked: {shown}");
    e
}

#[test]
fn base_is_valid() {
    let cfg = DeploymentConfig::from_toml_str(BASE, "deploy.toml").unwrap();
    assert_eq!(cfg.load.messages, 100_000);
    assert_eq!(line_of(BASE, "name = \"beta\""), 15);
}

#[test]
fn syntax_errors() {
    let text = with("phi_bits = 1024", "phi_bits = = 1024");
    let e = expect_error(&text, 32, "tuning.phi_bits", &["invalid TOML"]);
    assert_eq!(e.column, Some(12));
    let text = with("[node]", "[node");
    expect_error(&text, 34, "", &["invalid TOML"]);
    let text = with("batch_messages = 4096", "batch_messages = 4096\nbatch_messages = 1");
    expect_error(&text, 36, "node.batch_messages", &["invalid TOML", "duplicate key"]);
}

#[test]
fn unknown_keys() {
    let text = with("strategy = \"picsou\"", "strategy = \"picsou\"\nstrategie = \"ost\"");
    expect_error(&text, 2, "strategie", &["unknown field `strategie`", "`strategy`"]);
    let text = with("name = \"beta\"", "name = \"beta\"\nsize = 4");
    expect_error(&text, 16, "rsm[1].size", &["unknown field `size`", "`replicas`"]);
    let text = with("{ id = 1, address = \"127.0.0.1:27201\" }", "{ id = 1, adress = \"127.0.0.1:27201\" }");
    expect_error(&text, 20, "rsm[1].replicas[1].adress", &["unknown field `adress`", "`address`"]);
    let text = with("nodelay = true", "nodelay = true\nno_delay = true");
    expect_error(&text, 30, "transport.tcp.no_delay", &["unknown field `no_delay`", "`nodelay`"]);
    let text = with("phi_bits = 1024", "phi_bitz = 1024");
    expect_error(&text, 32, "tuning.phi_bitz", &["unknown field `phi_bitz`", "`phi_bits`"]);
    let text = with("[load]", "[load]\nsender = \"both\"");
    expect_error(&text, 41, "load.sender", &["unknown field `sender`", "`senders`"]);
    let text = with("[transport.tcp]", "[transport.quic]");
    expect_error(&text, 28, "transport.quic", &["unknown field `quic`"]);
}

#[test]
fn missing_fields() {
    let text = with("name = \"beta\"\nfault = \"cft\"\nf = 1\n", "name = \"beta\"\nfault = \"cft\"\n");
    expect_error(&text, 14, "rsm[1].f", &["missing required field `f`"]);
    let text = with("name = \"alpha\"\n", "");
    expect_error(&text, 3, "rsm[0].name", &["missing required field `name`"]);
    let text = with("{ id = 2, address = \"127.0.0.1:27102\" }", "{ address = \"127.0.0.1:27102\" }");
    expect_error(&text, 10, "rsm[0].replicas[2].id", &["missing required field `id`"]);
    // Addresses are required unless the transport is in memory.
    let text = with("{ id = 3, address = \"127.0.0.1:27203\" }", "{ id = 3 }");
    expect_error(&text, 22, "rsm[1].replicas[3].address", &["missing required field `address`", "\"mem\""]);
    let mem = text.replace("kind = \"tcp\"", "kind = \"mem\"");
    let cfg = DeploymentConfig::from_toml_str(&mem, "deploy.toml").unwrap();
    assert_eq!(cfg.address(ReplicaId::new(1, 3)).port(), 0);
    // Missing top-level tables are reported for the file as a whole.
    let text = BASE.replace(&format!("[keys]\nsecret = \"{SECRET}\"\n"), "");
    let e = DeploymentConfig::from_toml_str(&text, "deploy.toml").unwrap_err();
    assert_eq!((e.line, e.field.as_str()), (None, "keys"));
    assert!(e.to_string().starts_with("deploy.toml: keys: no keys: give every replica its public_key"), "{e}");
    assert!(e.reason.contains("picsou keygen") && e.reason.contains("secret_file"), "{e}");
    let text = with(&format!("secret = \"{SECRET}\""), "");
    expect_error(&text, 37, "keys", &["no keys", "picsou keygen"]);
}

#[test]
fn type_errors() {
    let text = with("nodelay = true", "nodelay = 3");
    let e = expect_error(&text, 29, "transport.tcp.nodelay", &["invalid type: integer `3`, expected a boolean"]);
    assert_eq!(e.column, Some(11));
    let text = with("name = \"alpha\"\nfault = \"cft\"\nf = 1", "name = \"alpha\"\nfault = \"cft\"\nf = \"one\"");
    expect_error(&text, 6, "rsm[0].f", &["invalid type: string \"one\", expected u64"]);
    let text = with("name = \"alpha\"\nfault = \"cft\"\nf = 1", "name = \"alpha\"\nfault = \"cft\"\nf = -1");
    expect_error(&text, 6, "rsm[0].f", &["expected u64"]);
    let text = with("strategy = \"picsou\"", "strategy = \"fastest\"");
    expect_error(&text, 1, "strategy", &["unknown variant `fastest`", "`picsou`", "`otu`"]);
    let text = with("name = \"beta\"\nfault = \"cft\"", "name = \"beta\"\nfault = \"byzantine\"");
    expect_error(&text, 16, "rsm[1].fault", &["unknown variant `byzantine`", "`cft`", "`bft`"]);
    let text = with("kind = \"tcp\"", "kind = \"quic\"");
    expect_error(&text, 26, "transport.kind", &["unknown variant `quic`", "`uring`", "`rdma`"]);
    let text = with("phi_bits = 1024", "phi_bits = \"1024\"");
    expect_error(&text, 32, "tuning.phi_bits", &["invalid type: string"]);
    let text = with("{ id = 1, address = \"127.0.0.1:27101\" }", "{ id = 70000, address = \"127.0.0.1:27101\" }");
    expect_error(&text, 9, "rsm[0].replicas[1].id", &["70000", "u16"]);
    let text = with("  { id = 2, address = \"127.0.0.1:27202\" },\n", "  2,\n");
    expect_error(&text, 21, "rsm[1].replicas[2]", &["expected a replica table"]);
    let text = with("[load]\nsize = 100", "[load]\nsize = 100\nsenders = \"all\"");
    expect_error(&text, 42, "load.senders", &["unknown variant `all`", "`both`", "`first`", "`second`"]);
    let text = with("[tuning]\nphi_bits = 1024", "[tuning]\nack_interval = -1.0");
    expect_error(&text, 32, "tuning.ack_interval", &["milliseconds"]);
}

#[test]
fn impossible_fault_thresholds() {
    let text = with("name = \"beta\"\nfault = \"cft\"\nf = 1", "name = \"beta\"\nfault = \"cft\"\nf = 2");
    expect_error(&text, 17, "rsm[1].f", &["f = 2 is too large", "2f+1", "\"beta\"", "largest valid f: 1"]);
    // Both bft: a cft RSM cannot be paired with a bft one.
    let text = BASE.replace("fault = \"cft\"", "fault = \"bft\"").replace(
        "[keys]",
        "[keys]\nsigning_seed = \"0f1e2d3c4b5a69788796a5b4c3d2e1f00112233445566778899aabbccddeeff0\"",
    );
    DeploymentConfig::from_toml_str(&text, "deploy.toml").unwrap();
    let text = text.replacen("f = 1", "f = 2", 1);
    expect_error(&text, 6, "rsm[0].f", &["3f+1", "\"alpha\"", "largest valid f: 1"]);
    // Stakes count: 4 replicas of stake 1 and one of stake 3 tolerate f = 3 under cft.
    let text = with(
        "  { id = 3, address = \"127.0.0.1:27103\" },\n",
        "  { id = 3, address = \"127.0.0.1:27103\" },\n  { id = 4, address = \"127.0.0.1:27104\", stake = 3 },\n",
    )
    .replacen("f = 1", "f = 3", 1);
    assert_eq!(DeploymentConfig::from_toml_str(&text, "deploy.toml").unwrap().rsms[0].spec().total_stake(), 7);
    let text = text.replacen("f = 3", "f = 4", 1);
    expect_error(&text, 6, "rsm[0].f", &["total stake >= 2f+1", "has 7"]);
}

#[test]
fn bad_stakes_and_ids() {
    let text =
        with("{ id = 2, address = \"127.0.0.1:27102\" }", "{ id = 2, address = \"127.0.0.1:27102\", stake = 0 }");
    expect_error(&text, 10, "rsm[0].replicas[2].stake", &["at least 1"]);
    let text = with("{ id = 3, address = \"127.0.0.1:27203\" }", "{ id = 1, address = \"127.0.0.1:27203\" }");
    expect_error(&text, 22, "rsm[1].replicas[3].id", &["duplicate replica id 1", "rsm[1].replicas[1]"]);
    let text = with("{ id = 2, address = \"127.0.0.1:27202\" }", "{ id = 7, address = \"127.0.0.1:27202\" }");
    expect_error(&text, 21, "rsm[1].replicas[2].id", &["replica id 7 is out of range", "ids 0 to 3", "missing: 2"]);
    let text = with("replicas = [\n  { id = 0, address = \"127.0.0.1:27200\" },", "replicas = [],\nx = [\n");
    assert!(DeploymentConfig::from_toml_str(&text, "deploy.toml").is_err());
    let text = BASE.replacen(
        "replicas = [\n  { id = 0, address = \"127.0.0.1:27100\" },\n  { id = 1, address = \"127.0.0.1:27101\" },\n  { id = 2, address = \"127.0.0.1:27102\" },\n  { id = 3, address = \"127.0.0.1:27103\" },\n]",
        "replicas = []",
        1,
    );
    expect_error(&text, 7, "rsm[0].replicas", &["zero replicas"]);
}

#[test]
fn bad_names() {
    let text = with("name = \"beta\"", "name = \"alpha\"");
    expect_error(&text, 15, "rsm[1].name", &["both RSMs are named \"alpha\""]);
    let text = with("name = \"alpha\"", "name = \" \"");
    expect_error(&text, 4, "rsm[0].name", &["must not be empty"]);
}

#[test]
fn bad_addresses() {
    let text = with("\"127.0.0.1:27202\"", "\"127.0.0.1\"");
    expect_error(&text, 21, "rsm[1].replicas[2].address", &["no port", "ip:port"]);
    let text = with("\"127.0.0.1:27202\"", "\"127.0.0.1:http\"");
    expect_error(&text, 21, "rsm[1].replicas[2].address", &["port \"http\"", "between 0 and 65535"]);
    let text = with("\"127.0.0.1:27202\"", "\"no-such-host.invalid:27202\"");
    expect_error(&text, 21, "rsm[1].replicas[2].address", &["cannot resolve host \"no-such-host.invalid\""]);
    let text = with("\"127.0.0.1:27101\"", "\"127.0.0.1:0\"");
    expect_error(&text, 9, "rsm[0].replicas[1].address", &["port 0"]);
    let text = with("\"127.0.0.1:27101\"", "\"0.0.0.0:27101\"");
    expect_error(&text, 9, "rsm[0].replicas[1].address", &["unspecified"]);
    let text = with("\"127.0.0.1:27101\"", "27101");
    expect_error(&text, 9, "rsm[0].replicas[1].address", &["invalid type: integer `27101`, expected a string"]);
    // Host names resolve.
    let text = with("\"127.0.0.1:27101\"", "\"localhost:27101\"");
    let cfg = DeploymentConfig::from_toml_str(&text, "deploy.toml").unwrap();
    assert!(cfg.address(ReplicaId::new(0, 1)).ip().is_loopback());
}

#[test]
fn duplicate_addresses_name_both_replicas() {
    let text = with("\"127.0.0.1:27202\"", "\"127.0.0.1:27101\"");
    expect_error(
        &text,
        21,
        "rsm[1].replicas[2].address",
        &[
            "address 127.0.0.1:27101",
            "rsm[1].replicas[2] (\"beta\" replica 2)",
            "rsm[0].replicas[1] (\"alpha\" replica 1)",
        ],
    );
    let text = with("\"127.0.0.1:27103\"", "\"127.0.0.1:27100\"");
    expect_error(&text, 11, "rsm[0].replicas[3].address", &["rsm[0].replicas[0] (\"alpha\" replica 0)"]);
    // In-memory transports ignore addresses.
    let text = text.replace("kind = \"tcp\"", "kind = \"mem\"");
    DeploymentConfig::from_toml_str(&text, "deploy.toml").unwrap();
}

#[test]
fn wrong_number_of_rsms() {
    let second = &BASE[BASE.find("[[rsm]]\nname = \"beta\"").unwrap()..BASE.find("[transport]").unwrap()];
    let one = BASE.replacen(second, "", 1);
    expect_error(&one, 3, "rsm", &["found 1 [[rsm]] table", "exactly two"]);
    let third = second.replace("beta", "gamma").replace("272", "273");
    let three = BASE.replacen(second, &format!("{second}{third}"), 1);
    expect_error(&three, line_of(&three, "name = \"gamma\"") - 1, "rsm", &["found 3 [[rsm]] tables", "exactly two"]);
    let text = format!("rsm = []\n{}", &BASE[BASE.find("[transport]").unwrap()..]);
    expect_error(&text, 1, "rsm", &["found 0 [[rsm]] tables"]);
    let text = BASE[BASE.find("[transport]").unwrap()..].to_owned();
    let e = DeploymentConfig::from_toml_str(&text, "deploy.toml").unwrap_err();
    assert_eq!(
        e.to_string(),
        "deploy.toml: rsm: missing required field `rsm`: a deployment has exactly two [[rsm]] tables"
    );
}

#[test]
fn bad_keys() {
    let text = with(SECRET, &SECRET[..60]);
    expect_error(&text, 38, "keys.secret", &["expected 64 hexadecimal digits", "found 60"]);
    let text = with(SECRET, &format!("{}zz", &SECRET[..62]));
    expect_error(&text, 38, "keys.secret", &["character 63 is not a hexadecimal digit"]);
    let text = with("[keys]", "[keys]\nsigning_seed = \"0x1234\"");
    expect_error(&text, 38, "keys.signing_seed", &["expected 64 hexadecimal digits"]);
    let text = with(&format!("secret = \"{SECRET}\""), &format!("secret = \"{SECRET}\"\nsecret_file = \"k\""));
    let e = expect_error(&text, 39, "keys.secret_file", &["either secret or secret_file, not both"]);
    assert_eq!(e.column, Some(1));
    // bft needs a signing seed.
    let text = BASE.replace("fault = \"cft\"", "fault = \"bft\"");
    expect_error(&text, 37, "keys.signing_seed", &["rsm[0] (\"alpha\") is bft", "signing_seed = "]);
}

#[test]
fn bad_tuning_node_load_and_transport() {
    let text = with("phi_bits = 1024", "phi_bits = 100");
    expect_error(&text, 32, "tuning.phi_bits", &["multiple of 64"]);
    // A default that no longer fits: located at the [tuning] table.
    let text = with("phi_bits = 1024", "phi_bits = 1024\nsend_window = 1000000");
    expect_error(&text, 31, "tuning.max_buffered", &["at least send_window"]);
    let text = with("batch_messages = 4096", "batch_messages = 0");
    expect_error(&text, 35, "node.batch_messages", &["at least 1"]);
    let text = with("[node]", "[node]\nqueue_capacity = 0");
    expect_error(&text, 35, "node.queue_capacity", &["at least 1"]);
    let text = with("[node]", "[node]\nqueue_mib = 0");
    expect_error(&text, 35, "node.queue_mib", &["between 1 and 1048576"]);
    let text = with("size = 100", "size = 0");
    expect_error(&text, 41, "load.size", &["between 1 and tuning.max_payload_bytes (33554432)"]);
    let text = with("size = 100", "size = 40000000");
    expect_error(&text, 41, "load.size", &["40000000 bytes"]);
    let text = with("size = 100", "size = 100\ntimeout_s = 0");
    expect_error(&text, 42, "load.timeout_s", &["at least 1"]);
    let text = with("nodelay = true", "nodelay = true\nbackoff_min = 500\nbackoff_max = 100");
    expect_error(&text, 31, "transport.tcp.backoff_max", &["at least backoff_min"]);
    let text = with("[tuning]", "[transport.uring]\nentries = 100\n\n[tuning]");
    expect_error(&text, 32, "transport.uring.entries", &["not a power of two"]);
}

#[test]
fn to_toml_string_keeps_every_setting() {
    let text = with("phi_bits = 1024", "phi_bits = 512\nmin_rto = 0.25\nsuspect_after = 33.5")
        .replace("nodelay = true", "nodelay = false\nbackoff_max = 4000")
        .replace("batch_messages = 4096", "batch_messages = 17\nbatch_linger_us = 250\nstats_interval_ms = 7")
        .replace("size = 100", "size = 3\nmessages = 9\nsenders = \"second\"\nrate = 1000\ntimeout_s = 5")
        .replace("strategy = \"picsou\"", "strategy = \"otu\"")
        .replace(
            "[transport.tcp]",
            "[transport.rdma]\ndevice = \"mlx5_0\"\ngid_index = 3\npolling = \"event\"\nspin_us = 2500\n\n[transport.tcp]",
        );
    let cfg = DeploymentConfig::from_toml_str(&text, "deploy.toml").unwrap();
    assert_eq!(cfg.strategy, Strategy::Otu);
    assert_eq!(cfg.tuning.min_rto, std::time::Duration::from_micros(250));
    assert!(!cfg.transport.tcp.nodelay);
    assert_eq!(cfg.transport.rdma.gid_index, Some(3));
    assert_eq!(cfg.transport.rdma.spin_us, 2500);
    assert_eq!(cfg.node.batch_linger, std::time::Duration::from_micros(250));
    assert_eq!(cfg.load.senders, Senders::Second);
    assert!(!cfg.load.senders.sends(RsmId(0)));
    assert_round_trips(&cfg);
    let mut bft = example("bft-4x4-tcp.toml");
    bft.rsms[1].name = "name with \"quotes\" and \\".to_owned();
    assert_round_trips(&bft);
}

/// Every replica's signer of `rsm`, derived from the deployment's shared signing seed and
/// signing for this deployment (commit digests bind its id).
fn all_signers(cfg: &DeploymentConfig, rsm: RsmId) -> Vec<picsou_core::proof::CommitSigner> {
    let KeyMaterial::Shared { signing_seed: Some(seed), .. } = cfg.keys else { return Vec::new() };
    (0..cfg.rsm(rsm).n() as u16)
        .map(|i| {
            picsou_core::proof::CommitSigner::new(i, picsou_core::proof::derive_signing_key(&seed, rsm, i))
                .in_deployment(cfg.deployment_id())
        })
        .collect()
}

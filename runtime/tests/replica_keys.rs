//! Per-replica keys: what a replica can and cannot do with only its own identity, how a
//! deployment lists public keys, and the refusal of a shared secret off loopback.

use picsou_core::handshake::{self, HandshakeError, Incarnation, SessionContext};
use picsou_core::identity::Identity;
use picsou_core::proof::{QuorumCertificate, StreamId};
use picsou_core::{ReplicaId, RsmId};
use picsou_runtime::deployment::{DeploymentConfig, KeyMaterial, keygen, read_identity_file};

const SECRET: &str = "706963736f7520656d6265646465642064656d6f206b65793a207075626c6963";

/// A 4+4 deployment on `ip` with the given fault model and `[keys]` body.
fn deployment(ip: &str, fault: &str, keys: &str) -> String {
    let rsm = |name: &str, base: u16| {
        let replicas: Vec<String> =
            (0..4).map(|i| format!("  {{ id = {i}, address = \"{ip}:{}\" }},", base + i)).collect();
        format!("[[rsm]]\nname = \"{name}\"\nfault = \"{fault}\"\nf = 1\nreplicas = [\n{}\n]\n", replicas.join("\n"))
    };
    format!("{}\n{}\n[transport]\nkind = \"tcp\"\n\n[keys]\n{keys}\n", rsm("alpha", 28100), rsm("beta", 28200))
}

/// The same deployment with fresh per-replica keys, each in its own file under `dir`.
fn keyed(ip: &str, fault: &str, dir: &std::path::Path) -> DeploymentConfig {
    let dir_template = dir.join("template.toml");
    std::fs::write(&dir_template, deployment(ip, fault, "")).unwrap();
    let template = DeploymentConfig::template_from_path(&dir_template).unwrap();
    let out = keygen::generate(&template, &dir.join("keys"), false).unwrap();
    let path = dir.join("keys/deployment.toml");
    std::fs::write(&path, out.to_toml_string()).unwrap();
    DeploymentConfig::from_path(&path).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn a_shared_secret_is_refused_off_loopback_with_a_way_out() {
    for keys in [
        format!("secret = \"{SECRET}\""),
        "secret = \"00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\"".to_owned(),
    ] {
        let e = DeploymentConfig::from_toml_str(&deployment("10.1.2.3", "cft", &keys), "d.toml").unwrap_err();
        assert_eq!(e.field, "keys.secret", "{e}");
        assert!(e.reason.contains("loopback") && e.reason.contains("picsou keygen"), "{e}");
        assert!(e.reason.contains("10.1.2.3:28100"), "names the offending address: {e}");
    }
    // On loopback, a demo may keep one.
    assert!(
        DeploymentConfig::from_toml_str(&deployment("127.0.0.1", "cft", &format!("secret = \"{SECRET}\"")), "d")
            .is_ok()
    );
}

#[test]
fn keygen_writes_private_files_and_a_deployment_every_replica_loads() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = keyed("10.1.2.3", "cft", dir.path());
    assert!(cfg.per_replica_keys());
    for r in cfg.replicas() {
        let path = dir.path().join(format!("keys/{}-{}.key", cfg.rsm(r.rsm).name, r.index));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        }
        let identity = read_identity_file(&path).unwrap();
        assert_eq!(Some(identity.public()), cfg.rsm(r.rsm).replicas[usize::from(r.index)].public_key);
        cfg.endpoint_config(r).unwrap();
    }
    // A second run does not overwrite keys silently.
    let template = DeploymentConfig::template_from_path(&dir.path().join("template.toml")).unwrap();
    assert!(keygen::generate(&template, &dir.path().join("keys"), false).is_err());
}

#[test]
fn a_replica_knows_only_its_own_links_and_cannot_impersonate_another() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = keyed("10.1.2.3", "cft", dir.path());
    let (a, b, c) = (ReplicaId::new(0, 0), ReplicaId::new(1, 0), ReplicaId::new(1, 1));
    let ka = cfg.replica_keys(a).unwrap().links;
    let kb = cfg.replica_keys(b).unwrap().links;
    let kc = cfg.replica_keys(c).unwrap().links;
    // Both ends of a link agree; every link has its own key.
    assert_eq!(ka.key_for(b), kb.key_for(a));
    assert_ne!(ka.key_for(b), ka.key_for(c));
    // c holds keys for its own links only: none for {a, b}, and its key towards b is not a's.
    assert!(kc.key_for(c).is_none());
    assert_ne!(kc.key_for(b), ka.key_for(b));
    // So c cannot send b a hello claiming to be a (with a shared secret it could derive the
    // key of link {a, b} and do exactly that).
    let ctx = SessionContext { deployment: cfg.deployment_id(), incarnation: Incarnation([1; 16]) };
    let nonce = [7; 16];
    let challenge = handshake::challenge(&nonce);
    let (forged, _) = handshake::answer(&challenge, a, b, &kc.key_for(b).unwrap(), &ctx, &[2; 16]).unwrap();
    let verdict = handshake::accept(&forged, b, &nonce, &ctx, |p| kb.key_for(p));
    assert_eq!(verdict.unwrap_err(), HandshakeError::BadTag(a));
    let (genuine, _) = handshake::answer(&challenge, a, b, &ka.key_for(b).unwrap(), &ctx, &[2; 16]).unwrap();
    assert!(handshake::accept(&genuine, b, &nonce, &ctx, |p| kb.key_for(p)).is_ok());
}

#[test]
fn one_replica_cannot_forge_a_commit_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = keyed("10.1.2.3", "bft", dir.path());
    let stream = StreamId { from: RsmId(0), to: RsmId(1) };
    let verifier = cfg.endpoint_config(ReplicaId::new(1, 0)).unwrap().verifier;
    let signer = |i: u16| cfg.replica_keys(ReplicaId::new(0, i)).unwrap().signer.unwrap();
    // f + 1 = 2 distinct replicas, each with its own key: accepted.
    let ok = QuorumCertificate::assemble([signer(0), signer(1)].iter().map(|s| s.sign_share(stream, 5, b"m"))).encode();
    assert_eq!(verifier.verify(stream, 5, b"m", &ok), Ok(()));
    // Replica 0 alone, signing as itself and "as replica 1" with its own key: refused.
    let mine = signer(0);
    let as_other = picsou_core::proof::CommitSigner::new(1, Identity::from_seed(&[0; 32]).signing_key().clone());
    let forged =
        QuorumCertificate::assemble([mine.sign_share(stream, 5, b"m"), as_other.sign_share(stream, 5, b"m")]).encode();
    assert!(verifier.verify(stream, 5, b"m", &forged).is_err());
    // The synthetic load signs with the identities this process can read: here, all of them.
    assert_eq!(cfg.certificate_signers(RsmId(0)).unwrap().len(), 2);
}

#[test]
fn identities_are_checked_against_the_listed_public_keys() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = keyed("10.1.2.3", "bft", dir.path());
    let a = ReplicaId::new(0, 2);
    let wrong = Identity::from_seed(&[9; 32]);
    let e = cfg.clone().with_identity(a, wrong).unwrap_err();
    assert!(e.reason.contains("alpha/2") && e.reason.contains("lists"), "{e}");
    // A key file swapped with another replica's is named.
    let keys = dir.path().join("keys");
    std::fs::rename(keys.join("alpha-2.key"), keys.join("tmp")).unwrap();
    std::fs::copy(keys.join("alpha-3.key"), keys.join("alpha-2.key")).unwrap();
    let e = cfg.replica_keys(a).unwrap_err();
    assert!(e.reason.contains("wrong file?") && e.reason.contains("alpha-2.key"), "{e}");
    // Given in memory, the right identity wins over the file.
    let right = read_identity_file(&keys.join("tmp")).unwrap();
    let cfg = cfg.with_identity(a, right).unwrap();
    assert!(cfg.replica_keys(a).is_ok());
    // Without readable identities for f + 1 stake, the synthetic BFT load says what is missing.
    for i in 0..4 {
        let _ = std::fs::remove_file(keys.join(format!("alpha-{i}.key")));
    }
    let e = cfg.certificate_signers(RsmId(0)).unwrap_err();
    assert!(e.reason.contains("f = 1") && e.reason.contains("cannot read identity file"), "{e}");
}

#[test]
fn public_keys_must_be_all_or_nothing_and_usable() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = keyed("10.1.2.3", "cft", dir.path());
    let text = cfg.to_toml_string();
    // One replica without its key.
    let first = text.find(", public_key = ").unwrap();
    let end = first + text[first..].find(" }").unwrap();
    let missing = format!("{}{}", &text[..first], &text[end..]);
    let e = DeploymentConfig::from_toml_str(&missing, "d.toml").unwrap_err();
    assert!(e.reason.contains("has no public_key"), "{e}");
    // A small-order point.
    let key = &text[first + 16..first + 16 + 64];
    let weak = text.replacen(key, "0100000000000000000000000000000000000000000000000000000000000000", 1);
    let e = DeploymentConfig::from_toml_str(&weak, "d.toml").unwrap_err();
    assert!(e.field.ends_with("public_key") && e.reason.contains("weak"), "{e}");
    // Keys and a shared secret together.
    let both = text.replace("[keys]", &format!("[keys]\nsecret = \"{SECRET}\""));
    let e = DeploymentConfig::from_toml_str(&both, "d.toml").unwrap_err();
    assert!(e.reason.contains("no shared secret"), "{e}");
    assert!(matches!(cfg.keys, KeyMaterial::PerReplica { .. }));
}

#[test]
fn link_keys_are_bound_to_the_deployment() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = keyed("10.1.2.3", "cft", dir.path());
    let (a, b) = (ReplicaId::new(0, 1), ReplicaId::new(1, 2));
    let before = cfg.replica_keys(a).unwrap().links.key_for(b);
    // The same identities in a deployment that differs only in f: other link keys.
    let mut other = cfg.clone();
    other.rsms[0].f = 0;
    assert_ne!(other.deployment_id(), cfg.deployment_id());
    assert_ne!(other.replica_keys(a).unwrap().links.key_for(b), before);
    // Addresses are not part of the id: a replica may move host with its keys.
    let mut moved = cfg.clone();
    moved.rsms[1].replicas[2].address = "10.9.9.9:1".parse().unwrap();
    assert_eq!(moved.replica_keys(a).unwrap().links.key_for(b), before);
}

//! [`KeyMaterial`]: the `[keys]` table; identity files; the hexadecimal encoding of 32-byte
//! keys.
//!
//! Two modes. **Per-replica keys** (every real deployment): each replica holds only its own
//! identity file, the deployment file lists every replica's public key, and link keys come from
//! pairwise key agreement ([`picsou_core::identity`]). **A shared secret** (loopback demos and
//! tests only): every key of the deployment derives from one secret, so any holder can
//! impersonate any replica; parsing refuses it for a deployment with a non-loopback address.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use picsou_core::ReplicaId;
use picsou_core::identity::Identity;

/// The deployment's keys (the `[keys]` table). `Debug` never shows a secret.
#[derive(Clone, PartialEq, Eq)]
pub enum KeyMaterial {
    /// One secret for the whole deployment: loopback demos and tests only.
    Shared {
        /// Deployment MAC secret: every link key is derived from it
        /// ([`LinkKeys::derived`](picsou_core::keys::LinkKeys::derived)).
        secret: [u8; 32],
        /// Seed of every replica's ed25519 signing key
        /// ([`derive_signing_key`](picsou_core::proof::derive_signing_key)); required when
        /// either RSM is BFT.
        signing_seed: Option<[u8; 32]>,
    },
    /// Each replica has its own identity; public keys are in the replicas' `public_key`.
    PerReplica {
        /// `keys.identity_file`, resolved against the deployment file's directory: where a
        /// replica finds its identity file. `{rsm}` and `{id}` in it stand for the replica's
        /// RSM name and id; without them every host keeps its own file at the same path.
        identity_file: Option<PathBuf>,
        /// Identities given in memory ([`DeploymentConfig::with_identity`]); they take
        /// precedence over `identity_file`.
        ///
        /// [`DeploymentConfig::with_identity`]: super::DeploymentConfig::with_identity
        identities: BTreeMap<ReplicaId, Identity>,
    },
}

impl fmt::Debug for KeyMaterial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Shared { signing_seed, .. } => f
                .debug_struct("Shared")
                .field("secret", &format_args!("<redacted>"))
                .field("signing_seed", &signing_seed.map(|_| format_args!("<redacted>")))
                .finish(),
            Self::PerReplica { identity_file, identities } => f
                .debug_struct("PerReplica")
                .field("identity_file", identity_file)
                .field("identities", &identities.keys().collect::<Vec<_>>())
                .finish(),
        }
    }
}

/// The identity-file path of replica `index` of RSM `rsm_name` under `template`.
pub(super) fn identity_path(template: &Path, rsm_name: &str, index: u16) -> PathBuf {
    let text = template.to_string_lossy();
    if !text.contains("{rsm}") && !text.contains("{id}") {
        return template.to_path_buf();
    }
    PathBuf::from(text.replace("{rsm}", rsm_name).replace("{id}", &index.to_string()))
}

/// Reads an identity file: 64 hexadecimal digits (a 32-byte seed) and optional whitespace,
/// readable by its owner only. The error never quotes the contents.
pub fn read_identity_file(path: &Path) -> Result<Identity, String> {
    let shown = path.display();
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read identity file {shown}: {e}"))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path).map_err(|e| format!("cannot stat {shown}: {e}"))?.permissions().mode();
        if mode & 0o077 != 0 {
            return Err(format!(
                "identity file {shown} is accessible by other users (mode {:04o}); a replica's secret key must be \
                 private: chmod 600 {shown}",
                mode & 0o7777
            ));
        }
    }
    let seed = decode_hex(text.trim()).map_err(|reason| format!("identity file {shown}: {reason}"))?;
    Ok(Identity::from_seed(&seed))
}

/// Writes `identity` to a new file at `path` with mode 0600 (refusing to overwrite unless
/// `overwrite`).
pub fn write_identity_file(path: &Path, identity: &Identity, overwrite: bool) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true);
    if overwrite {
        options.create(true).truncate(true);
    } else {
        options.create_new(true);
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    #[cfg(unix)]
    {
        // An overwritten file keeps its old mode: make it private again.
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    writeln!(file, "{}", encode_hex(&identity.seed()))?;
    file.sync_all()
}

/// Lowercase hexadecimal.
pub(crate) fn encode_hex(bytes: &[u8; 32]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(64);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 15)]));
    }
    s
}

/// Decodes 64 hexadecimal digits (either case). The error never quotes the input: it may be a
/// secret.
pub(crate) fn decode_hex(text: &str) -> Result<[u8; 32], String> {
    let chars = text.chars().count();
    if chars != 64 {
        return Err(format!("expected 64 hexadecimal digits (32 bytes), found {chars} characters"));
    }
    let mut out = [0u8; 32];
    let digit = |i: usize| {
        let c = text.as_bytes()[i];
        char::from(c).to_digit(16).ok_or_else(|| format!("character {} is not a hexadecimal digit", i + 1))
    };
    for (i, byte) in out.iter_mut().enumerate() {
        // Any non-ASCII byte is not a digit, so byte positions are character positions up to
        // the first error.
        *byte = (digit(2 * i)? << 4 | digit(2 * i + 1)?) as u8;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip_and_errors() {
        let bytes: [u8; 32] = std::array::from_fn(|i| (i * 37) as u8);
        let hex = encode_hex(&bytes);
        assert_eq!(hex.len(), 64);
        assert_eq!(decode_hex(&hex), Ok(bytes));
        assert_eq!(decode_hex(&hex.to_uppercase()), Ok(bytes));
        assert!(decode_hex(&hex[..62]).unwrap_err().contains("found 62 characters"));
        let bad = format!("{}g", &hex[..63]);
        assert!(decode_hex(&bad).unwrap_err().contains("character 64"));
        let wide = format!("{}é", &hex[..63]);
        assert!(decode_hex(&wide).is_err());
    }

    #[test]
    fn debug_hides_secrets() {
        let k = KeyMaterial::Shared { secret: [0xab; 32], signing_seed: Some([0xcd; 32]) };
        let s = format!("{k:?}");
        assert!(!s.contains("171") && !s.contains("ab") && !s.contains("205"), "{s}");
        assert!(s.contains("redacted"));
    }

    #[test]
    fn identity_files_round_trip_and_must_be_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.key");
        let id = Identity::from_seed(&[42; 32]);
        write_identity_file(&path, &id, false).unwrap();
        assert_eq!(read_identity_file(&path).unwrap(), id);
        assert!(write_identity_file(&path, &id, false).is_err(), "no silent overwrite");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
            let e = read_identity_file(&path).unwrap_err();
            assert!(e.contains("mode 0644") && e.contains("chmod 600"), "{e}");
            write_identity_file(&path, &id, true).unwrap();
            assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        }
        std::fs::write(dir.path().join("bad.key"), "zz").unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir.path().join("bad.key"), std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        assert!(read_identity_file(&dir.path().join("bad.key")).unwrap_err().contains("64 hexadecimal digits"));
    }

    #[test]
    fn identity_path_templates() {
        let t = Path::new("keys/{rsm}-{id}.key");
        assert_eq!(identity_path(t, "alpha", 3), PathBuf::from("keys/alpha-3.key"));
        let fixed = Path::new("/etc/picsou/identity.key");
        assert_eq!(identity_path(fixed, "alpha", 3), fixed);
    }
}

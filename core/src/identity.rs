//! Per-replica identities and pairwise link keys.
//!
//! Each replica of a real deployment holds one secret: a 32-byte seed, its [`Identity`]. The
//! seed is an ed25519 signing key (commit-certificate shares are signed with it), and the same
//! key, mapped to Curve25519's Montgomery form, takes part in an X25519 key agreement with
//! each peer's public key. So a deployment file lists one public key per replica, and every
//! replica computes the MAC key of each of its own links — and of no other link:
//!
//! ```text
//! link key {a, b} = BLAKE3-derive_key("picsou 2026 link mac v2",
//!                     X25519(a's secret, b's public) || deployment id || min(a,b) || max(a,b))
//! ```
//!
//! Both ends compute the same X25519 value, so the key is symmetric; a third replica cannot
//! compute it (computational Diffie–Hellman on Curve25519), so it can neither impersonate `a`
//! to `b` nor forge frames on their link, and with its one signing key it contributes at most
//! its own share to a commit certificate. The deployment id (a digest of the membership and
//! every public key, [`deployment_id`]) binds the keys to one deployment: the same identities
//! in another deployment have other link keys.
//!
//! The ed25519 → X25519 mapping is the birational map that libsodium's
//! `crypto_sign_ed25519_sk_to_curve25519` uses; using one key for both signatures and key
//! agreement is the standard construction analysed by Thormarker (2021), "On using the same
//! key pair for Ed25519 and an X25519 based KEM".

use std::fmt;

use curve25519_dalek::montgomery::MontgomeryPoint;
use ed25519_dalek::{SigningKey, VerifyingKey};

use crate::ids::ReplicaId;
use crate::keys::MacKey;

/// Context string of link-key derivation from a key agreement.
const LINK_CONTEXT: &str = "picsou 2026 link mac v2";
/// Context string of [`deployment_id`].
const DEPLOYMENT_CONTEXT: &str = "picsou 2026 deployment id v1";

/// Why a public key or a key agreement was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    /// The bytes are not an ed25519 public key (not a point on the curve).
    #[error("not an ed25519 public key (the 32 bytes do not encode a curve point)")]
    NotAPoint,
    /// A small-order point: anyone could compute the "shared" secret.
    #[error("a weak (small-order) public key, which would give a link key anyone can compute")]
    Weak,
}

/// A replica's secret identity: its 32-byte seed. `Debug` never shows the secret.
#[derive(Clone)]
pub struct Identity {
    key: SigningKey,
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity").field("public", &PublicKey(self.public())).finish()
    }
}

impl PartialEq for Identity {
    fn eq(&self, other: &Self) -> bool {
        // `SigningKey`'s own equality compares in constant time.
        self.key == other.key
    }
}

impl Eq for Identity {}

impl Identity {
    /// The identity whose seed is `seed` (32 uniformly random bytes for a real deployment).
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        Self { key: SigningKey::from_bytes(seed) }
    }

    /// The seed, to write an identity file.
    pub fn seed(&self) -> [u8; 32] {
        self.key.to_bytes()
    }

    /// The public key the deployment file lists for this replica.
    pub fn public(&self) -> [u8; 32] {
        self.key.verifying_key().to_bytes()
    }

    /// The ed25519 key that signs this replica's commit-certificate shares.
    pub fn signing_key(&self) -> &SigningKey {
        &self.key
    }

    /// The MAC key of the link between replica `local` (holding this identity) and `peer`
    /// (holding `peer_public`), in deployment `deployment`.
    pub fn link_key(
        &self,
        peer_public: &[u8; 32],
        deployment: &[u8; 32],
        local: ReplicaId,
        peer: ReplicaId,
    ) -> Result<MacKey, IdentityError> {
        let theirs = check_public(peer_public)?.to_montgomery();
        let shared: MontgomeryPoint = theirs.mul_clamped(self.key.to_scalar_bytes());
        // Defence in depth: `check_public` already refused small-order points, whose product
        // would be the identity (all zeros).
        if shared.to_bytes() == [0; 32] {
            return Err(IdentityError::Weak);
        }
        let (lo, hi) = if local <= peer { (local, peer) } else { (peer, local) };
        let mut h = blake3::Hasher::new_derive_key(LINK_CONTEXT);
        h.update(shared.as_bytes());
        h.update(deployment);
        h.update(&[lo.rsm.0]);
        h.update(&lo.index.to_le_bytes());
        h.update(&[hi.rsm.0]);
        h.update(&hi.index.to_le_bytes());
        Ok(*h.finalize().as_bytes())
    }
}

/// A public key, shown in hexadecimal.
struct PublicKey([u8; 32]);

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

/// Checks that `bytes` is a usable public key: a curve point of large order.
pub fn check_public(bytes: &[u8; 32]) -> Result<VerifyingKey, IdentityError> {
    let key = VerifyingKey::from_bytes(bytes).map_err(|_| IdentityError::NotAPoint)?;
    if key.is_weak() {
        return Err(IdentityError::Weak);
    }
    Ok(key)
}

/// The id of a deployment: BLAKE3-derive_key("picsou 2026 deployment id v1") over a canonical
/// encoding of `members` — for each replica, in the order given (RSM 0's replicas, then RSM
/// 1's, by index), its RSM, index and public key — and `extra`, the caller's encoding of the
/// rest of the membership (names, fault models, f, stakes). Every replica computes it from the
/// same deployment file.
pub fn deployment_id(members: &[(ReplicaId, [u8; 32])], extra: &[u8]) -> [u8; 32] {
    let mut h = blake3::Hasher::new_derive_key(DEPLOYMENT_CONTEXT);
    h.update(&(members.len() as u64).to_le_bytes());
    for (r, public) in members {
        h.update(&[r.rsm.0]);
        h.update(&r.index.to_le_bytes());
        h.update(public);
    }
    h.update(&(extra.len() as u64).to_le_bytes());
    h.update(extra);
    *h.finalize().as_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> Identity {
        Identity::from_seed(&[n; 32])
    }

    #[test]
    fn both_ends_agree_and_a_third_replica_gets_another_key() {
        let (a, b, c) = (ReplicaId::new(0, 0), ReplicaId::new(1, 0), ReplicaId::new(1, 1));
        let dep = [5; 32];
        let ab = id(1).link_key(&id(2).public(), &dep, a, b).unwrap();
        assert_eq!(ab, id(2).link_key(&id(1).public(), &dep, b, a).unwrap());
        // c knows a's and b's public keys, but with its own secret it derives other keys.
        assert_ne!(ab, id(3).link_key(&id(2).public(), &dep, a, b).unwrap());
        assert_ne!(ab, id(3).link_key(&id(1).public(), &dep, b, a).unwrap());
        // The same identities in another deployment, or on other replica ids, differ too.
        assert_ne!(ab, id(1).link_key(&id(2).public(), &[6; 32], a, b).unwrap());
        assert_ne!(ab, id(1).link_key(&id(2).public(), &dep, a, c).unwrap());
    }

    #[test]
    fn weak_and_invalid_public_keys_are_refused() {
        let (a, b) = (ReplicaId::new(0, 0), ReplicaId::new(1, 0));
        // The identity point (y = 1) has order 1.
        let mut identity_point = [0u8; 32];
        identity_point[0] = 1;
        assert_eq!(check_public(&identity_point).unwrap_err(), IdentityError::Weak);
        assert_eq!(id(1).link_key(&identity_point, &[0; 32], a, b), Err(IdentityError::Weak));
        // y = 2 is not the y-coordinate of a point on edwards25519.
        let mut off_curve = [0u8; 32];
        off_curve[0] = 2;
        assert_eq!(check_public(&off_curve).unwrap_err(), IdentityError::NotAPoint);
    }

    #[test]
    fn deployment_id_binds_members_and_extra() {
        let m = [(ReplicaId::new(0, 0), id(1).public()), (ReplicaId::new(1, 0), id(2).public())];
        let d = deployment_id(&m, b"x");
        assert_ne!(d, deployment_id(&m, b"y"));
        assert_ne!(d, deployment_id(&m[..1], b"x"));
        let swapped = [(ReplicaId::new(0, 0), id(2).public()), (ReplicaId::new(1, 0), id(1).public())];
        assert_ne!(d, deployment_id(&swapped, b"x"));
    }

    #[test]
    fn debug_shows_only_the_public_key() {
        let s = format!("{:?}", id(0xab));
        assert!(!s.contains("abab"), "{s}");
        assert!(s.contains(&format!("{:02x}", id(0xab).public()[0])));
    }
}

//! [`KeyMaterial`]: the `[keys]` table, and the hexadecimal encoding of 32-byte keys.

use std::fmt;

/// The deployment's secrets (the `[keys]` table). `Debug` never shows them.
#[derive(Clone, PartialEq, Eq)]
pub struct KeyMaterial {
    /// Deployment MAC secret: every link key is derived from it
    /// ([`LinkKeys::derived`](picsou_core::keys::LinkKeys::derived)).
    pub secret: [u8; 32],
    /// Seed of every replica's ed25519 signing key
    /// ([`derive_signing_key`](picsou_core::proof::derive_signing_key)); required when either
    /// RSM is BFT.
    pub signing_seed: Option<[u8; 32]>,
}

impl fmt::Debug for KeyMaterial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyMaterial")
            .field("secret", &format_args!("<redacted>"))
            .field("signing_seed", &self.signing_seed.map(|_| format_args!("<redacted>")))
            .finish()
    }
}

/// Lowercase hexadecimal.
pub(super) fn encode_hex(bytes: &[u8; 32]) -> String {
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
pub(super) fn decode_hex(text: &str) -> Result<[u8; 32], String> {
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
        let k = KeyMaterial { secret: [0xab; 32], signing_seed: Some([0xcd; 32]) };
        let s = format!("{k:?}");
        assert!(!s.contains("171") && !s.contains("ab") && !s.contains("205"), "{s}");
        assert!(s.contains("redacted"));
    }
}

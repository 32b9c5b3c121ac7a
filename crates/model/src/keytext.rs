//! Keys as text: the 32-byte keys that `age-keygen` prints in Bech32
//! (`age1...` recipients, `AGE-SECRET-KEY-1...` identities), read and
//! checked without any cryptography (the configuration checks a recipient
//! this way; sealing uses the key).

use bech32::primitives::decode::CheckedHrpstring;
use bech32::Bech32;

/// Why a key (`age1...`, `AGE-SECRET-KEY-1...`) does not read.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("{0}")]
    Bech32(#[from] bech32::primitives::decode::CheckedHrpstringError),
    #[error("the prefix is not {0}")]
    Prefix(&'static str),
    #[error("not 32 bytes")]
    Length,
}

/// The 32-byte key written in Bech32 as `s`, whose human-readable part
/// must be `prefix` (any case).
pub fn bech32_key(s: &str, prefix: &'static str) -> Result<[u8; 32], KeyError> {
    let checked = CheckedHrpstring::new::<Bech32>(s)?;
    if !checked.hrp().to_lowercase().eq(prefix) {
        return Err(KeyError::Prefix(prefix));
    }
    let bytes: Vec<u8> = checked.byte_iter().collect();
    bytes.try_into().map_err(|_| KeyError::Length)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_of_another_kind_or_length_says_which() {
        let key = [7u8; 32];
        let hrp = bech32::Hrp::parse("age").unwrap();
        let text = bech32::encode_lower::<Bech32>(hrp, &key).unwrap();
        assert_eq!(bech32_key(&text, "age").unwrap(), key);
        assert_eq!(
            bech32_key(&text, "age-secret-key-")
                .unwrap_err()
                .to_string(),
            "the prefix is not age-secret-key-"
        );
        let short = bech32::encode_lower::<Bech32>(hrp, &key[..16]).unwrap();
        assert_eq!(
            bech32_key(&short, "age").unwrap_err().to_string(),
            "not 32 bytes"
        );
        assert!(bech32_key("age1xyz", "age").is_err());
    }
}

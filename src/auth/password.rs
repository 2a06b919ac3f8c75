//! Passwords (argon2id) and tokens (random, stored as a BLAKE3 hash).

use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::Argon2;
use rand::Rng;

/// Shortest password accepted.
pub const MIN_PASSWORD_CHARS: usize = 10;

/// Letters and digits that cannot be mistaken for one another when read
/// off a screen (no 0/O, 1/l/I).
const ALPHABET: &[u8] = b"abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";

/// Hash a password into a PHC string (argon2id, default parameters, random
/// salt).
pub fn hash(password: &str) -> Result<String, String> {
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}

/// Whether `password` matches the PHC string (argon2's comparison is
/// constant-time).
pub fn verify(password: &str, phc: &str) -> bool {
    match PasswordHash::new(phc) {
        Ok(parsed) => Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    }
}

/// Spend the time of one verification, so that an unknown user name takes
/// as long to refuse as a wrong password.
pub fn verify_nothing(password: &str) {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let phc = DUMMY.get_or_init(|| hash("commune-ioc-timing-equaliser").unwrap_or_default());
    let _ = verify(password, phc);
}

/// A random password of `len` readable characters.
pub fn generate(len: usize) -> String {
    let mut rng = rand::rng();
    (0..len)
        .map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())]))
        .collect()
}

/// A new bearer token: a prefix naming its kind and 256 random bits.
pub fn new_token(prefix: &str) -> String {
    let bytes: [u8; 32] = rand::random();
    let mut out = String::with_capacity(prefix.len() + 64);
    out.push_str(prefix);
    for b in bytes {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

/// What the store keeps of a token: its BLAKE3 hash, so a copy of the
/// database does not hand out working tokens. Lookups go by this hash, so
/// no comparison on the secret itself can leak timing.
pub fn token_hash(token: &str) -> String {
    blake3::hash(token.as_bytes()).to_hex().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_verify_and_differ_per_salt() {
        let a = hash("mật khẩu đủ dài").unwrap();
        let b = hash("mật khẩu đủ dài").unwrap();
        assert_ne!(a, b, "salted");
        assert!(a.starts_with("$argon2id$"));
        assert!(verify("mật khẩu đủ dài", &a));
        assert!(!verify("mật khẩu sai rồi", &a));
        assert!(!verify("x", "not a phc string"));
    }

    #[test]
    fn tokens_and_passwords_are_random_and_readable() {
        let t = new_token("ioc_");
        assert_eq!(t.len(), 4 + 64);
        assert_ne!(t, new_token("ioc_"));
        assert_eq!(token_hash(&t), token_hash(&t));
        let p = generate(20);
        assert_eq!(p.chars().count(), 20);
        assert!(!p.contains(['0', 'O', '1', 'l', 'I']));
    }
}

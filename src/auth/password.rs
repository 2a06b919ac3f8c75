//! Passwords (argon2id) and tokens (random, stored as a BLAKE3 hash).

use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::PasswordHasher;
use argon2::{Algorithm, Argon2, Block, Params, Version};
use parking_lot::Mutex;
use rand::Rng;

/// Shortest password accepted, in characters that are neither whitespace
/// nor control characters.
pub const MIN_PASSWORD_CHARS: usize = 10;

/// Whether a password may be set: at least [`MIN_PASSWORD_CHARS`]
/// characters that are not whitespace, and no control character at all
/// (ten spaces or ten NULs are not a password).
pub fn acceptable(password: &str) -> bool {
    !password.chars().any(char::is_control)
        && password.chars().filter(|c| !c.is_whitespace()).count() >= MIN_PASSWORD_CHARS
}

/// Largest argon2 memory a stored hash may ask for when it is verified
/// (64 MiB; ours use the default 19 MiB).
const MAX_VERIFY_BLOCKS: usize = 64 * 1024;

/// argon2's working memory, kept between verifications: each check takes
/// a buffer and gives it back, so memory is allocated once per check that
/// ever ran at the same time (bounded by `auth.login_concurrency`) and is
/// never handed to the allocator again, where freed 19 MiB blocks stayed
/// in per-thread arenas instead of going back to the system.
static MEMORY: Mutex<Vec<Vec<Block>>> = Mutex::new(Vec::new());

/// Most buffers kept for reuse.
const MAX_KEPT: usize = 8;

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

/// Whether `password` matches the PHC string; the comparison is
/// constant-time, and argon2's memory comes from a reused buffer.
pub fn verify(password: &str, phc: &str) -> bool {
    let Ok(parsed) = PasswordHash::new(phc) else {
        return false;
    };
    let (Some(salt), Some(expected)) = (&parsed.salt, &parsed.hash) else {
        return false;
    };
    let Ok(params) = Params::try_from(&parsed) else {
        return false;
    };
    let Ok(algorithm) = Algorithm::try_from(parsed.algorithm.as_str()) else {
        return false;
    };
    let version = match parsed.version.map(Version::try_from) {
        None => Version::default(),
        Some(Ok(v)) => v,
        Some(Err(_)) => return false,
    };
    let blocks = params.block_count();
    if blocks > MAX_VERIFY_BLOCKS {
        return false;
    }
    let mut out = vec![0u8; expected.len()];
    let mut memory = MEMORY.lock().pop().unwrap_or_default();
    if memory.len() < blocks {
        memory.resize(blocks, Block::default());
    }
    let hashed = Argon2::new(algorithm, version, params).hash_password_into_with_memory(
        password.as_bytes(),
        salt.as_ref(),
        &mut out,
        &mut memory[..blocks],
    );
    {
        let mut kept = MEMORY.lock();
        if kept.len() < MAX_KEPT {
            kept.push(memory);
        }
    }
    hashed.is_ok() && constant_time_eq(&out, expected.as_bytes())
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
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
    fn blank_and_control_passwords_are_refused() {
        assert!(acceptable("mật khẩu đủ dài"));
        assert!(acceptable("abcdefghij"));
        for bad in [
            "          ",
            "\0\0\0\0\0\0\0\0\0\0",
            "\t\t\t\t\t\t\t\t\t\t\t",
            "abcdefghi\0",
            "abc def gh ",
            "short",
            "\u{3000}\u{3000}\u{3000}\u{3000}\u{3000}\u{3000}\u{3000}\u{3000}\u{3000}\u{3000}",
        ] {
            assert!(!acceptable(bad), "{bad:?}");
        }
    }

    #[test]
    fn verification_reuses_its_memory_and_agrees_with_argon2() {
        use argon2::password_hash::PasswordVerifier;
        let phc = hash("mật khẩu đủ dài").unwrap();
        let parsed = PasswordHash::new(&phc).unwrap();
        assert!(Argon2::default()
            .verify_password("mật khẩu đủ dài".as_bytes(), &parsed)
            .is_ok());
        for _ in 0..3 {
            assert!(verify("mật khẩu đủ dài", &phc));
            assert!(!verify("mật khẩu đủ dàI", &phc));
        }
        assert!(MEMORY.lock().len() <= MAX_KEPT);
        // A hash asking for more memory than allowed is refused unchecked.
        let greedy = phc.replace("m=19456", "m=1048576");
        assert!(!verify("mật khẩu đủ dài", &greedy));
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

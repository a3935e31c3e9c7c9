//! The primitives of Bonawitz et al. (CCS 2017, §3), each from a maintained crate:
//! KA = X25519 (`x25519-dalek`) followed by HKDF-SHA256 (`hkdf`), AE = ChaCha20-Poly1305
//! (`chacha20poly1305`), PRG = the ChaCha20 key stream (`chacha20`), SIG = Ed25519
//! (`ed25519-dalek`). Every derived key names its purpose, round and parties in HKDF's
//! `info`, so no two uses ever share a key.
use chacha20::cipher::{KeyIvInit, StreamCipher};
use chacha20::ChaCha20;
use chacha20poly1305::aead::{Aead, Payload};
use chacha20poly1305::{ChaCha20Poly1305, KeyInit};
use hkdf::Hkdf;
use sha2::Sha256;
use x25519_dalek::{PublicKey, StaticSecret};

/// What a derived key is for; part of HKDF's `info` and of every signed message.
#[derive(Clone, Copy)]
pub enum Purpose {
    /// AE key for the shares one client sends another (ordered: sender, receiver).
    ShareEncryption,
    /// PRG seed of the pairwise mask of two clients (unordered: smaller id first).
    PairMask,
    /// PRG seed of a client's self mask, from its seed b_u.
    SelfMask,
    /// The stream of Shamir coefficients and nonces of a client's dealing.
    Dealing,
}

impl Purpose {
    fn label(self) -> &'static [u8] {
        match self {
            Purpose::ShareEncryption => b"fedmkt secagg v1 share encryption",
            Purpose::PairMask => b"fedmkt secagg v1 pair mask",
            Purpose::SelfMask => b"fedmkt secagg v1 self mask",
            Purpose::Dealing => b"fedmkt secagg v1 dealing",
        }
    }
}

/// HKDF-SHA256 of `secret`, with info = label ‖ round ‖ parties (little-endian).
pub fn derive(secret: &[u8], purpose: Purpose, round: u64, parties: &[u32]) -> [u8; 32] {
    let mut info = purpose.label().to_vec();
    info.extend(round.to_le_bytes());
    parties.iter().for_each(|p| info.extend(p.to_le_bytes()));
    let mut key = [0u8; 32];
    Hkdf::<Sha256>::new(None, secret).expand(&info, &mut key).expect("32 bytes is a valid HKDF-SHA256 length");
    key
}

/// KA.agree then HKDF: the key two parties share for `purpose`.
pub fn agree(own: &StaticSecret, other: &PublicKey, purpose: Purpose, round: u64, parties: &[u32]) -> [u8; 32] {
    derive(own.diffie_hellman(other).as_bytes(), purpose, round, parties)
}

/// AE.enc: ChaCha20-Poly1305 with associated data.
pub fn seal(key: &[u8; 32], nonce: &[u8; 12], plaintext: &[u8], associated: &[u8]) -> Vec<u8> {
    ChaCha20Poly1305::new(key.into())
        .encrypt(nonce.into(), Payload { msg: plaintext, aad: associated })
        .expect("ChaCha20-Poly1305 encrypts any length below 256 GiB")
}

/// AE.dec: `None` when the ciphertext, nonce or associated data was altered.
pub fn open(key: &[u8; 32], nonce: &[u8; 12], ciphertext: &[u8], associated: &[u8]) -> Option<Vec<u8>> {
    ChaCha20Poly1305::new(key.into()).decrypt(nonce.into(), Payload { msg: ciphertext, aad: associated }).ok()
}

/// PRG: `n` words modulo 2^64 from a 32-byte seed (each seed expands one stream only).
pub fn prg_words(seed: &[u8; 32], n: usize) -> Vec<u64> {
    let mut bytes = vec![0u8; n * 8];
    ChaCha20::new(seed.into(), &[0u8; 12].into()).apply_keystream(&mut bytes);
    bytes.chunks_exact(8).map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes"))).collect()
}

/// The bytes a signature covers: a label naming the message, then its fields.
pub fn signed_message(label: &str, round: u64, fields: &[&[u8]]) -> Vec<u8> {
    let mut message = format!("fedmkt secagg v1 {label}").into_bytes();
    message.extend(round.to_le_bytes());
    for field in fields {
        message.extend((field.len() as u64).to_le_bytes());
        message.extend(*field);
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hkdf_matches_rfc_5869_case_1() {
        let ikm = [0x0bu8; 22];
        let salt: Vec<u8> = (0x00..=0x0c).collect();
        let info: Vec<u8> = (0xf0..=0xf9).collect();
        let mut okm = [0u8; 42];
        Hkdf::<Sha256>::new(Some(&salt), &ikm).expand(&info, &mut okm).unwrap();
        assert_eq!(
            hex::encode(okm),
            "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865"
        );
    }

    #[test]
    fn keys_differ_by_purpose_round_and_parties() {
        let base = derive(b"s", Purpose::PairMask, 1, &[1, 2]);
        assert_ne!(base, derive(b"s", Purpose::SelfMask, 1, &[1, 2]));
        assert_ne!(base, derive(b"s", Purpose::PairMask, 2, &[1, 2]));
        assert_ne!(base, derive(b"s", Purpose::PairMask, 1, &[2, 1]));
    }

    #[test]
    fn an_altered_ciphertext_or_context_does_not_open() {
        let (key, nonce) = ([7u8; 32], [1u8; 12]);
        let mut sealed = seal(&key, &nonce, b"share", b"from 1 to 2");
        assert_eq!(open(&key, &nonce, &sealed, b"from 1 to 2").as_deref(), Some(&b"share"[..]));
        assert!(open(&key, &nonce, &sealed, b"from 3 to 2").is_none());
        sealed[0] ^= 1;
        assert!(open(&key, &nonce, &sealed, b"from 1 to 2").is_none());
    }
}

//! The digests and signatures partners use (DESIGN §9): plain hashes of the string with the
//! secret joined to it (MD5, SHA1, SHA256), HMACs, and RSA-SHA256 with PKCS#1 v1.5 padding
//! ("RSA2"). Keys come from the config's secrets; none is ever printed.

use base64::Engine as _;
use md5::Digest as _;
use ring::signature::KeyPair as _;

/// A signature algorithm as a config names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Algorithm {
    Md5,
    Sha1,
    Sha256,
    HmacSha1,
    HmacSha256,
    RsaSha256,
}

/// How a signature is written out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Output {
    /// Lowercase hex.
    #[default]
    Hex,
    /// Uppercase hex (most MD5-signed gateways).
    HexUpper,
    Base64,
}

/// The key of an algorithm: a shared secret, or an RSA key.
pub enum Key {
    Secret(Vec<u8>),
    RsaPrivate(Box<ring::signature::RsaKeyPair>),
    RsaPublic(Vec<u8>),
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Secret(_) => "Secret(<redacted>)",
            Self::RsaPrivate(_) => "RsaPrivate(<redacted>)",
            Self::RsaPublic(_) => "RsaPublic",
        })
    }
}

impl Key {
    /// An RSA private key from PEM (PKCS#8 `PRIVATE KEY` or PKCS#1 `RSA PRIVATE KEY`).
    pub fn rsa_private(pem: &[u8]) -> Result<Self, String> {
        use rustls_pki_types::PrivateKeyDer;
        use rustls_pki_types::pem::PemObject as _;
        let der = PrivateKeyDer::from_pem_slice(pem)
            .map_err(|e| format!("is not a PEM private key: {e}"))?;
        let pair = match &der {
            PrivateKeyDer::Pkcs8(der) => {
                ring::signature::RsaKeyPair::from_pkcs8(der.secret_pkcs8_der())
            }
            PrivateKeyDer::Pkcs1(der) => {
                ring::signature::RsaKeyPair::from_der(der.secret_pkcs1_der())
            }
            _ => return Err("is not an RSA private key".into()),
        }
        .map_err(|e| format!("is not a usable RSA private key: {e}"))?;
        Ok(Self::RsaPrivate(Box::new(pair)))
    }

    /// An RSA public key from PEM (`PUBLIC KEY`, as partners publish them).
    pub fn rsa_public(pem: &[u8]) -> Result<Self, String> {
        use rustls_pki_types::SubjectPublicKeyInfoDer;
        use rustls_pki_types::pem::PemObject as _;
        let spki = SubjectPublicKeyInfoDer::from_pem_slice(pem)
            .map_err(|e| format!("is not a PEM public key: {e}"))?;
        let key = spki_rsa_key(&spki).ok_or("is not an RSA public key")?;
        Ok(Self::RsaPublic(key.to_vec()))
    }

    /// The public half of a private key, for tests and `channel-check` (a partner verifying).
    pub fn public_of(&self) -> Option<Self> {
        match self {
            Self::RsaPrivate(pair) => Some(Self::RsaPublic(pair.public_key().as_ref().to_vec())),
            _ => None,
        }
    }
}

/// The RSAPublicKey inside a SubjectPublicKeyInfo: SEQUENCE { SEQUENCE { alg }, BIT STRING }.
fn spki_rsa_key(spki: &[u8]) -> Option<&[u8]> {
    let (tag, body, _) = der_item(spki)?;
    if tag != 0x30 {
        return None;
    }
    let (tag, algorithm, rest) = der_item(body)?;
    // rsaEncryption, 1.2.840.113549.1.1.1
    const RSA_OID: [u8; 11] = [
        0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01,
    ];
    if tag != 0x30 || !algorithm.starts_with(&RSA_OID) {
        return None;
    }
    let (tag, bits, _) = der_item(rest)?;
    match (tag, bits.split_first()) {
        (0x03, Some((0, key))) => Some(key),
        _ => None,
    }
}

/// One DER item: tag, contents, and what follows it.
fn der_item(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let count = usize::from(first & 0x7f);
        if count == 0 || count > 4 || rest.len() < count {
            return None;
        }
        let (bytes, rest) = rest.split_at(count);
        let len = bytes
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        (len, rest)
    };
    (rest.len() >= len).then(|| {
        let (body, after) = rest.split_at(len);
        (tag, body, after)
    })
}

/// Why a signature could not be made.
#[derive(Debug, thiserror::Error)]
#[error("signing failed: {0}")]
pub struct SignError(String);

/// The signature of `message`, written out as `output`.
pub fn sign(
    algorithm: Algorithm,
    key: &Key,
    message: &[u8],
    output: Output,
) -> Result<String, SignError> {
    let raw = raw_signature(algorithm, key, message)?;
    Ok(write_out(&raw, output))
}

fn raw_signature(algorithm: Algorithm, key: &Key, message: &[u8]) -> Result<Vec<u8>, SignError> {
    use ring::{digest, hmac};
    let secret = |key: &Key| match key {
        Key::Secret(secret) => Ok(secret.clone()),
        _ => Err(SignError(format!(
            "{algorithm:?} needs a secret, not an RSA key"
        ))),
    };
    Ok(match algorithm {
        // A plain hash signs the string with the secret already joined to it (the config's
        // `append`); the key is not used here.
        Algorithm::Md5 => md5::Md5::digest(message).to_vec(),
        Algorithm::Sha1 => digest::digest(&digest::SHA1_FOR_LEGACY_USE_ONLY, message)
            .as_ref()
            .to_vec(),
        Algorithm::Sha256 => digest::digest(&digest::SHA256, message).as_ref().to_vec(),
        Algorithm::HmacSha1 => {
            let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, &secret(key)?);
            hmac::sign(&key, message).as_ref().to_vec()
        }
        Algorithm::HmacSha256 => {
            let key = hmac::Key::new(hmac::HMAC_SHA256, &secret(key)?);
            hmac::sign(&key, message).as_ref().to_vec()
        }
        Algorithm::RsaSha256 => {
            let Key::RsaPrivate(pair) = key else {
                return Err(SignError("rsa-sha256 signs with a private key".into()));
            };
            let mut signature = vec![0; pair.public().modulus_len()];
            pair.sign(
                &ring::signature::RSA_PKCS1_SHA256,
                &ring::rand::SystemRandom::new(),
                message,
                &mut signature,
            )
            .map_err(|_| SignError("the RSA key could not sign".into()))?;
            signature
        }
    })
}

/// Whether `signature` (hex of either case, or base64, as `output` says) signs `message`.
pub fn verify(
    algorithm: Algorithm,
    key: &Key,
    message: &[u8],
    signature: &str,
    output: Output,
) -> bool {
    let Some(given) = read_in(signature.trim(), output) else {
        return false;
    };
    match (algorithm, key) {
        (Algorithm::RsaSha256, Key::RsaPublic(public)) => ring::signature::UnparsedPublicKey::new(
            &ring::signature::RSA_PKCS1_2048_8192_SHA256,
            public,
        )
        .verify(message, &given)
        .is_ok(),
        (Algorithm::RsaSha256, _) => false,
        _ => match raw_signature(algorithm, key, message) {
            Ok(expected) => constant_time_eq(&expected, &given),
            Err(_) => false,
        },
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn write_out(raw: &[u8], output: Output) -> String {
    match output {
        Output::Hex => hex(raw, b"0123456789abcdef"),
        Output::HexUpper => hex(raw, b"0123456789ABCDEF"),
        Output::Base64 => base64::engine::general_purpose::STANDARD.encode(raw),
    }
}

fn hex(raw: &[u8], digits: &[u8; 16]) -> String {
    raw.iter()
        .flat_map(|b| [digits[usize::from(b >> 4)], digits[usize::from(b & 0xf)]])
        .map(char::from)
        .collect()
}

fn read_in(text: &str, output: Output) -> Option<Vec<u8>> {
    match output {
        Output::Hex | Output::HexUpper => {
            if !text.len().is_multiple_of(2) {
                return None;
            }
            (0..text.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
                .collect()
        }
        Output::Base64 => base64::engine::general_purpose::STANDARD.decode(text).ok(),
    }
}

/// The hex SHA-256 of `bytes` (a body hash in a canonical string, a hashed key).
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(
        ring::digest::digest(&ring::digest::SHA256, bytes).as_ref(),
        b"0123456789abcdef",
    )
}

/// 32 random hex characters: a request's nonce.
pub fn nonce() -> String {
    use ring::rand::SecureRandom as _;
    let mut bytes = [0u8; 16];
    // The system's random source does not fail on the platforms Jifen runs on; should it,
    // a nonce from the clock is still unique per call, which is all a partner checks.
    if ring::rand::SystemRandom::new().fill(&mut bytes).is_err() {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        bytes = now.to_le_bytes();
    }
    hex(&bytes, b"0123456789abcdef")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(s: &str) -> Key {
        Key::Secret(s.as_bytes().to_vec())
    }

    #[test]
    fn digests_and_hmacs_match_published_vectors() {
        let key = secret("");
        let md5 = sign(Algorithm::Md5, &key, b"abc", Output::Hex).unwrap();
        assert_eq!(md5, "900150983cd24fb0d6963f7d28e17f72");
        let sha1 = sign(Algorithm::Sha1, &key, b"abc", Output::HexUpper).unwrap();
        assert_eq!(sha1, "A9993E364706816ABA3E25717850C26C9CD0D89D");
        // RFC 4231 test case 2.
        let hmac = sign(
            Algorithm::HmacSha256,
            &secret("Jefe"),
            b"what do ya want for nothing?",
            Output::Hex,
        )
        .unwrap();
        assert_eq!(
            hmac,
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        // RFC 2202 test case 2.
        let hmac1 = sign(
            Algorithm::HmacSha1,
            &secret("Jefe"),
            b"what do ya want for nothing?",
            Output::Hex,
        )
        .unwrap();
        assert_eq!(hmac1, "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79");
        let b64 = sign(Algorithm::Sha256, &key, b"abc", Output::Base64).unwrap();
        assert_eq!(b64, "ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0=");
    }

    #[test]
    fn verification_takes_either_hex_case_and_refuses_a_changed_message() {
        let key = secret("k");
        let sig = sign(Algorithm::HmacSha256, &key, b"body", Output::Hex).unwrap();
        assert!(verify(
            Algorithm::HmacSha256,
            &key,
            b"body",
            &sig,
            Output::Hex
        ));
        assert!(verify(
            Algorithm::HmacSha256,
            &key,
            b"body",
            &sig.to_uppercase(),
            Output::Hex
        ));
        assert!(!verify(
            Algorithm::HmacSha256,
            &key,
            b"bodY",
            &sig,
            Output::Hex
        ));
        assert!(!verify(
            Algorithm::HmacSha256,
            &key,
            b"body",
            "zz",
            Output::Hex
        ));
        assert!(!verify(
            Algorithm::HmacSha256,
            &secret("other"),
            b"body",
            &sig,
            Output::Hex
        ));
    }

    const RSA_KEY: &str = include_str!("../testdata/rsa-test-key.pem");
    const RSA_PUBLIC: &str = include_str!("../testdata/rsa-test-public.pem");

    #[test]
    fn rsa_signatures_verify_with_the_published_public_key_only() {
        let private = Key::rsa_private(RSA_KEY.as_bytes()).unwrap();
        let public = Key::rsa_public(RSA_PUBLIC.as_bytes()).unwrap();
        let sig = sign(Algorithm::RsaSha256, &private, b"a=1&b=2", Output::Base64).unwrap();
        assert!(verify(
            Algorithm::RsaSha256,
            &public,
            b"a=1&b=2",
            &sig,
            Output::Base64
        ));
        assert!(verify(
            Algorithm::RsaSha256,
            &private.public_of().unwrap(),
            b"a=1&b=2",
            &sig,
            Output::Base64
        ));
        assert!(!verify(
            Algorithm::RsaSha256,
            &public,
            b"a=1&b=3",
            &sig,
            Output::Base64
        ));
        assert!(Key::rsa_public(RSA_KEY.as_bytes()).is_err());
    }
}

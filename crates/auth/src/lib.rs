//! Agentry's credential adapters, implementing the domain's ports:
//!
//! - [`Argon2Hasher`] ([`PasswordHasher`]): argon2id PHC strings with a fresh salt, computed
//!   on tokio's blocking pool (a hash takes tens of milliseconds on purpose); new hashes use
//!   7 MiB and 5 passes, any argon2 PHC string is verified with its own parameters;
//! - [`JwtCodec`] ([`TokenCodec`]): HS256 access tokens with `iss`, `aud`, `exp`, `iat`,
//!   `jti`, `sub` (the user) and `sid` (the session); only HS256 is accepted, and issuer,
//!   audience and expiry are checked;
//! - [`RandomSecrets`] ([`SecretGenerator`]): alphanumeric secrets from the operating
//!   system's generator and their SHA-256 digests (how refresh tokens and API keys are
//!   stored: they carry 238+ bits of entropy, so a fast digest is enough).

use std::time::Duration;

use agentry_domain::auth::AccessClaims;
use agentry_domain::ports::{PasswordHasher, SecretGenerator, TokenCodec};
use agentry_domain::{Error, Result};
use argon2::password_hash::phc::{Output, ParamsString, PasswordHash, Salt};
use argon2::{Algorithm as Argon2Algorithm, Argon2, Block, Params, Version};
use async_trait::async_trait;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rand::distr::Alphanumeric;
use rand::{Rng, TryRngCore};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Shortest signing key accepted for HS256, in bytes.
pub const MIN_JWT_SECRET_BYTES: usize = 32;
/// Clock skew tolerated on `exp`, between replicas.
pub const EXPIRY_LEEWAY: Duration = Duration::from_secs(30);

/// Memory of a new argon2id hash, in KiB (7 MiB).
pub const ARGON2_M_COST_KIB: u32 = 7 * 1024;
/// Passes over that memory.
pub const ARGON2_T_COST: u32 = 5;
/// Lanes.
pub const ARGON2_P_COST: u32 = 1;

/// argon2id (version 0x13) with m = 7 MiB, t = 5, p = 1: the OWASP Password Storage Cheat
/// Sheet's equal-strength alternative to the crate's default of m = 19 MiB, t = 2, chosen to
/// keep the server's memory small.
///
/// Verification reads algorithm, version and parameters from the stored PHC string, so hashes
/// made with other parameters (the old default among them) keep verifying; they are not
/// rehashed.
///
/// The `m` KiB of working memory are allocated here rather than by the crate, with room for
/// [`ARGON2_RESERVED_BYTES`] (only `m` is touched): glibc serves an allocation that large with
/// its own mapping and unmaps it when freed. A block of exactly `m` would instead, from the
/// second hash on, come from the hashing thread's malloc arena (glibc raises its mmap threshold
/// to the size of a freed mapping, up to 32 MiB) and stay resident there for good: 19 MiB per
/// thread that had hashed, before this.
#[derive(Debug, Clone, Copy, Default)]
pub struct Argon2Hasher;

/// Address space reserved for a hash's working memory: above glibc's largest mmap threshold
/// (32 MiB on 64-bit), so that the block is always a mapping of its own, returned on free.
pub const ARGON2_RESERVED_BYTES: usize = 33 * 1024 * 1024;

/// The working memory for `params`: `m` zeroed blocks in an allocation of at least
/// [`ARGON2_RESERVED_BYTES`].
fn argon2_memory(params: &Params) -> Vec<Block> {
    let blocks = params.block_count();
    let mut memory = Vec::with_capacity(blocks.max(ARGON2_RESERVED_BYTES / Block::SIZE));
    memory.resize(blocks, Block::new());
    memory
}

/// The raw argon2 output of `password` and `salt` into `out` (whose length is the output's).
fn argon2_into(
    argon2: &Argon2<'_>,
    params: &Params,
    password: &[u8],
    salt: &[u8],
    out: &mut [u8],
) -> std::result::Result<(), argon2::Error> {
    argon2.hash_password_into_with_memory(password, salt, out, argon2_memory(params))
}

/// A new argon2id PHC string for `password`, with a fresh salt.
fn hash_new(password: &[u8]) -> std::result::Result<String, String> {
    let params = Params::new(ARGON2_M_COST_KIB, ARGON2_T_COST, ARGON2_P_COST, None)
        .map_err(|e| format!("argon2 parameters refused: {e}"))?;
    let argon2 = Argon2::new(Argon2Algorithm::Argon2id, Version::V0x13, params.clone());
    let salt = Salt::generate();
    let mut out = [0u8; Params::DEFAULT_OUTPUT_LEN];
    argon2_into(&argon2, &params, password, &salt, &mut out).map_err(|e| e.to_string())?;
    let hash = PasswordHash {
        algorithm: Argon2Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(&params).map_err(|e| e.to_string())?,
        salt: Some(salt),
        hash: Some(Output::new(&out).map_err(|e| e.to_string())?),
    };
    Ok(hash.to_string())
}

/// Whether `password` matches the argon2 PHC string `phc`, computed with the string's own
/// algorithm, version and parameters; false for anything that is not such a string.
fn verify(password: &[u8], phc: &str) -> bool {
    let Ok(hash) = PasswordHash::new(phc) else {
        return false;
    };
    let (Some(salt), Some(expected)) = (&hash.salt, &hash.hash) else {
        return false;
    };
    let Ok(algorithm) = Argon2Algorithm::try_from(hash.algorithm.as_str()) else {
        return false;
    };
    let version = match hash.version.map(Version::try_from).transpose() {
        Ok(v) => v.unwrap_or_default(),
        Err(_) => return false,
    };
    let Ok(params) = Params::try_from(&hash) else {
        return false;
    };
    let argon2 = Argon2::new(algorithm, version, params.clone());
    let mut out = vec![0u8; expected.len()];
    if argon2_into(&argon2, &params, password, salt, &mut out).is_err() {
        return false;
    }
    // `Output`'s equality is constant-time.
    Output::new(&out).is_ok_and(|computed| &computed == expected)
}

#[async_trait]
impl PasswordHasher for Argon2Hasher {
    async fn hash_password(&self, password: &SecretString) -> Result<String> {
        let password = password.clone();
        tokio::task::spawn_blocking(move || {
            hash_new(password.expose_secret().as_bytes())
                .map_err(|e| Error::Internal(format!("password hashing failed: {e}")))
        })
        .await
        .map_err(|e| Error::Internal(format!("password hashing task failed: {e}")))?
    }

    async fn verify_password(&self, password: &SecretString, hash: &str) -> Result<bool> {
        let password = password.clone();
        let hash = hash.to_owned();
        tokio::task::spawn_blocking(move || verify(password.expose_secret().as_bytes(), &hash))
            .await
            .map_err(|e| Error::Internal(format!("password check task failed: {e}")))
    }
}

/// The claims as they travel in the token.
#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    iss: String,
    aud: String,
    sub: String,
    sid: String,
    role: String,
    jti: String,
    iat: i64,
    exp: i64,
}

/// Tokens [`JwtCodec`] keeps the verification of, at most; when full it starts again empty.
const VERIFIED_MAX: usize = 4096;

/// HS256 access tokens.
///
/// A token's verification is kept (token → claims) until the token expires: a client sends
/// the same token with every request for its whole life (15 minutes by default), and checking
/// an HS256 signature, decoding base64 and parsing the claims cost more than the rest of
/// authentication together. The signature and claims of a given token cannot change, so a
/// kept verification is as good as a new one until the expiry, which is checked on each use;
/// revocation is the session's business and is checked after this, on every request.
pub struct JwtCodec {
    encoding: EncodingKey,
    decoding: DecodingKey,
    issuer: String,
    audience: String,
    validation: Validation,
    verified: std::sync::Mutex<std::collections::HashMap<String, AccessClaims>>,
}

impl std::fmt::Debug for JwtCodec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtCodec")
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .finish_non_exhaustive()
    }
}

impl JwtCodec {
    /// A codec signing with `secret` (at least [`MIN_JWT_SECRET_BYTES`] bytes), issuing and
    /// accepting only tokens of `issuer` for `audience`.
    ///
    /// # Errors
    /// `Invalid` naming `jwt_secret` when the secret is too short.
    pub fn new(secret: &SecretString, issuer: &str, audience: &str) -> Result<Self> {
        let bytes = secret.expose_secret().as_bytes();
        if bytes.len() < MIN_JWT_SECRET_BYTES {
            return Err(Error::invalid(
                "jwt_secret",
                format!("must be at least {MIN_JWT_SECRET_BYTES} bytes"),
            ));
        }
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[issuer]);
        validation.set_audience(&[audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.leeway = EXPIRY_LEEWAY.as_secs();
        validation.validate_exp = true;
        validation.validate_nbf = true;
        Ok(Self {
            encoding: EncodingKey::from_secret(bytes),
            decoding: DecodingKey::from_secret(bytes),
            issuer: issuer.to_owned(),
            audience: audience.to_owned(),
            validation,
            verified: std::sync::Mutex::default(),
        })
    }

    /// The kept verification of `token`, if it has not expired (with the same leeway as a
    /// fresh check).
    fn kept(&self, token: &str) -> Option<AccessClaims> {
        let mut verified = self.verified.lock().ok()?;
        let claims = verified.get(token)?;
        let leeway = i64::try_from(EXPIRY_LEEWAY.as_secs()).unwrap_or(0);
        if unix_now() <= claims.expires_at.saturating_add(leeway) {
            return Some(claims.clone());
        }
        verified.remove(token);
        None
    }

    fn keep(&self, token: &str, claims: &AccessClaims) {
        let Ok(mut verified) = self.verified.lock() else {
            return;
        };
        if verified.len() >= VERIFIED_MAX {
            verified.clear();
        }
        verified.insert(token.to_owned(), claims.clone());
    }
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

impl TokenCodec for JwtCodec {
    fn issue(&self, claims: &AccessClaims) -> Result<SecretString> {
        let wire = Claims {
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            sub: claims.user_id.clone(),
            sid: claims.session_id.clone(),
            role: claims.role.clone(),
            jti: claims.token_id.clone(),
            iat: claims.issued_at,
            exp: claims.expires_at,
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &wire, &self.encoding)
            .map(SecretString::from)
            .map_err(|e| Error::Internal(format!("signing an access token failed: {e}")))
    }

    fn verify(&self, token: &str) -> Result<AccessClaims> {
        if let Some(claims) = self.kept(token) {
            return Ok(claims);
        }
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(|e| {
                tracing::debug!(reason = %e.kind_name(), "access token refused");
                Error::unauthorized("Invalid, expired or revoked access token")
            })?;
        if data.header.alg != Algorithm::HS256 {
            return Err(Error::unauthorized(
                "Invalid, expired or revoked access token",
            ));
        }
        let c = data.claims;
        let claims = AccessClaims {
            user_id: c.sub,
            session_id: c.sid,
            role: c.role,
            token_id: c.jti,
            issued_at: c.iat,
            expires_at: c.exp,
        };
        self.keep(token, &claims);
        Ok(claims)
    }
}

/// The name of a `jsonwebtoken` error kind, without its content.
trait KindName {
    fn kind_name(&self) -> &'static str;
}

impl KindName for jsonwebtoken::errors::Error {
    fn kind_name(&self) -> &'static str {
        use jsonwebtoken::errors::ErrorKind;
        match self.kind() {
            ErrorKind::ExpiredSignature => "expired",
            ErrorKind::InvalidSignature => "bad signature",
            ErrorKind::InvalidAlgorithm => "wrong algorithm",
            ErrorKind::InvalidIssuer => "wrong issuer",
            ErrorKind::InvalidAudience => "wrong audience",
            ErrorKind::ImmatureSignature => "not yet valid",
            ErrorKind::MissingRequiredClaim(_) => "missing claim",
            ErrorKind::InvalidToken => "malformed",
            _ => "invalid",
        }
    }
}

/// Secrets from the operating system's generator; SHA-256 digests.
#[derive(Debug, Clone, Copy, Default)]
pub struct RandomSecrets;

impl SecretGenerator for RandomSecrets {
    fn random_alphanumeric(&self, len: usize) -> SecretString {
        let s: String = rand::rngs::OsRng
            .unwrap_err()
            .sample_iter(&Alphanumeric)
            .take(len)
            .map(char::from)
            .collect();
        SecretString::from(s)
    }

    fn digest(&self, secret: &str) -> String {
        let digest = Sha256::digest(secret.as_bytes());
        let mut out = String::with_capacity(64);
        for b in digest.iter() {
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0x0f)]));
        }
        out
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

#[cfg(test)]
mod tests;

#[cfg(test)]
mod argon2_params_tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;
    use argon2::password_hash::{PasswordHasher as _, PasswordVerifier as _};

    #[tokio::test]
    async fn new_hashes_use_7_mib_and_5_passes() {
        let hash = Argon2Hasher
            .hash_password(&SecretString::from("correct horse"))
            .await
            .unwrap();
        assert!(hash.starts_with("$argon2id$v=19$m=7168,t=5,p=1$"), "{hash}");
    }

    /// Hashes made here and by the crate's own hasher are interchangeable.
    #[tokio::test]
    async fn hashes_agree_with_the_crate() {
        let pw = SecretString::from("correct horse");
        let ours = Argon2Hasher.hash_password(&pw).await.unwrap();
        let parsed = PasswordHash::new(&ours).unwrap();
        assert!(
            Argon2::default()
                .verify_password(b"correct horse", &parsed)
                .is_ok()
        );
        assert!(
            Argon2::default()
                .verify_password(b"wrong", &parsed)
                .is_err()
        );
        let params = Params::new(ARGON2_M_COST_KIB, ARGON2_T_COST, ARGON2_P_COST, None).unwrap();
        for algorithm in [
            Argon2Algorithm::Argon2id,
            Argon2Algorithm::Argon2i,
            Argon2Algorithm::Argon2d,
        ] {
            for version in [Version::V0x13, Version::V0x10] {
                let theirs = Argon2::new(algorithm, version, params.clone())
                    .hash_password(b"correct horse")
                    .unwrap()
                    .to_string();
                assert!(verify(b"correct horse", &theirs), "{theirs}");
                assert!(!verify(b"correct horsf", &theirs), "{theirs}");
            }
        }
        // A shorter output than the default is honoured too.
        let short = Argon2::new(
            Argon2Algorithm::Argon2id,
            Version::V0x13,
            Params::new(64, 1, 1, Some(16)).unwrap(),
        )
        .hash_password(b"correct horse")
        .unwrap()
        .to_string();
        assert!(verify(b"correct horse", &short));
        assert!(!verify(b"correct horse", "$argon2id$v=19$m=64,t=1,p=1"));
        assert!(!verify(
            b"correct horse",
            "$scrypt$ln=4,r=8,p=1$c2FsdHNhbHQ$aGFzaA"
        ));
    }

    #[test]
    fn working_memory_is_reserved_above_the_mmap_threshold() {
        let params = Params::new(ARGON2_M_COST_KIB, ARGON2_T_COST, ARGON2_P_COST, None).unwrap();
        let memory = argon2_memory(&params);
        assert_eq!(memory.len(), 7 * 1024);
        assert!(memory.capacity() * Block::SIZE >= ARGON2_RESERVED_BYTES);
    }

    /// Hashes stored before the change (the crate's default, m = 19 MiB, t = 2) still verify.
    #[tokio::test]
    async fn hashes_with_the_old_default_parameters_still_verify() {
        let pw = SecretString::from("correct horse");
        let old = Argon2::default()
            .hash_password(pw.expose_secret().as_bytes())
            .unwrap()
            .to_string();
        assert!(old.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{old}");
        assert!(Argon2Hasher.verify_password(&pw, &old).await.unwrap());
        assert!(
            !Argon2Hasher
                .verify_password(&SecretString::from("wrong"), &old)
                .await
                .unwrap()
        );
        // A fixed PHC string made with those parameters for "correct horse".
        assert!(
            Argon2Hasher
                .verify_password(&pw, OLD_DEFAULT_HASH)
                .await
                .unwrap()
        );
    }

    const OLD_DEFAULT_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$U0bKC7KoXcQLuHSud7Mk2Q$Kyqk7W/teDToQWQGJl3IXtfs9wN9ioMCj+CitRSfEQM";
}

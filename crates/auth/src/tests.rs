#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::*;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

const SECRET: &str = "0123456789abcdef0123456789abcdef-test";

fn codec() -> JwtCodec {
    JwtCodec::new(&SecretString::from(SECRET), "agentry", "agentry-api").unwrap()
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

fn claims(exp_in: i64) -> AccessClaims {
    AccessClaims {
        user_id: "user_0123456789abcdef0123456789abcdef".into(),
        session_id: "ses_1".into(),
        role: "editor".into(),
        token_id: "jti-1".into(),
        issued_at: now(),
        expires_at: now() + exp_in,
    }
}

fn sign(payload: &serde_json::Value, alg: Algorithm, secret: &str) -> String {
    jsonwebtoken::encode(
        &Header::new(alg),
        payload,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

fn payload(iss: &str, aud: &str, exp: i64) -> serde_json::Value {
    serde_json::json!({"iss": iss, "aud": aud, "sub": "user_x", "sid": "ses_1", "role": "admin",
        "jti": "j", "iat": now(), "exp": exp})
}

fn refused(token: &str) -> bool {
    matches!(codec().verify(token), Err(Error::Unauthorized(_)))
}

#[test]
fn round_trip() {
    let c = codec();
    let token = c.issue(&claims(900)).unwrap();
    let back = c.verify(token.expose_secret()).unwrap();
    assert_eq!(back, claims(900));
}

#[test]
fn alg_none_is_refused() {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
    let body = URL_SAFE_NO_PAD.encode(payload("agentry", "agentry-api", now() + 900).to_string());
    assert!(refused(&format!("{header}.{body}.")));
    assert!(refused(&format!("{header}.{body}")));
}

#[test]
fn other_algorithms_are_refused() {
    let t = sign(
        &payload("agentry", "agentry-api", now() + 900),
        Algorithm::HS512,
        SECRET,
    );
    assert!(refused(&t));
}

#[test]
fn tampered_tokens_are_refused() {
    let token = codec().issue(&claims(900)).unwrap();
    let token = token.expose_secret();
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    // A payload claiming another role, with the original signature.
    parts[1] = URL_SAFE_NO_PAD.encode(
        payload("agentry", "agentry-api", now() + 900)
            .to_string()
            .replace("\"admin\"", "\"admin \""),
    );
    assert!(refused(&parts.join(".")));
    // A flipped signature character.
    let mut sig: Vec<char> = token.rsplit('.').next().unwrap().chars().collect();
    sig[3] = if sig[3] == 'A' { 'B' } else { 'A' };
    let (head, _) = token.rsplit_once('.').unwrap();
    assert!(refused(&format!(
        "{head}.{}",
        sig.iter().collect::<String>()
    )));
    // Signed with another key.
    let other = sign(
        &payload("agentry", "agentry-api", now() + 900),
        Algorithm::HS256,
        "another-secret-another-secret-another",
    );
    assert!(refused(&other));
    assert!(refused("garbage"));
    assert!(refused(""));
}

#[test]
fn expired_wrong_issuer_or_audience_are_refused() {
    assert!(refused(
        codec().issue(&claims(-3600)).unwrap().expose_secret()
    ));
    let ok = sign(
        &payload("agentry", "agentry-api", now() + 900),
        Algorithm::HS256,
        SECRET,
    );
    assert!(!refused(&ok));
    for (iss, aud) in [("evil", "agentry-api"), ("agentry", "other-api")] {
        let t = sign(&payload(iss, aud, now() + 900), Algorithm::HS256, SECRET);
        assert!(refused(&t), "{iss} {aud}");
    }
    let mut missing = payload("agentry", "agentry-api", now() + 900);
    missing.as_object_mut().unwrap().remove("exp");
    assert!(refused(&sign(&missing, Algorithm::HS256, SECRET)));
}

#[test]
fn a_kept_verification_changes_nothing_that_is_refused() {
    let c = codec();
    let token = c.issue(&claims(900)).unwrap();
    let token = token.expose_secret();
    assert_eq!(c.verify(token).unwrap(), claims(900));
    // Kept: the same answer again, and a token differing in one character is still checked.
    assert_eq!(c.verify(token).unwrap(), claims(900));
    let (head, sig) = token.rsplit_once('.').unwrap();
    let mut sig: Vec<char> = sig.chars().collect();
    sig[3] = if sig[3] == 'A' { 'B' } else { 'A' };
    let forged = format!("{head}.{}", sig.iter().collect::<String>());
    assert!(matches!(c.verify(&forged), Err(Error::Unauthorized(_))));
    assert!(matches!(c.verify(&forged), Err(Error::Unauthorized(_))));
    assert_eq!(c.verify(token).unwrap(), claims(900));
}

#[test]
fn a_kept_verification_ends_when_the_token_expires() {
    let c = codec();
    // Valid for about two more seconds (the expiry leeway is 30 s).
    let leeway = i64::try_from(EXPIRY_LEEWAY.as_secs()).unwrap();
    let token = c.issue(&claims(2 - leeway)).unwrap();
    let token = token.expose_secret();
    assert!(c.verify(token).is_ok());
    std::thread::sleep(Duration::from_millis(3100));
    assert!(matches!(c.verify(token), Err(Error::Unauthorized(_))));
}

#[test]
fn kept_verifications_are_bounded() {
    let c = codec();
    for i in 0..VERIFIED_MAX + 10 {
        let mut cl = claims(900);
        cl.token_id = format!("jti-{i}");
        let token = c.issue(&cl).unwrap();
        assert_eq!(
            c.verify(token.expose_secret()).unwrap().token_id,
            cl.token_id
        );
    }
    assert!(c.verified.lock().unwrap().len() <= VERIFIED_MAX);
}

#[test]
fn short_secrets_are_refused() {
    assert!(JwtCodec::new(&SecretString::from("short"), "a", "b").is_err());
}

#[tokio::test]
async fn argon2id_hashes_and_verifies() {
    let h = Argon2Hasher;
    let pw = SecretString::from("correct horse battery staple");
    let hash = h.hash_password(&pw).await.unwrap();
    assert!(hash.starts_with("$argon2id$"), "{hash}");
    assert!(!hash.contains("correct horse"));
    assert!(h.verify_password(&pw, &hash).await.unwrap());
    assert!(
        !h.verify_password(&SecretString::from("wrong"), &hash)
            .await
            .unwrap()
    );
    assert!(!h.verify_password(&pw, "not a hash").await.unwrap());
    let again = h.hash_password(&pw).await.unwrap();
    assert_ne!(hash, again, "a fresh salt each time");
}

#[test]
fn secrets_are_random_and_digests_are_sha256() {
    let s = RandomSecrets;
    let a = s.random_alphanumeric(40);
    let b = s.random_alphanumeric(40);
    assert_eq!(a.expose_secret().len(), 40);
    assert!(a.expose_secret().chars().all(|c| c.is_ascii_alphanumeric()));
    assert_ne!(a.expose_secret(), b.expose_secret());
    assert_eq!(
        s.digest("abc"),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
}

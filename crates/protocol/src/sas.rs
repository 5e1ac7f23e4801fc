//! Shared access signature (SAS) tokens: build, parse and verify, for devices and service policies.
//!
//! A token reads `SharedAccessSignature sr={URL-encoded resource}&sig={URL-encoded base64 HMAC}&se={expiry}[&skn={policy}]`.
//! The signature is HMAC-SHA256, keyed with the base64-**decoded** shared key, over the `sr` value
//! *exactly as it appears in the token* (never re-encoded) + `"\n"` + the `se` text. Fields may come
//! in any order (Python sends `sr,sig,se,skn`, Node `sr,sig,skn,se`). Times are seconds since the
//! Unix epoch and are passed in: this module never reads the clock.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::property_bag::{decode, encode_component};

type HmacSha256 = Hmac<Sha256>;

const PREFIX: &str = "SharedAccessSignature ";

/// Why a token or key was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SasError {
    /// The text does not start with `SharedAccessSignature `.
    #[error("token does not start with \"SharedAccessSignature \"")]
    MissingPrefix,
    /// A required field is absent.
    #[error("token lacks the {0} field")]
    MissingField(&'static str),
    /// A field appears twice.
    #[error("token has the {0} field twice")]
    DuplicateField(String),
    /// A field is malformed.
    #[error("token field {field}: {what}")]
    BadField {
        /// The field name.
        field: &'static str,
        /// What is wrong.
        what: String,
    },
    /// The key is not valid base64.
    #[error("shared access key is not valid base64")]
    BadKey,
    /// The signature does not match the key.
    #[error("signature does not match")]
    SignatureMismatch,
    /// The token's expiry has passed.
    #[error("token expired at {expiry} (now {now})")]
    Expired {
        /// The token's `se`.
        expiry: u64,
        /// The time of the check.
        now: u64,
    },
    /// The token's resource does not cover what is being accessed.
    #[error("token resource {resource:?} does not grant access to {wanted:?}")]
    WrongResource {
        /// The decoded `sr`.
        resource: String,
        /// What access was wanted for.
        wanted: String,
    },
}

/// A parsed SAS token. Keeps `sr` and `se` exactly as sent, because the signature covers them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SasToken {
    /// `sr` exactly as it appears in the token (URL-encoded as the client chose).
    pub resource_raw: String,
    /// `sr` percent-decoded.
    pub resource: String,
    /// The base64 signature, percent-decoded.
    pub signature: String,
    /// `se` exactly as sent.
    pub expiry_raw: String,
    /// `se` as a number.
    pub expiry: u64,
    /// `skn` percent-decoded, for policy tokens.
    pub key_name: Option<String>,
}

impl SasToken {
    /// Parses a token. Field names are case-sensitive; unknown fields are ignored.
    ///
    /// # Errors
    /// [`SasError`] for a missing prefix, missing or duplicate fields, or malformed values.
    pub fn parse(token: &str) -> Result<Self, SasError> {
        let body = token.trim().strip_prefix(PREFIX).ok_or(SasError::MissingPrefix)?;
        let (mut sr, mut sig, mut se, mut skn) = (None, None, None, None);
        for field in body.split('&').filter(|field| !field.is_empty()) {
            let (name, value) = field.split_once('=').unwrap_or((field, ""));
            let slot = match name {
                "sr" => &mut sr,
                "sig" => &mut sig,
                "se" => &mut se,
                "skn" => &mut skn,
                _ => continue,
            };
            if slot.replace(value).is_some() {
                return Err(SasError::DuplicateField(name.to_owned()));
            }
        }
        let resource_raw = sr.filter(|v| !v.is_empty()).ok_or(SasError::MissingField("sr"))?;
        let signature_raw = sig.filter(|v| !v.is_empty()).ok_or(SasError::MissingField("sig"))?;
        let expiry_raw = se.filter(|v| !v.is_empty()).ok_or(SasError::MissingField("se"))?;
        let expiry = expiry_raw.parse::<u64>().map_err(|_| SasError::BadField {
            field: "se",
            what: format!("{expiry_raw:?} is not a number of seconds"),
        })?;
        let bad = |field: &'static str| {
            move |_| SasError::BadField { field, what: "not valid UTF-8 once decoded".into() }
        };
        Ok(Self {
            resource: decode(resource_raw).map_err(bad("sr"))?,
            resource_raw: resource_raw.to_owned(),
            signature: decode(signature_raw).map_err(bad("sig"))?,
            expiry_raw: expiry_raw.to_owned(),
            expiry,
            key_name: skn.map(decode).transpose().map_err(bad("skn"))?,
        })
    }

    /// Checks the signature against one decoded key (constant-time comparison).
    pub fn signature_matches(&self, key: &[u8]) -> bool {
        let Ok(claimed) = BASE64.decode(self.signature.as_bytes()) else {
            return false;
        };
        let Ok(mut mac) = HmacSha256::new_from_slice(key) else {
            return false;
        };
        mac.update(string_to_sign(&self.resource_raw, &self.expiry_raw).as_bytes());
        mac.verify_slice(&claimed).is_ok()
    }

    /// Checks the signature against any of `keys` and the expiry against `now` (seconds since the epoch).
    ///
    /// # Errors
    /// [`SasError::SignatureMismatch`] or [`SasError::Expired`].
    pub fn verify(&self, keys: &[&[u8]], now: u64) -> Result<(), SasError> {
        if !keys.iter().any(|key| self.signature_matches(key)) {
            return Err(SasError::SignatureMismatch);
        }
        if self.expiry <= now {
            return Err(SasError::Expired { expiry: self.expiry, now });
        }
        Ok(())
    }

    /// Whether the decoded `sr` names, by path segment, a prefix of `{host}/devices/{device}[/modules/{module}]`.
    /// The host compares case-insensitively; ids case-sensitively.
    pub fn covers_device(&self, host: &str, device_id: &str, module_id: Option<&str>) -> bool {
        let mut wanted = vec!["devices", device_id];
        if let Some(module) = module_id {
            wanted.extend(["modules", module]);
        }
        self.covers(host, &wanted)
    }

    /// Whether the decoded `sr` is the hub itself (service tokens) or a path under it.
    pub fn covers_hub(&self, host: &str) -> bool {
        let mut segments = self.resource.split('/').filter(|s| !s.is_empty());
        segments.next().is_some_and(|first| first.eq_ignore_ascii_case(host))
    }

    fn covers(&self, host: &str, wanted: &[&str]) -> bool {
        let mut segments = self.resource.split('/').filter(|s| !s.is_empty());
        if !segments.next().is_some_and(|first| first.eq_ignore_ascii_case(host)) {
            return false;
        }
        let rest: Vec<&str> = segments.collect();
        rest.len() <= wanted.len() && rest.iter().zip(wanted).all(|(got, want)| got == want)
    }
}

/// The resource URI of a device or module identity: `{host}/devices/{device}[/modules/{module}]` (not encoded).
pub fn device_resource(host: &str, device_id: &str, module_id: Option<&str>) -> String {
    match module_id {
        Some(module) => format!("{host}/devices/{device_id}/modules/{module}"),
        None => format!("{host}/devices/{device_id}"),
    }
}

/// Decodes a base64 shared access key.
///
/// # Errors
/// [`SasError::BadKey`] when the key is not base64 or is empty.
pub fn decode_key(key_base64: &str) -> Result<Vec<u8>, SasError> {
    match BASE64.decode(key_base64.trim().as_bytes()) {
        Ok(key) if !key.is_empty() => Ok(key),
        _ => Err(SasError::BadKey),
    }
}

/// Encodes random bytes (the caller supplies them, e.g. 32 from a CSPRNG) as a shared access key.
pub fn encode_key(random: &[u8]) -> String {
    BASE64.encode(random)
}

/// Builds a token for `resource` (not encoded; it is URL-encoded here the way the Python SDK does,
/// uppercase hex), signed with the base64 `key`, valid until `expiry`, with `skn` when `key_name` is set.
///
/// # Errors
/// [`SasError::BadKey`] when the key is not base64.
pub fn generate(
    resource: &str,
    key_base64: &str,
    key_name: Option<&str>,
    expiry: u64,
) -> Result<String, SasError> {
    let key = decode_key(key_base64)?;
    let sr = encode_component(resource);
    let se = expiry.to_string();
    let mut mac = HmacSha256::new_from_slice(&key).map_err(|_| SasError::BadKey)?;
    mac.update(string_to_sign(&sr, &se).as_bytes());
    let sig = encode_component(&BASE64.encode(mac.finalize().into_bytes()));
    let mut token = format!("{PREFIX}sr={sr}&sig={sig}&se={se}");
    if let Some(name) = key_name {
        token.push_str("&skn=");
        token.push_str(&encode_component(name));
    }
    Ok(token)
}

fn string_to_sign(resource_raw: &str, expiry_raw: &str) -> String {
    format!("{resource_raw}\n{expiry_raw}")
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// Key "secret-key-for-hubsim-tests!!" in base64.
    const KEY: &str = "c2VjcmV0LWtleS1mb3ItaHVic2ltLXRlc3RzISE=";

    #[test]
    fn known_vector() {
        // HMAC-SHA256(key = b"secret-key-for-hubsim-tests!!", "myhub.azure-devices.net%2Fdevices%2Fdevice1\n1456971697"),
        // computed independently with Python's hmac module, base64 then URL-encoded.
        let token =
            generate("myhub.azure-devices.net/devices/device1", KEY, None, 1_456_971_697).unwrap();
        expect_test::expect![[r#"SharedAccessSignature sr=myhub.azure-devices.net%2Fdevices%2Fdevice1&sig=QPEGInZSIY%2Bv2rUWLnnqCpbsqW%2Bu%2Fq%2BQmRT15lHR%2FkI%3D&se=1456971697"#]]
        .assert_eq(&token);
        let parsed = SasToken::parse(&token).unwrap();
        let key = decode_key(KEY).unwrap();
        assert!(parsed.verify(&[&key], 1_456_971_000).is_ok());
        assert_eq!(
            parsed.verify(&[&key], 1_456_971_697),
            Err(SasError::Expired { expiry: 1_456_971_697, now: 1_456_971_697 })
        );
        assert!(parsed.covers_device("MyHub.Azure-Devices.net", "device1", None));
        assert!(!parsed.covers_device("myhub.azure-devices.net", "Device1", None));
        // A device-scoped token covers the device's modules too (prefix by path segment).
        assert!(parsed.covers_device("myhub.azure-devices.net", "device1", Some("m")));
        assert!(!parsed.covers_device("myhub.azure-devices.net", "device10", None));
        assert!(!parsed.covers_device("otherhub", "device1", None));
    }

    #[test]
    fn any_field_order_and_lowercase_encoding() {
        let key = decode_key(KEY).unwrap();
        // Node's order (sr, sig, skn, se) and a lowercase-encoded sr: the signature covers sr as sent.
        let sr = "myhub%2fdevices%2fd1";
        let se = "4102444800";
        let mut mac = HmacSha256::new_from_slice(&key).unwrap();
        mac.update(format!("{sr}\n{se}").as_bytes());
        let sig = encode_component(&BASE64.encode(mac.finalize().into_bytes()));
        let token = format!("SharedAccessSignature sr={sr}&sig={sig}&skn=device&se={se}");
        let parsed = SasToken::parse(&token).unwrap();
        assert_eq!(parsed.key_name.as_deref(), Some("device"));
        assert!(parsed.verify(&[b"wrong key", &key], 0).is_ok());
        assert!(parsed.covers_device("myhub", "d1", None));
        let service =
            SasToken::parse(&generate("myhub", KEY, Some("iothubowner"), 10).unwrap()).unwrap();
        assert!(service.covers_hub("MYHUB"));
        assert!(!service.covers_hub("other"));
    }

    #[test]
    fn refusals() {
        let check = |text: &str, expect: expect_test::Expect| {
            expect.assert_eq(&SasToken::parse(text).unwrap_err().to_string())
        };
        check(
            "sr=a&sig=b&se=1",
            expect_test::expect![[r#"token does not start with "SharedAccessSignature ""#]],
        );
        check("SharedAccessSignature sig=b&se=1", expect_test::expect!["token lacks the sr field"]);
        check(
            "SharedAccessSignature sr=a&sr=b&sig=b&se=1",
            expect_test::expect!["token has the sr field twice"],
        );
        check(
            "SharedAccessSignature sr=a&sig=b&se=soon",
            expect_test::expect![[r#"token field se: "soon" is not a number of seconds"#]],
        );
        check(
            "SharedAccessSignature sr=%ff&sig=b&se=1",
            expect_test::expect!["token field sr: not valid UTF-8 once decoded"],
        );
        assert_eq!(decode_key("not base64!"), Err(SasError::BadKey));
        let forged =
            SasToken::parse("SharedAccessSignature sr=h%2Fdevices%2Fd&sig=AAAA&se=99999999999")
                .unwrap();
        assert_eq!(
            forged.verify(&[&decode_key(KEY).unwrap()], 0),
            Err(SasError::SignatureMismatch)
        );
    }

    proptest! {
        #[test]
        fn generated_tokens_verify(device in "[a-zA-Z0-9-]{1,20}", expiry in 1u64..u64::MAX / 2, key in proptest::collection::vec(any::<u8>(), 1..64)) {
            let key_b64 = encode_key(&key);
            let token = generate(&device_resource("hub.local", &device, None), &key_b64, None, expiry).unwrap();
            let parsed = SasToken::parse(&token).unwrap();
            prop_assert!(parsed.verify(&[&key], expiry - 1).is_ok());
            prop_assert!(parsed.covers_device("hub.local", &device, None));
        }

        #[test]
        fn parse_never_panics(text in ".{0,120}") {
            let _ = SasToken::parse(&text);
            let _ = SasToken::parse(&format!("SharedAccessSignature {text}"));
        }
    }
}

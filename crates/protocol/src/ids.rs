//! Newtype identifiers: [`DeviceId`], [`ModuleId`] and [`JobId`], each validated on construction.
//!
//! The character rules come from the identity-registry and jobs documents: device and module ids are
//! at most 128 ASCII characters from a fixed set, job ids at most 64 letters, digits and `-`.
//! Ids are case-sensitive and never URL-encoded inside MQTT topics.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Why a string is not a valid id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// The id is empty.
    #[error("{kind} must not be empty")]
    Empty {
        /// Which kind of id (device id, module id, job id).
        kind: &'static str,
    },
    /// The id is longer than allowed.
    #[error("{kind} is {len} characters long; the limit is {max}")]
    TooLong {
        /// Which kind of id.
        kind: &'static str,
        /// Its length in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The id contains a character outside the allowed set.
    #[error("{kind} contains {ch:?}, which is not allowed ({allowed})")]
    BadChar {
        /// Which kind of id.
        kind: &'static str,
        /// The offending character.
        ch: char,
        /// A description of the allowed set.
        allowed: &'static str,
    },
}

/// Characters allowed in device and module ids besides ASCII letters and digits.
const DEVICE_ID_SPECIALS: &str = "-.+%_#*?!(),=@$':;";
const DEVICE_ID_ALLOWED: &str = "ASCII letters, digits and - . + % _ # * ? ! ( ) , = @ $ ' : ;";
const MAX_DEVICE_ID_LEN: usize = 128;
const MAX_JOB_ID_LEN: usize = 64;

fn check_device_like(kind: &'static str, value: &str) -> Result<(), IdError> {
    if value.is_empty() {
        return Err(IdError::Empty { kind });
    }
    if value.len() > MAX_DEVICE_ID_LEN {
        return Err(IdError::TooLong { kind, len: value.len(), max: MAX_DEVICE_ID_LEN });
    }
    match value.chars().find(|c| !(c.is_ascii_alphanumeric() || DEVICE_ID_SPECIALS.contains(*c))) {
        Some(ch) => Err(IdError::BadChar { kind, ch, allowed: DEVICE_ID_ALLOWED }),
        None => Ok(()),
    }
}

macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident, $check:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// Validates `value` and wraps it.
            ///
            /// # Errors
            /// [`IdError`] when the value breaks the id's character or length rules.
            pub fn new(value: impl Into<String>) -> Result<Self, IdError> {
                let value = value.into();
                ($check)(&value)?;
                Ok(Self(value))
            }

            /// The id as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }

            /// Unwraps the id into its string.
            pub fn into_string(self) -> String {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl std::str::FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::new(s)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let raw = String::deserialize(deserializer)?;
                Self::new(raw).map_err(serde::de::Error::custom)
            }
        }
    };
}

string_id!(
    /// A device id: ≤ 128 characters, case-sensitive, ASCII letters, digits and `- . + % _ # * ? ! ( ) , = @ $ ' : ;`.
    DeviceId,
    |v: &str| check_device_like("device id", v)
);

string_id!(
    /// A module id: the same rules as a device id.
    ModuleId,
    |v: &str| check_device_like("module id", v)
);

string_id!(
    /// A job id: ≤ 64 characters of US-ASCII letters, digits and `-`.
    JobId,
    |v: &str| {
        let kind = "job id";
        if v.is_empty() {
            return Err(IdError::Empty { kind });
        }
        if v.len() > MAX_JOB_ID_LEN {
            return Err(IdError::TooLong { kind, len: v.len(), max: MAX_JOB_ID_LEN });
        }
        match v.chars().find(|c| !(c.is_ascii_alphanumeric() || *c == '-')) {
            Some(ch) => Err(IdError::BadChar { kind, ch, allowed: "ASCII letters, digits and -" }),
            None => Ok(()),
        }
    }
);

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &str, expect: expect_test::Expect) {
        let (device, job) = (DeviceId::new(input), JobId::new(input));
        let actual = format!(
            "device: {}; job: {}",
            device.map(|d| d.to_string()).unwrap_or_else(|e| e.to_string()),
            job.map(|j| j.to_string()).unwrap_or_else(|e| e.to_string())
        );
        expect.assert_eq(&actual);
    }

    #[test]
    fn ids() {
        check("b43-f3-0001", expect_test::expect!["device: b43-f3-0001; job: b43-f3-0001"]);
        check(
            "",
            expect_test::expect![
                "device: device id must not be empty; job: job id must not be empty"
            ],
        );
        check(
            "a/b",
            expect_test::expect![[
                r#"device: device id contains '/', which is not allowed (ASCII letters, digits and - . + % _ # * ? ! ( ) , = @ $ ' : ;); job: job id contains '/', which is not allowed (ASCII letters, digits and -)"#
            ]],
        );
        check(
            "dev.1",
            expect_test::expect![[
                r#"device: dev.1; job: job id contains '.', which is not allowed (ASCII letters, digits and -)"#
            ]],
        );
        check(
            &"x".repeat(65),
            expect_test::expect!["device: xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx; job: job id is 65 characters long; the limit is 64"],
        );
    }

    #[test]
    fn serde_validates() {
        assert!(serde_json::from_str::<DeviceId>("\"ok-1\"").is_ok());
        assert!(serde_json::from_str::<DeviceId>("\"not ok\"").is_err());
    }
}

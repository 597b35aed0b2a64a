//! Continue tokens: the snapshot position of the first page and the last name returned. They name only spaces the
//! caller was shown, so a token never reveals a hidden namespace.

use base64::Engine;
use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    #[error("continue key is not valid: {0}")]
    Invalid(&'static str),
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContinueToken {
    /// The log position every page of this list is read at.
    #[serde(rename = "rv")]
    pub position: u64,
    /// Pages continue after this name.
    pub start: String,
}

// === impl ContinueToken ===

impl ContinueToken {
    #[must_use]
    pub fn encode(&self) -> String {
        let json = serde_json::to_vec(self).unwrap_or_default();
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json)
    }

    /// # Errors
    /// When the token was not made by [`ContinueToken::encode`].
    pub fn decode(token: &str) -> Result<Self, Error> {
        let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(token)
            .map_err(|_| Error::Invalid("not base64"))?;
        let token: ContinueToken = serde_json::from_slice(&json).map_err(|_| Error::Invalid("malformed"))?;
        if token.start.is_empty() {
            return Err(Error::Invalid("no start"));
        }
        Ok(token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_garbage_is_refused() {
        let token = ContinueToken {
            position: 42,
            start: "team-a".into(),
        };
        assert_eq!(ContinueToken::decode(&token.encode()), Ok(token));
        assert!(ContinueToken::decode("!!!").is_err());
        assert!(ContinueToken::decode("e30").is_err(), "{{}} is not a token");
        assert!(ContinueToken::decode("").is_err());
    }
}

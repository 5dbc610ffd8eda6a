//! API keys: `Authorization: Bearer <key>` → the paying account.

use std::collections::HashMap;

use actix_web::http::header;
use actix_web::HttpRequest;

use super::error::ApiError;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("api key entry #{index} must look like \"key:account\" (got no `:`)")]
    NoSeparator { index: usize },
    #[error("api key entry #{index} has an empty key or account")]
    Empty { index: usize },
    #[error("api key entry #{index} repeats a key listed earlier")]
    Duplicate { index: usize },
}

/// The configured keys.
#[derive(Debug, Clone, Default)]
pub struct ApiKeys {
    accounts: HashMap<String, String>,
}

impl ApiKeys {
    /// Parses `"key:account"` entries. The account is what follows the last `:`, so keys may
    /// contain colons but accounts may not.
    pub fn parse<S: AsRef<str>>(entries: &[S]) -> Result<Self, KeyError> {
        let mut accounts = HashMap::new();
        for (index, e) in entries.iter().enumerate() {
            let (key, account) = e.as_ref().rsplit_once(':').ok_or(KeyError::NoSeparator { index })?;
            let (key, account) = (key.trim(), account.trim());
            if key.is_empty() || account.is_empty() {
                return Err(KeyError::Empty { index });
            }
            if accounts.insert(key.to_string(), account.to_string()).is_some() {
                return Err(KeyError::Duplicate { index });
            }
        }
        Ok(Self { accounts })
    }

    pub fn len(&self) -> usize {
        self.accounts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.accounts.is_empty()
    }

    /// The account a request pays with, or a 401.
    pub fn authenticate(&self, req: &HttpRequest) -> Result<String, ApiError> {
        let Some(value) = req.headers().get(header::AUTHORIZATION) else {
            return Err(ApiError::unauthorized(
                "You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
            ));
        };
        let value =
            value.to_str().map_err(|_| ApiError::unauthorized("The Authorization header is not valid text."))?;
        let key = match value.split_once(' ') {
            Some((scheme, key)) if scheme.eq_ignore_ascii_case("bearer") => key.trim(),
            _ => {
                return Err(ApiError::unauthorized(
                    "The Authorization header must use Bearer auth (Authorization: Bearer YOUR_KEY).",
                ))
            }
        };
        self.accounts
            .get(key)
            .cloned()
            .ok_or_else(|| ApiError::unauthorized(format!("Incorrect API key provided: {}.", redact(key))))
    }
}

/// Shows only the ends of a key, as OpenAI does.
fn redact(key: &str) -> String {
    let chars: Vec<char> = key.chars().collect();
    if chars.len() <= 8 {
        return "*".repeat(chars.len());
    }
    let head: String = chars[..3].iter().collect();
    let tail: String = chars[chars.len() - 4..].iter().collect();
    format!("{head}{}{tail}", "*".repeat(chars.len() - 7))
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    #[test]
    fn keys_parse_as_key_colon_account_and_bad_entries_are_named() {
        let k = ApiKeys::parse(&["sk-a:alice", "sk:with:colon:bob"]).unwrap();
        assert_eq!(k.len(), 2);
        let req = TestRequest::default().insert_header(("authorization", "Bearer sk:with:colon")).to_http_request();
        assert_eq!(k.authenticate(&req).unwrap(), "bob");
        assert_eq!(ApiKeys::parse(&["nocolon"]).unwrap_err(), KeyError::NoSeparator { index: 0 });
        assert_eq!(ApiKeys::parse(&["a:b", ":x"]).unwrap_err(), KeyError::Empty { index: 1 });
        assert_eq!(ApiKeys::parse(&["a:b", "a:c"]).unwrap_err(), KeyError::Duplicate { index: 1 });
    }

    #[test]
    fn bearer_scheme_is_case_insensitive_and_other_schemes_are_refused() {
        let k = ApiKeys::parse(&["sk-a:alice"]).unwrap();
        let ok = TestRequest::default().insert_header(("authorization", "bearer sk-a")).to_http_request();
        assert_eq!(k.authenticate(&ok).unwrap(), "alice");
        for v in ["Basic sk-a", "sk-a", "Bearer sk-b", "Bearer "] {
            let req = TestRequest::default().insert_header(("authorization", v)).to_http_request();
            let e = k.authenticate(&req).unwrap_err();
            assert_eq!((e.status.as_u16(), e.code), (401, Some("invalid_api_key")), "{v}");
        }
    }

    #[test]
    fn a_wrong_key_is_redacted_in_the_error_message() {
        let k = ApiKeys::parse(&["sk-a:alice"]).unwrap();
        let req =
            TestRequest::default().insert_header(("authorization", "Bearer sk-secret-12345678")).to_http_request();
        let e = k.authenticate(&req).unwrap_err();
        assert!(!e.message.contains("secret"), "{}", e.message);
        assert!(e.message.contains("sk-") && e.message.contains("5678"), "{}", e.message);
    }
}

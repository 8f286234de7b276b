//! Whether an upstream's answer refuses the token (DESIGN §12): a 401, or a 403 whose Bearer
//! challenge names `invalid_token` (RFC 6750 §3.1), as servers that answer an expired token
//! with 403 send it. Either gets the same coalesced refresh and one replay.
//!
//! The challenge is parsed as RFC 9110 §11.6.1 writes it (any number of `WWW-Authenticate`
//! headers, several challenges in one, parameter names in any case, values as tokens or quoted
//! strings) by `http-auth`.

use hyper::StatusCode;
use hyper::header::{HeaderMap, WWW_AUTHENTICATE};

/// The upstream refused the token it was sent.
pub(super) fn refuses_token(status: StatusCode, headers: &HeaderMap) -> bool {
    status == StatusCode::UNAUTHORIZED || (status == StatusCode::FORBIDDEN && invalid_token(headers))
}

/// A Bearer challenge with `error="invalid_token"` in any of `headers`' `WWW-Authenticate`.
fn invalid_token(headers: &HeaderMap) -> bool {
    headers.get_all(WWW_AUTHENTICATE).iter().filter_map(|value| value.to_str().ok()).any(|value| {
        http_auth::ChallengeParser::new(value).map_while(Result::ok).any(|challenge| {
            challenge.scheme.eq_ignore_ascii_case("bearer")
                && challenge.params.iter().any(|(name, value)| {
                    name.eq_ignore_ascii_case("error") && value.to_unescaped() == "invalid_token"
                })
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refuses(status: u16, challenges: &[&str]) -> bool {
        let mut headers = HeaderMap::new();
        for challenge in challenges {
            headers.append(WWW_AUTHENTICATE, challenge.parse().unwrap());
        }
        refuses_token(StatusCode::from_u16(status).unwrap(), &headers)
    }

    #[test]
    fn a_401_always_refuses_the_token() {
        assert!(refuses(401, &[]));
        assert!(refuses(401, &["Basic realm=\"x\""]));
    }

    #[test]
    fn a_403_refuses_it_only_with_a_bearer_invalid_token_challenge_however_written() {
        for written in [
            &["Bearer error=\"invalid_token\""][..],
            &["Bearer error=invalid_token"],
            &["bearer ERROR=\"invalid_token\", error_description=\"The access token expired\""],
            &["Bearer realm=\"mcp\", scope=\"a b\", error=\"invalid_token\""],
            &["Basic realm=\"x\", Bearer error=\"invalid_token\""],
            &[
                "Basic realm=\"x\"",
                "Bearer resource_metadata=\"https://m/.well-known/x\", error=\"invalid_token\"",
            ],
        ] {
            assert!(refuses(403, written), "{written:?}");
        }
        for other in [
            &[][..],
            &["Bearer error=\"insufficient_scope\", scope=\"admin\""],
            &["Bearer realm=\"invalid_token\""],
            &["Basic error=\"invalid_token\""],
            &["Bearer error=\"invalid_token_x\""],
        ] {
            assert!(!refuses(403, other), "{other:?}");
        }
        assert!(!refuses(404, &["Bearer error=\"invalid_token\""]));
    }
}

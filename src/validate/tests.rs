use std::time::{Duration, SystemTime};

use serde_json::json;

use super::*;
use crate::config::{FieldsConfig, ValidateConfig};

const SECRET: &str = "CN8F-U3ycBSaEQKtS2sDAhJNAhTHFcNP4Qi-ljp5wJC-qZKgr3NKVPc";

fn now() -> SystemTime {
    clock::parse_rfc3339("2026-08-02T21:03:29Z").unwrap()
}

/// The seed's answer, expiring in one hour.
fn seed_answer() -> serde_json::Value {
    json!({
        "agent_name": "google-calender-mcp",
        "token": SECRET,
        "expires_at": "2026-08-02T22:03:29.801523Z",
        "valid": true,
        "message": "Current MCP token retrieved successfully"
    })
}

fn check_with(
    answer: &serde_json::Value,
    fields: &FieldsConfig,
    agent: Option<&str>,
) -> Result<Candidate, Rejection> {
    check_answer(answer.to_string().as_bytes(), now(), fields, agent, None, &ValidateConfig::default())
}

fn check(answer: &serde_json::Value) -> Result<Candidate, Rejection> {
    check_with(answer, &FieldsConfig::default(), Some("google-calender-mcp"))
}

fn with(field: &str, value: serde_json::Value) -> serde_json::Value {
    let mut answer = seed_answer();
    answer[field] = value;
    answer
}

fn without(field: &str) -> serde_json::Value {
    let mut answer = seed_answer();
    answer.as_object_mut().unwrap().remove(field);
    answer
}

#[test]
fn the_seed_answer_is_accepted() {
    let c = check(&seed_answer()).unwrap();
    assert_eq!(c.token.expose(), SECRET);
    assert_eq!(c.agent_name.as_deref(), Some("google-calender-mcp"));
    assert_eq!(c.expires_at, clock::parse_rfc3339("2026-08-02T22:03:29.801523Z").unwrap());
}

#[test]
fn absent_valid_field_means_valid() {
    check(&without("valid")).unwrap();
}

#[test]
fn non_json_and_non_objects_are_rejected() {
    let rules = ValidateConfig::default();
    let fields = FieldsConfig::default();
    for body in [&b"<html>502 Bad Gateway</html>"[..], b"{\"token\": \"abc", b""] {
        let err = check_answer(body, now(), &fields, None, None, &rules).unwrap_err();
        assert!(matches!(err, Rejection::NotJson(_)), "{err}");
    }
    for body in [&b"[1,2]"[..], b"\"token\"", b"null", b"42"] {
        assert_eq!(
            check_answer(body, now(), &fields, None, None, &rules).unwrap_err(),
            Rejection::NotAnObject
        );
    }
}

#[test]
fn valid_false_is_rejected() {
    assert_eq!(check(&with("valid", json!(false))).unwrap_err(), Rejection::MarkedInvalid("/valid".into()));
    assert!(matches!(check(&with("valid", json!("yes"))).unwrap_err(), Rejection::ValidNotBoolean { .. }));
}

#[test]
fn token_must_be_a_non_empty_string() {
    assert_eq!(check(&without("token")).unwrap_err(), Rejection::TokenMissing("/token".into()));
    for (value, found) in [(json!(null), "null"), (json!(12345), "a number"), (json!(["a"]), "an array")] {
        assert_eq!(
            check(&with("token", value)).unwrap_err(),
            Rejection::TokenNotString { pointer: "/token".into(), found }
        );
    }
    assert_eq!(check(&with("token", json!(""))).unwrap_err(), Rejection::TokenEmpty);
}

#[test]
fn token_must_be_visible_ascii() {
    for (token, what, at) in [
        ("abc def", "a space", 3),
        ("abc\ndef", "a control character", 3),
        ("abc\u{7f}", "a control character", 3),
        ("tökén", "a non-ASCII byte", 1),
    ] {
        let err = check(&with("token", json!(token))).unwrap_err();
        assert_eq!(err, Rejection::TokenBadByte { what, at }, "{token:?}");
        assert!(!err.to_string().contains(token));
    }
}

#[test]
fn token_length_is_bounded() {
    check(&with("token", json!("x".repeat(4096)))).unwrap();
    assert_eq!(check(&with("token", json!("x".repeat(5000)))).unwrap_err(), Rejection::TokenTooLong(5000));
}

#[test]
fn wrong_or_missing_agent_is_rejected_when_source_agent_is_set() {
    let err = check(&with("agent_name", json!("other-agent"))).unwrap_err();
    assert_eq!(
        err,
        Rejection::WrongAgent { found: "other-agent".into(), expected: "google-calender-mcp".into() }
    );
    assert!(matches!(check(&without("agent_name")).unwrap_err(), Rejection::AgentMissing { .. }));
    // Without source.agent, any agent (or none) is fine.
    check_with(&with("agent_name", json!("other-agent")), &FieldsConfig::default(), None).unwrap();
    let c = check_with(&without("agent_name"), &FieldsConfig::default(), None).unwrap();
    assert_eq!(c.agent_name, None);
}

#[test]
fn expiry_must_be_present_and_rfc3339() {
    assert_eq!(check(&without("expires_at")).unwrap_err(), Rejection::ExpiryMissing("/expires_at".into()));
    assert_eq!(
        check(&with("expires_at", json!(null))).unwrap_err(),
        Rejection::ExpiryMissing("/expires_at".into())
    );
    for bad in [
        json!("tomorrow"),
        json!("2026-08-02 22:03:29"),
        json!("2026-13-02T22:03:29Z"),
        json!(-5),
        json!("17857e5"),
        json!(true),
    ] {
        assert_eq!(
            check(&with("expires_at", bad.clone())).unwrap_err(),
            Rejection::ExpiryNotRfc3339("/expires_at".into()),
            "{bad}"
        );
    }
}

#[test]
fn expired_and_nearly_expired_tokens_are_rejected() {
    assert_eq!(check(&with("expires_at", json!("2026-08-02T21:00:00Z"))).unwrap_err(), Rejection::Expired);
    assert_eq!(check(&with("expires_at", json!("2026-08-02T21:03:29Z"))).unwrap_err(), Rejection::Expired);
    let err = check(&with("expires_at", json!("2026-08-02T21:03:39Z"))).unwrap_err();
    assert!(matches!(err, Rejection::ExpiresTooSoon { .. }), "{err}");
    assert!(err.to_string().contains("10s"), "{err}");
    check(&with("expires_at", json!("2026-08-02T21:03:40Z"))).unwrap();
}

#[test]
fn far_future_expiry_is_rejected() {
    let err = check(&with("expires_at", json!("2027-08-02T21:03:29Z"))).unwrap_err();
    assert!(matches!(err, Rejection::ExpiresTooFar { .. }), "{err}");
    check(&with("expires_at", json!("2026-09-01T21:03:29Z"))).unwrap();
}

#[test]
fn expires_in_counts_from_arrival() {
    let fields =
        FieldsConfig { expires_at: None, expires_in: Some("/expires_in".into()), ..FieldsConfig::default() };
    let mut answer = without("expires_at");
    answer["expires_in"] = json!(3600);
    let c = check_with(&answer, &fields, None).unwrap();
    assert_eq!(c.expires_at, now() + Duration::from_secs(3600));
    answer["expires_in"] = json!(1.5e3);
    assert_eq!(check_with(&answer, &fields, None).unwrap().expires_at, now() + Duration::from_secs(1500));
    // As some identity providers send it: a string of decimal digits.
    answer["expires_in"] = json!("3600");
    assert_eq!(check_with(&answer, &fields, None).unwrap().expires_at, now() + Duration::from_secs(3600));
    answer["expires_in"] = json!("03600");
    assert_eq!(check_with(&answer, &fields, None).unwrap().expires_at, now() + Duration::from_secs(3600));
    for ambiguous in [
        json!(-5),
        json!("-5"),
        json!("+3600"),
        json!("1.5e3"),
        json!("3600.0"),
        json!("3600s"),
        json!("1h"),
        json!(" 3600"),
        json!(""),
        json!("99999999999999999999999"),
        json!(true),
        json!([3600]),
    ] {
        answer["expires_in"] = ambiguous.clone();
        assert_eq!(
            check_with(&answer, &fields, None).unwrap_err(),
            Rejection::ExpiryNotSeconds("/expires_in".into()),
            "{ambiguous}"
        );
    }
}

#[test]
fn field_pointers_reach_nested_answers() {
    let fields = FieldsConfig {
        token: "/data/access_token".into(),
        expires_at: Some("/data/expiry".into()),
        expires_in: None,
        valid: "/data/ok".into(),
        agent: "/meta/agent".into(),
    };
    let answer = json!({
        "data": {"access_token": SECRET, "expiry": "2026-08-02T22:03:29Z", "ok": true},
        "meta": {"agent": "a1"}
    });
    let c = check_with(&answer, &fields, Some("a1")).unwrap();
    assert_eq!(c.token.expose(), SECRET);
}

#[test]
fn no_rejection_message_contains_the_token() {
    let cases = [
        with("valid", json!(false)),
        with("agent_name", json!("x")),
        with("expires_at", json!("soon")),
        with("expires_at", json!("2026-08-02T21:03:30Z")),
        with("expires_at", json!("2099-01-01T00:00:00Z")),
        with("token", json!(format!("{SECRET} "))),
    ];
    for answer in cases {
        let err = check(&answer).unwrap_err().to_string();
        assert!(!err.contains(SECRET) && !err.contains("CN8F"), "{err}");
    }
}

#[test]
fn an_agent_name_holding_the_token_is_rejected_without_quoting_it() {
    // Found by fuzzing (fuzz/artifacts, backend_answer): the wrong-agent message quoted it.
    let body = br#"{"agent_name": " kxpireycBSaEQKtS2sDAhJNAhTHFc~P4Qi-ljp5wJC-qZKgrZKgr3NKVPc", "expires_at": "2027-01-15T083Z", "valid": true, "message":"google-calender-mcp", "token": " kxpireycBSaEQKtS2sDAhJNAhTHFc~P4Qi-ljp5wJC-qZKgrZKgr3NKVPc", "expires_at": "2027-01-15T083Z", "valid": true, "message": "Currentetrieved sly"}"#;
    let err = check_answer(
        body,
        now(),
        &FieldsConfig::default(),
        Some("google-calender-mcp"),
        None,
        &ValidateConfig::default(),
    )
    .unwrap_err();
    assert_eq!(err, Rejection::AgentHoldsToken("/agent_name".into()));
    assert!(!err.to_string().contains("kxpirey"));

    // The same through a misdirected pointer, with no source.agent to compare against.
    let fields = FieldsConfig { agent: "/token".into(), ..FieldsConfig::default() };
    let err = check_with(&seed_answer(), &fields, None).unwrap_err();
    assert_eq!(err, Rejection::AgentHoldsToken("/token".into()));
}

/// DESIGN §16: Azure's `expires_on` is seconds since the epoch, a number or a string of digits.
#[test]
fn expiry_may_be_seconds_since_the_epoch() {
    let at = now() + Duration::from_secs(3600);
    let epoch = at.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs();
    for value in [json!(epoch), json!(epoch.to_string())] {
        let c = check(&with("expires_at", value.clone())).unwrap();
        assert_eq!(c.expires_at, at, "{value}");
    }
}

/// A JWT whose claims are `claims`, its signature not a real one (never verified).
fn jwt(claims: serde_json::Value) -> String {
    use base64::Engine;
    let part = |v: &serde_json::Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    format!("{}.{}.c2lnbmF0dXJl", part(&json!({"alg": "RS256", "typ": "JWT"})), part(&claims))
}

#[test]
fn without_an_expiry_field_a_jwts_own_exp_or_default_lifetime_schedules_it() {
    let at = now() + Duration::from_secs(1800);
    let exp = at.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs();
    let fields = FieldsConfig { expires_at: Some(String::new()), ..FieldsConfig::default() };
    let token = jwt(json!({"sub": "svc", "exp": exp}));
    let answer = with("token", json!(token));
    let rules = ValidateConfig::default();
    let check_none = |answer: &serde_json::Value, lifetime| {
        check_answer(answer.to_string().as_bytes(), now(), &fields, None, lifetime, &rules)
    };
    assert_eq!(check_none(&answer, None).unwrap().expires_at, at);
    // The JWT's exp wins over default_lifetime: it is the token's own word.
    assert_eq!(check_none(&answer, Some(Duration::from_secs(60))).unwrap().expires_at, at);
    // An opaque token: default_lifetime, else refused naming the options.
    let opaque = seed_answer();
    assert_eq!(
        check_none(&opaque, Some(Duration::from_secs(600))).unwrap().expires_at,
        now() + Duration::from_secs(600)
    );
    let refused = check_none(&opaque, None).unwrap_err();
    assert!(refused.to_string().contains("default_lifetime"), "{refused}");
    // Not JWTs: two parts, claims that are not JSON, an exp that is not a number.
    for token in ["a.b", "a.!!!.c", &jwt(json!({"exp": "soon"})), &jwt(json!(["exp"]))] {
        assert_eq!(jwt_exp(token), None, "{token}");
    }
}

#[test]
fn a_text_answer_is_the_token_one_line_break_trimmed() {
    let rules = ValidateConfig::default();
    let body = |text: &str| zeroize::Zeroizing::new(text.as_bytes().to_vec());
    let lifetime = Some(Duration::from_secs(3599));
    let c = check_text(body(&format!("{SECRET}\n")), now(), lifetime, &rules).unwrap();
    assert_eq!((c.token.expose(), c.expires_at), (SECRET, now() + Duration::from_secs(3599)));
    let c = check_text(body(&format!("{SECRET}\r\n")), now(), lifetime, &rules).unwrap();
    assert_eq!(c.token.expose(), SECRET);
    // Only one: a second line is not a token.
    assert!(check_text(body(&format!("{SECRET}\n\n")), now(), lifetime, &rules).is_err());
    assert!(check_text(body("\n"), now(), lifetime, &rules).is_err());
    let bad = check_text(zeroize::Zeroizing::new(vec![0xff, 0xfe]), now(), lifetime, &rules).unwrap_err();
    assert!(matches!(bad, Rejection::NotText(_)), "{bad}");
    // A GCP identity token: a JWT, scheduled by its exp with no default_lifetime.
    let at = now() + Duration::from_secs(3600);
    let exp = at.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs();
    let c = check_text(body(&jwt(json!({"aud": "https://run.example", "exp": exp}))), now(), None, &rules)
        .unwrap();
    assert_eq!(c.expires_at, at);
    let refused = check_text(body(SECRET), now(), None, &rules).unwrap_err();
    assert!(refused.to_string().contains("default_lifetime") && !refused.to_string().contains(SECRET));
}

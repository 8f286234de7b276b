//! Cloud metadata servers through the endpoint source (DESIGN §16): literal request headers,
//! `expires_in` as a string, and text answers. No cloud is reachable from tests, so each server
//! here answers as its documentation shows: GCP's (`Metadata-Flavor: Google` required; an
//! access token as JSON, an audience-bound ID token as plain text) and Azure IMDS's (`Metadata:
//! true` required; every number a string).

mod support;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::json;
use support::api::get;
use support::fake_http::{Answer, FakeHttp};
use support::kinds::Daemon;

fn epoch(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH).unwrap().as_secs()
}

/// How long the held token has left, by status.
async fn left(d: &Daemon) -> Duration {
    let status = get(&d.socket, "/v1/status").await.json();
    let at = humantime::parse_rfc3339(status["expires_at"].as_str().unwrap()).unwrap();
    at.duration_since(SystemTime::now()).unwrap()
}

/// A JWT as Google signs ID tokens (the signature is not checked by anyone here).
fn id_token(audience: &str, exp: u64) -> String {
    use base64::Engine;
    let part = |v: serde_json::Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    format!(
        "{}.{}.c2lnbmF0dXJlLW9mLWdvb2dsZQ",
        part(json!({"alg": "RS256", "kid": "k1", "typ": "JWT"})),
        part(
            json!({"aud": audience, "azp": "1234", "exp": exp, "iat": exp - 3600, "iss": "https://accounts.google.com", "sub": "1234"})
        )
    )
}

/// GCP's metadata server: `/computeMetadata/v1/instance/service-accounts/default/token` and
/// `…/identity?audience=…`, each only with `Metadata-Flavor: Google`.
fn gcp() -> FakeHttp {
    FakeHttp::start(|seen| {
        if seen.header("metadata-flavor") != Some("Google") {
            return Answer::text(403, "Missing required header: Metadata-Flavor\n");
        }
        let answer = match seen.path() {
            "/computeMetadata/v1/instance/service-accounts/default/token" => Answer::json(
                200,
                json!({"access_token": "ya29.c.metadata-secret-0001", "expires_in": 3599, "token_type": "Bearer"}),
            ),
            "/computeMetadata/v1/instance/service-accounts/default/identity" => {
                let query = seen.target.split_once('?').map(|(_, q)| q).unwrap_or_default();
                let audience = url::form_urlencoded::parse(query.as_bytes())
                    .find(|(k, _)| k == "audience")
                    .map(|(_, v)| v.into_owned())
                    .unwrap_or_default();
                Answer::text(200, &id_token(&audience, epoch(SystemTime::now()) + 3600))
            }
            _ => Answer::text(404, "Not Found"),
        };
        answer.with_header("metadata-flavor", "Google")
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gcps_access_token_needs_its_header_and_lives_by_expires_in() {
    let server = gcp();
    let url = format!("{}/computeMetadata/v1/instance/service-accounts/default/token", server.url());
    let fields =
        "[source.fields]\ntoken = \"/access_token\"\nexpires_in = \"/expires_in\"\nexpires_at = \"\"\n";
    // Without the header the server refuses, and the error says where to look.
    let d = Daemon::start(&format!("[source]\nurl = \"{url}\"\n{fields}"), "");
    let status =
        d.status_until("the 403", |s| s["last_error"].as_str().is_some_and(|e| e.contains("HTTP 403"))).await;
    assert!(status["last_error"].as_str().unwrap().contains("source.headers"), "{status}");
    drop(d);

    let d = Daemon::start(
        &format!("[source]\nurl = \"{url}\"\nheaders = {{ \"Metadata-Flavor\" = \"Google\" }}\n{fields}"),
        "",
    );
    assert_eq!(d.token(None), "ya29.c.metadata-secret-0001");
    assert_eq!(d.through_proxy().await, "Bearer ya29.c.metadata-secret-0001");
    let left = left(&d).await;
    assert!(left > Duration::from_secs(3500) && left < Duration::from_secs(3600), "{left:?}");
    d.keeps_secret(&["metadata-secret"]);
}

/// Cloud Run accepts only ID tokens: GCP hands them out as plain text, a JWT whose own `exp`
/// schedules it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gcps_identity_token_is_text_scheduled_by_its_own_exp() {
    let server = gcp();
    let d = Daemon::start(
        &format!(
            "[source]\nurl = \"{}/computeMetadata/v1/instance/service-accounts/default/identity?audience=https%3A%2F%2Frun.example.app&format=full\"\n\
             headers = {{ \"Metadata-Flavor\" = \"Google\" }}\nformat = \"text\"\n",
            server.url()
        ),
        "",
    );
    let token = d.token(None);
    assert_eq!(token.split('.').count(), 3, "{token}");
    assert_eq!(d.through_proxy().await, format!("Bearer {token}"));
    let claims = token.split('.').nth(1).unwrap();
    let claims: serde_json::Value = {
        use base64::Engine;
        serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(claims).unwrap())
            .unwrap()
    };
    assert_eq!(claims["aud"], "https://run.example.app");
    let status = get(&d.socket, "/v1/status").await.json();
    let at = humantime::parse_rfc3339(status["expires_at"].as_str().unwrap()).unwrap();
    assert_eq!(epoch(at), claims["exp"].as_u64().unwrap(), "the JWT's exp: {status}");
    assert_eq!(server.seen()[0].header("accept"), Some("text/plain, */*"));
}

/// Azure IMDS: `Metadata: true`, and `expires_in` (like every number) a string of digits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn azure_imds_strings_of_digits_are_seconds() {
    let server = FakeHttp::start(|seen| {
        if seen.header("metadata") != Some("true") {
            return Answer::json(
                400,
                json!({"error": "invalid_request", "error_description": "Required metadata header not specified"}),
            );
        }
        let now = epoch(SystemTime::now());
        Answer::json(
            200,
            json!({
                "access_token": "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.imds-secret-0001.c2ln",
                "client_id": "00000000-0000-0000-0000-000000000003",
                "expires_in": "86399",
                "expires_on": (now + 86399).to_string(),
                "ext_expires_in": "86399",
                "not_before": now.to_string(),
                "resource": "https://management.azure.com/",
                "token_type": "Bearer",
            }),
        )
    });
    let url = format!(
        "{}/metadata/identity/oauth2/token?api-version=2018-02-01&resource=https://management.azure.com/",
        server.url()
    );
    for expiry in ["expires_in = \"/expires_in\"", "expires_at = \"/expires_on\""] {
        let d = Daemon::start(
            &format!(
                "[source]\nurl = \"{url}\"\nheaders = {{ Metadata = \"true\" }}\n\
                 [source.fields]\ntoken = \"/access_token\"\n{expiry}\n"
            ),
            "",
        );
        assert!(d.token(None).contains("imds-secret-0001"), "{expiry}");
        assert!(d.through_proxy().await.contains("imds-secret-0001"));
        let left = left(&d).await;
        assert!(
            left > Duration::from_secs(86000) && left <= Duration::from_secs(86399),
            "{expiry}: {left:?}"
        );
        // Status says where, without the query (which may carry what is not for everyone).
        let source = get(&d.socket, "/v1/status").await.json()["source"].clone();
        assert_eq!(source["url"], format!("{}/metadata/identity/oauth2/token", server.url()), "{source}");
    }
}

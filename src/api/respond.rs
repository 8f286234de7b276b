//! Answers as the API writes them: JSON errors, the token's no-store answers, and request bodies
//! read within the API's limits.

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Request, Response, StatusCode};
use serde_json::json;

pub type Body = BoxBody<Bytes, Infallible>;

const MAX_BODY: usize = 4 * 1024;
const BODY_TIMEOUT: Duration = Duration::from_secs(10);

/// The request body, at most [`MAX_BODY`] bytes within [`BODY_TIMEOUT`].
pub(super) async fn read_body(request: Request<Incoming>) -> Result<Bytes, Response<Body>> {
    let too_large = || error(StatusCode::PAYLOAD_TOO_LARGE, "too_large", "the body is limited to 4 KiB");
    let declared =
        request.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|len| len > MAX_BODY as u64) {
        return Err(too_large());
    }
    match tokio::time::timeout(BODY_TIMEOUT, Limited::new(request.into_body(), MAX_BODY).collect()).await {
        Err(_) => Err(error(StatusCode::REQUEST_TIMEOUT, "timeout", "the body did not arrive in time")),
        Ok(Err(e)) if e.is::<LengthLimitError>() => Err(too_large()),
        Ok(Err(_)) => Err(error(StatusCode::BAD_REQUEST, "bad_request", "the body could not be read")),
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
    }
}

/// The query parameter `name`, borrowed from the URI unless it had to be decoded.
pub(super) fn query<'a>(request: &'a Request<Incoming>, name: &str) -> Option<std::borrow::Cow<'a, str>> {
    let query = request.uri().query()?;
    url::form_urlencoded::parse(query.as_bytes()).find(|(k, _)| k == name).map(|(_, v)| v)
}

pub(super) fn empty() -> Body {
    BodyExt::boxed(Full::new(Bytes::new()))
}

pub(super) fn text(status: StatusCode, content_type: &'static str, body: String) -> Response<Body> {
    let mut response = Response::new(BodyExt::boxed(Full::new(Bytes::from(body))));
    *response.status_mut() = status;
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

pub(super) fn json_response(status: StatusCode, value: &serde_json::Value) -> Response<Body> {
    let mut response = text(status, "application/json", value.to_string());
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// A response carrying the token, in a copy that is zeroed once hyper has written it.
pub(super) fn secret(body: &[u8], content_type: &'static str) -> Response<Body> {
    shared_secret(Bytes::from_owner(zeroize::Zeroizing::new(body.to_vec())), content_type)
}

/// A response carrying the token in bytes that zero themselves when their last user is gone.
pub(super) fn shared_secret(body: Bytes, content_type: &'static str) -> Response<Body> {
    let mut response = Response::new(BodyExt::boxed(Full::new(body)));
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// The API's error answer, which the proxy gives too: `{"error": code, "detail": …}`, never cached.
pub fn error(status: StatusCode, code: &str, detail: &str) -> Response<Body> {
    json_response(status, &json!({"error": code, "detail": detail}))
}

pub(super) fn no_token(code: &str, detail: &str) -> Response<Body> {
    error(StatusCode::SERVICE_UNAVAILABLE, code, detail)
}

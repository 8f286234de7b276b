//! The `bridge` verb: checks its arguments (a usage error exits 2), then runs the bridge on a
//! single-threaded runtime, small and quick to start as a host's child process should be.

use std::time::Duration;

use nix::sys::signal::{SigSet, SigmaskHow, Signal, pthread_sigmask};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};

use super::daemon::LogChoice;
use super::{CONFIG_ERROR, Outcome, RUNTIME_FAILURE, fail};
use crate::bridge::{Bridge, RESERVED_HEADERS};
use crate::config::LogFormat;
use crate::logging;

pub(super) fn bridge(url: &str, headers: &[String], timeout: Duration, logs: &LogChoice) -> Outcome {
    // A host may stop the bridge the moment it starts it: held until the handlers are in
    // place (Bridge::run lets them through), so that stop too is a clean exit 0.
    let ending = SigSet::from_iter([Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP]);
    let _ = pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&ending), None);
    let url = endpoint(url).map_err(|e| fail(CONFIG_ERROR, e))?;
    let extra = extra_headers(headers).map_err(|e| fail(CONFIG_ERROR, e))?;
    let (_logging, flush) = logging::init(logs.format, LogFormat::Text, logs.level.as_deref());
    let runtime =
        tokio::runtime::Builder::new_current_thread().enable_all().build().expect("the tokio runtime starts");
    let result = runtime.block_on(Bridge::run(url, extra, timeout));
    // stdin's reader may be blocked in a read that never returns: do not wait for it.
    runtime.shutdown_background();
    drop(flush);
    result.map_err(|e| fail(RUNTIME_FAILURE, e))
}

fn endpoint(text: &str) -> Result<url::Url, String> {
    let url = url::Url::parse(text)
        .map_err(|e| format!("bridge URL {text:?}: {e}; write e.g. http://127.0.0.1:8787/mcp"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("bridge URL {text:?}: the scheme must be http or https"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(format!(
            "bridge URL {text:?}: no credentials in the URL (argv is readable by every user); \
             the proxy sink adds the token, or use --header for a static one"
        ));
    }
    Ok(url)
}

/// `--header 'Name: value'`s, as sent on every request. An error names the header, never its
/// value (stderr is often kept in a host's log files).
fn extra_headers(headers: &[String]) -> Result<HeaderMap, String> {
    let mut map = HeaderMap::new();
    for header in headers {
        let Some((name, value)) = header.split_once(':') else {
            return Err("--header: write it as 'Name: value' (one has no colon)".into());
        };
        let name = HeaderName::from_bytes(name.trim().as_bytes())
            .map_err(|_| "--header: one has no HTTP header name before its colon".to_owned())?;
        if RESERVED_HEADERS.contains(&name.as_str()) {
            return Err(format!("--header {name}: the bridge's own to set"));
        }
        let mut value = HeaderValue::from_str(value.trim())
            .map_err(|_| format!("--header {name}: the value holds characters a header cannot carry"))?;
        value.set_sensitive(true);
        map.append(name, value);
    }
    Ok(map)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_are_name_colon_value_and_never_the_bridges_own() {
        let map = extra_headers(&["X-Team: blue".into(), "x-team:green ".into()]).unwrap();
        assert_eq!(map.get_all("x-team").iter().collect::<Vec<_>>(), ["blue", "green"]);
        for bad in [
            "no colon",
            ": empty name",
            "Mcp-Session-Id: 1",
            "Accept: */*",
            "Connection: close",
            "X: a\u{7}b",
        ] {
            assert!(extra_headers(&[bad.into()]).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn the_url_is_http_or_https() {
        assert!(endpoint("http://127.0.0.1:8787/mcp").is_ok());
        assert!(endpoint("https://mcp.example.com/mcp").is_ok());
        assert!(endpoint("ftp://x/").is_err());
        assert!(endpoint("127.0.0.1:8787").is_err());
        assert!(endpoint("http://me:secret@127.0.0.1:8787/mcp").is_err());
    }
}

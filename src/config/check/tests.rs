//! DESIGN §16's keys: each kind of source takes its own, and every combination that cannot work
//! is named by its key and line.

use std::path::Path;

use super::super::{Config, ConfigError, Environment, Problem};

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(text, Path::new("test.toml"), &Environment::default())
}

fn problems(text: &str) -> Vec<Problem> {
    parse(text).expect_err("the config should be refused").problems
}

/// Each problem as "key: message", for matching.
fn said(text: &str) -> Vec<String> {
    problems(text).into_iter().map(|p| format!("{}: {}", p.key.unwrap_or_default(), p.message)).collect()
}

fn has(found: &[String], key: &str, words: &str) -> bool {
    found.iter().any(|p| p.starts_with(&format!("{key}: ")) && p.contains(words))
}

#[test]
fn a_command_source_resolves_and_its_keys_are_its_own() {
    let c = parse(
        "[source]\ntype = \"command\"\ncommand = [\"/usr/bin/az\", \"account\", \"get-access-token\"]\n\
         environment = { AZURE_CONFIG_DIR = \"/home/alice/.azure\" }\n\
         [source.fields]\ntoken = \"/accessToken\"\nexpires_at = \"/expires_on\"\n",
    )
    .unwrap();
    assert_eq!(c.tokens[0].source.command[0], "/usr/bin/az");

    let found = said(
        "[source]\ntype = \"command\"\ncommand = []\nurl = \"https://a.example/t\"\n\
         environment = { \"bad-name\" = \"x\" }\ninstallation_id = 4\n",
    );
    assert!(has(&found, "source.command", "is required"), "{found:?}");
    assert!(has(&found, "source.url", "only used with type = \"endpoint\""), "{found:?}");
    assert!(has(&found, "source.installation_id", "type = \"github_app\""), "{found:?}");
    assert!(has(&found, "source.environment.bad-name", "not a variable name"), "{found:?}");
    let found =
        said("[source]\ntype = \"command\"\ncommand = [\"/bin/true\"]\nuser = \"no-such-user-here\"\n");
    assert!(has(&found, "source.user", "no user named"), "{found:?}");
}

#[test]
fn a_text_answer_takes_no_fields() {
    let found = said(
        "[source]\ntype = \"command\"\ncommand = [\"/usr/bin/gcloud\"]\nformat = \"text\"\n\
         [source.fields]\ntoken = \"/t\"\n",
    );
    assert!(has(&found, "source.fields", "not used with format = \"text\""), "{found:?}");
}

#[test]
fn endpoint_headers_are_literal_and_never_the_daemons_own() {
    let c = parse(
        "[source]\nurl = \"http://127.0.0.1:8080/token\"\nheaders = { \"Metadata-Flavor\" = \"Google\" }\n\
         [source.fields]\ntoken = \"/access_token\"\nexpires_in = \"/expires_in\"\nexpires_at = \"\"\n",
    )
    .unwrap();
    assert_eq!(c.tokens[0].source.headers["Metadata-Flavor"], "Google");
    let found = said(
        "[source]\nurl = \"http://127.0.0.1:8080/token\"\n\
         headers = { Host = \"evil\", \"Content-Length\" = \"5\", Authorization = \"Bearer x\", \"bad name\" = \"v\", Ok = \"a\\nb\" }\n\
         [source.auth]\ntype = \"bearer\"\ncredential_file = \"/etc/k\"\n",
    );
    for key in ["Host", "Content-Length", "Authorization"] {
        assert!(has(&found, &format!("source.headers.{key}"), "sets itself"), "{key}: {found:?}");
    }
    assert!(has(&found, "source.headers.bad name", "not an HTTP header name"), "{found:?}");
    assert!(has(&found, "source.headers.Ok", "not a valid header value"), "{found:?}");
    // Without [source.auth], an Authorization header is the user's to give (a literal one).
    parse("[source]\nurl = \"http://127.0.0.1:8080/t\"\nheaders = { Authorization = \"Basic Zm9v\" }\n")
        .unwrap();
}

#[test]
fn a_github_app_needs_its_app_installation_and_key() {
    let c = parse(
        "[source]\ntype = \"github_app\"\nclient_id = \"Iv23liABCDEFGH\"\ninstallation_id = 98765432\n\
         private_key_file = \"${CREDENTIALS_DIRECTORY}/github-app.pem\"\nrepositories = [\"infra\"]\n",
    );
    // ${CREDENTIALS_DIRECTORY} unset: named, as for every path.
    assert!(c.is_err());
    let found = said("[source]\ntype = \"github_app\"\n");
    assert!(has(&found, "source.client_id", "client_id (\"Iv23…\") or app_id"), "{found:?}");
    assert!(has(&found, "source.installation_id", "is required"), "{found:?}");
    assert!(has(&found, "source.private_key_file", "is required"), "{found:?}");
    let found = said(
        "[source]\ntype = \"github_app\"\nclient_id = \"Iv1\"\napp_id = 1\ninstallation_id = 2\n\
         private_key_file = \"/k.pem\"\napi_url = \"http://ghe.example.com/api/v3\"\nscope = \"x\"\n",
    );
    assert!(has(&found, "source.app_id", "not both"), "{found:?}");
    assert!(has(&found, "source.api_url", "http"), "{found:?}");
    assert!(has(&found, "source.scope", "type = \"oauth2\""), "{found:?}");
}

#[test]
fn a_token_exchange_needs_one_subject_and_whole_pairs() {
    let exchange = "[source]\ntype = \"oauth2\"\ngrant = \"token_exchange\"\n\
                    token_endpoint = \"https://sts.example.com/token\"\n";
    parse(&format!("{exchange}subject_token_file = \"/var/run/secrets/tokens/mcp\"\n")).unwrap();
    let found = said(exchange);
    assert!(has(&found, "source.subject_token_file", "needs the token to exchange"), "{found:?}");
    let found = said(&format!(
        "{exchange}subject_token_file = \"/t\"\nsubject_token = \"other\"\nactor_token_file = \"/a\"\n\
         subject_token_type = \"jwt\"\nrefresh_token_file = \"/r\"\n"
    ));
    assert!(has(&found, "source.subject_token", "not both"), "{found:?}");
    assert!(has(&found, "source.actor_token_type", "is required with actor_token_file"), "{found:?}");
    assert!(has(&found, "source.subject_token_type", "not a token type URI"), "{found:?}");
    assert!(has(&found, "source.refresh_token_file", "presents the subject token again"), "{found:?}");
    let found = said(
        "[source]\ntype = \"oauth2\"\ngrant = \"client_credentials\"\ntoken_endpoint = \"https://a.example/t\"\n\
         client_id = \"c\"\nclient_auth = \"client_secret_basic\"\nclient_secret_file = \"/s\"\naudience = \"x\"\n",
    );
    assert!(has(&found, "source.audience", "only used with grant = \"token_exchange\""), "{found:?}");
}

fn exchanging(name: &str, subject: &str) -> String {
    format!(
        "[tokens.{name}.source]\ntype = \"oauth2\"\ngrant = \"token_exchange\"\n\
         token_endpoint = \"https://sts.example.com/token\"\nsubject_token = \"{subject}\"\n"
    )
}

#[test]
fn a_subject_token_names_another_token_and_no_chain_loops() {
    let calendar = "[tokens.calendar.source]\nurl = \"https://backend.example.com/t\"\n";
    let c = parse(&format!("{calendar}{}", exchanging("cloud", "calendar"))).unwrap();
    assert_eq!(c.token("cloud").unwrap().source.subject_token.as_deref(), Some("calendar"));

    let found = said(&format!("{calendar}{}", exchanging("cloud", "calender")));
    assert!(has(&found, "tokens.cloud.source.subject_token", "names no token"), "{found:?}");
    assert!(found[0].contains("calendar, cloud"), "{found:?}");

    let found = said(&format!("{}{}{}", exchanging("a", "b"), exchanging("b", "c"), exchanging("c", "a")));
    assert!(has(&found, "tokens.a.source.subject_token", "loops: a → b → c → a"), "{found:?}");
    let found = said(&exchanging("self", "self"));
    assert!(has(&found, "tokens.self.source.subject_token", "loops: self → self"), "{found:?}");
    // A chain into a loop is named where the loop is, once per token in it.
    let found =
        said(&format!("{calendar}{}{}{}", exchanging("a", "b"), exchanging("b", "c"), exchanging("c", "b")));
    assert!(!has(&found, "tokens.a.source.subject_token", "loops"), "{found:?}");
    assert!(has(&found, "tokens.b.source.subject_token", "loops: b → c → b"), "{found:?}");
    let lines: Vec<Option<usize>> =
        problems(&exchanging("self", "self")).into_iter().map(|p| p.line).collect();
    assert_eq!(lines, [Some(5)], "the line of the key");
}

//! `[source] type = "oauth2"` (DESIGN §13) against a real authorization server, oidc-provider:
//! what works so far of issue 19 — the client credentials grant, with every client
//! authentication, the token endpoint found from the issuer's metadata.

mod support;

use support::binary::run_verb;
use support::oauth::Provider;

/// `once` with an oauth2 source described by `keys`, writing the token to a file: (exit ok,
/// the file's content, everything the verb printed).
fn once(p: &Provider, keys: &str) -> (bool, Option<String>, String) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("token");
    let config = dir.path().join("config.toml");
    let text = format!(
        "[source]\ntype = \"oauth2\"\nissuer = \"{}\"\nresource = \"https://mcp.example.com/mcp\"\nscope = \"calendar\"\n{keys}\n\
         [daemon]\nstate_dir = \"{}\"\n\n{}",
        p.issuer,
        dir.path().display(),
        support::file_sink(&file, "raw")
    );
    std::fs::write(&config, text).unwrap();
    let (status, output) = run_verb(&["once", "--config", config.to_str().unwrap()]);
    (status.success(), std::fs::read_to_string(&file).ok(), output)
}

#[test]
fn client_credentials_with_every_client_authentication_publishes_a_token() {
    let p = Provider::start(300);
    let basic = p.secret_file("basic", "basic-secret-0123456789\n");
    let post = p.secret_file("post", "post-secret-0123456789");
    let clients = [
        format!(
            "client_id = \"service-basic\"\nclient_auth = \"client_secret_basic\"\nclient_secret_file = \"{}\"",
            basic.display()
        ),
        format!(
            "client_id = \"service-post\"\nclient_auth = \"client_secret_post\"\nclient_secret_file = \"{}\"",
            post.display()
        ),
        format!(
            "client_id = \"service-rsa\"\nclient_auth = \"private_key_jwt\"\nprivate_key_file = \"{}\"\nkey_id = \"rsa-1\"",
            p.key_file("rsa").display()
        ),
        format!(
            "client_id = \"service-ec\"\nclient_auth = \"private_key_jwt\"\nprivate_key_file = \"{}\"\nkey_id = \"ec-1\"",
            p.key_file("ec").display()
        ),
    ];
    for client in clients {
        let keys = format!("grant = \"client_credentials\"\n{client}\n");
        let (ok, token, output) = once(&p, &keys);
        assert!(ok, "{client}:\n{output}");
        let token = token.expect("the file sink was written");
        assert!(token.len() > 20, "{client}: {token:?}");
        for secret in ["basic-secret-0123456789", "post-secret-0123456789", &token] {
            assert!(!output.contains(secret), "{client}: a secret in the output:\n{output}");
        }
    }
}

#[test]
fn a_refused_client_is_named_by_the_rfc_6749_code_and_nothing_is_published() {
    let p = Provider::start(300);
    let wrong = p.secret_file("wrong", "not-the-secret");
    let keys = format!(
        "grant = \"client_credentials\"\nclient_id = \"service-basic\"\nclient_auth = \"client_secret_basic\"\nclient_secret_file = \"{}\"\n",
        wrong.display()
    );
    let (ok, token, output) = once(&p, &keys);
    assert!(!ok, "{output}");
    assert!(token.is_none(), "a token was published");
    assert!(output.contains("invalid_client"), "{output}");
    assert!(!output.contains("not-the-secret"), "{output}");
}

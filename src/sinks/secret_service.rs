//! `type = "keyring"`, `backend = "secret-service"`: the desktop keyring over D-Bus (GNOME
//! Keyring, KWallet), in the default collection.
//!
//! The item carries `service` and `account` (what `secret-tool lookup service S account A`
//! matches) and `username` (what Python's `keyring.get_password(S, A)` matches), so both read the
//! same item. The item is deleted when the token expires unreplaced.

use std::collections::HashMap;

use secret_service::{EncryptionType, SecretService};

use super::{Applied, SinkError};
use crate::token::TokenState;

pub(crate) struct SecretServiceSink {
    pub service: String,
    pub account: String,
}

fn fail(what: &'static str) -> impl FnOnce(secret_service::Error) -> SinkError {
    move |e| SinkError::Keyring(format!("Secret Service: {what}: {e}"))
}

impl SecretServiceSink {
    fn attributes(&self) -> HashMap<&str, &str> {
        HashMap::from([
            ("service", self.service.as_str()),
            ("account", self.account.as_str()),
            ("username", self.account.as_str()),
        ])
    }

    pub(crate) async fn apply(&self, state: &TokenState) -> Result<Applied, SinkError> {
        if matches!(state, TokenState::Empty) {
            return Ok(Applied::Nothing);
        }
        let service = SecretService::connect(EncryptionType::Dh)
            .await
            .map_err(fail("cannot connect (is a keyring daemon running on this session's D-Bus?)"))?;
        let collection = service.get_default_collection().await.map_err(fail("no default collection"))?;
        if collection.is_locked().await.map_err(fail("cannot query the collection"))? {
            return Err(SinkError::Keyring(
                "Secret Service: the default collection is locked; unlock it (log in to the desktop session, \
                 or start gnome-keyring-daemon with --unlock)"
                    .into(),
            ));
        }
        match state {
            TokenState::Valid(current) => {
                let label = format!("mcp-token-sync: {}/{}", self.service, self.account);
                collection
                    .create_item(
                        &label,
                        self.attributes(),
                        current.token.expose().as_bytes(),
                        true,
                        "text/plain",
                    )
                    .await
                    .map_err(fail("cannot store the token"))?;
                Ok(Applied::Wrote)
            }
            TokenState::Expired { .. } => {
                let items =
                    collection.search_items(self.attributes()).await.map_err(fail("cannot search"))?;
                let found = !items.is_empty();
                for item in items {
                    item.delete().await.map_err(fail("cannot delete the expired token"))?;
                }
                Ok(if found { Applied::Removed } else { Applied::Nothing })
            }
            TokenState::Empty => Ok(Applied::Nothing),
        }
    }
}

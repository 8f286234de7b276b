//! `type = "keyring"`, `backend = "keyutils"`: a `user` key in the Linux kernel keyring, for
//! headless hosts. Another process of the same uid reads it with
//! `keyctl pipe $(keyctl search @u user SERVICE:ACCOUNT)`.
//!
//! Possession decides what a process may do with a key, and other processes of the uid do not
//! possess what the daemon holds. So the key is added to the daemon's session keyring, where the
//! daemon possesses it and may update it in place and set its timeout; given user
//! view/read/search permission, so any process of the uid may find and read it without
//! possessing it; and linked into the user keyring `@u`, where they look for it.
//!
//! The session keyring is looked up without "create": keyrings hang off per-thread credentials,
//! and a thread that asks to create one joins a new anonymous keyring of its own (so do process
//! keyrings created after the thread started), which would scatter the key over the
//! blocking-pool threads. Without "create", a daemon with no session keyring gets the user
//! session keyring `@us`, the same for every thread; under systemd it has a private one
//! (`KeyringMode=private`) that all its threads inherit.

use std::time::SystemTime;

use linux_keyutils::{KeyError, KeyPermissionsBuilder, KeyRing, KeyRingIdentifier, Permission};

use super::{Applied, SinkError};
use crate::token::TokenState;

pub(crate) struct KeyutilsSink {
    /// `SERVICE:ACCOUNT`.
    pub description: String,
}

fn fail(what: &'static str) -> impl FnOnce(KeyError) -> SinkError {
    move |e| SinkError::Keyring(format!("kernel keyring: cannot {what}: {e:?}"))
}

impl KeyutilsSink {
    /// Blocking (system calls).
    pub(crate) fn apply(&self, state: &TokenState) -> Result<Applied, SinkError> {
        // An unreplaced token disappears by itself: its key has the token's expiry as timeout.
        let TokenState::Valid(current) = state else { return Ok(Applied::Nothing) };
        let session = KeyRing::from_special_id(KeyRingIdentifier::Session, false)
            .map_err(fail("open the session keyring"))?;
        let user = KeyRing::from_special_id(KeyRingIdentifier::User, false)
            .map_err(fail("open the user keyring"))?;
        // A key of the same description in this keyring is updated in place: same key id.
        let key = session.add_key(&self.description, current.token.expose()).map_err(fail("add the key"))?;
        let permissions = KeyPermissionsBuilder::builder()
            .posessor(Permission::ALL)
            .user(Permission::VIEW | Permission::READ | Permission::SEARCH)
            .build();
        key.set_perms(permissions).map_err(fail("set the key's permissions"))?;
        let remaining = current.expires_at.duration_since(SystemTime::now()).unwrap_or_default();
        // A timeout of 0 would mean "never"; a token that is due now gets a second.
        key.set_timeout(remaining.as_secs().max(1) as usize).map_err(fail("set the key's timeout"))?;
        user.link_key(key).map_err(fail("link the key into the user keyring"))?;
        Ok(Applied::Wrote)
    }
}

//! A refresh that never loses the chain (DESIGN §13, "Rotation"; RFC 6749 §6 and §10.4, OAuth
//! 2.0 Security BCP §4.14): the store's lock is held from reading the refresh token to storing
//! its successor, so no two holders (daemons, `once`, `login`) present one refresh token; the
//! successor is on disk, fsync'd, before the access token goes anywhere; an access token
//! another holder stored meanwhile is adopted rather than refreshed again (servers that revoke
//! the previous access token at each rotation would otherwise have holders kill each other's).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};
use url::Url;
use zeroize::Zeroizing;

use super::client_auth::ClientAuthentication;
use super::store::{Locked, Stored};
use super::token::{self, Issued, Target, TokenError};
use super::{OAuth2, OAuth2Error};

impl OAuth2 {
    /// An access token by the refresh-token grant, the lock held throughout.
    /// `issuer` as the metadata spells it, for an assertion whose audience is the issuer.
    pub(super) async fn refresh(
        &self,
        http: &reqwest::Client,
        target: &Target<'_>,
        issuer: Option<&str>,
    ) -> Result<Issued, OAuth2Error> {
        let locked = self.store.lock(self.config.timeout).await?;
        let mut stored = locked.read()?;
        self.seed(&locked, &mut stored)?;
        self.show(&stored);
        let ours = self.server();
        if let Some(theirs) = stored.server.as_ref().filter(|theirs| **theirs != ours) {
            // Never present one server's refresh token to another (a changed issuer or endpoint).
            return Err(OAuth2Error::OtherServer { stored: theirs.clone(), ours });
        }
        if let Some(adopted) = self.adopt(&stored) {
            return Ok(adopted);
        }
        let registered = stored.client.as_ref().map(|c| c.client_id.as_str());
        let client = ClientAuthentication::new(&self.config, target.endpoint, issuer, registered);
        let refresh_token = match (&stored.refresh_token, stored.refused) {
            (Some(token), false) => Zeroizing::new(token.clone()),
            (Some(_), true) => return Err(OAuth2Error::NeedsLogin { refused: true }),
            (None, _) => return Err(OAuth2Error::NeedsLogin { refused: false }),
        };
        match token::request(http, target, &client, token::Grant::RefreshToken(&refresh_token)).await {
            Ok(issued) => {
                self.keep(&locked, &mut stored, &issued)?;
                Ok(issued)
            }
            Err(TokenError::Rejected { error, successor }) => {
                // The answer is refused, but the token presented is spent: keep its successor.
                stored.refresh_token = Some(successor.0.to_string());
                stored.refused = false;
                stored.rotated_at = Some(unix(SystemTime::now()));
                locked.write(&stored)?;
                self.show(&stored);
                Err((*error).into())
            }
            Err(refused) if refused.is_invalid_grant() => {
                // Kept, marked: a refused token is evidence, and never presented again.
                stored.refused = true;
                locked.write(&stored)?;
                self.show(&stored);
                Err(OAuth2Error::Refused(refused))
            }
            Err(other) => Err(other.into()),
        }
    }

    /// Stores what the server issued, before anything else sees it: the successor refresh
    /// token if there is one (the old one is spent), and the access token for other holders.
    pub(super) fn keep(
        &self,
        locked: &Locked,
        stored: &mut Stored,
        issued: &Issued,
    ) -> Result<(), OAuth2Error> {
        if let Some(successor) = &issued.refresh_token {
            stored.refresh_token = Some(successor.to_string());
            stored.refused = false;
            stored.rotated_at = Some(unix(SystemTime::now()));
        }
        let expires_at = issued
            .expires_in
            .or(self.config.default_lifetime)
            .and_then(|lifetime| issued.received_at.checked_add(lifetime));
        stored.server = Some(self.server());
        stored.access_token = Some(issued.access_token.to_string());
        stored.access_expires_at = expires_at.map(unix);
        locked.write(stored)?;
        *self.lock_last() = stored.access_expires_at;
        self.show(stored);
        Ok(())
    }

    /// `refresh_token_file` seeds the store when it holds no refresh token, or when the file
    /// changed since it last did; otherwise the stored (maybe rotated) token wins. Only a file
    /// that is the daemon's is read (DESIGN §13): one another user can rewrite would let them
    /// choose whose identity the host uses.
    fn seed(&self, locked: &Locked, stored: &mut Stored) -> Result<(), OAuth2Error> {
        let Some(path) = &self.config.refresh_token_file else { return Ok(()) };
        let bytes = match crate::fsutil::read_own(path) {
            Ok(bytes) => bytes,
            // Gone (a credential directory not mounted this time): a token stored carries on;
            // the file only ever seeds.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && stored.refresh_token.is_some() => {
                return Ok(());
            }
            Err(e) if stored.refresh_token.is_some() => {
                tracing::warn!(
                    "source.refresh_token_file {} is not read ({e}); the stored refresh token carries on",
                    path.display()
                );
                return Ok(());
            }
            Err(e) => {
                return Err(OAuth2Error::Seed(format!("source.refresh_token_file {}: {e}", path.display())));
            }
        };
        let Ok(text) = std::str::from_utf8(&bytes) else {
            return Err(OAuth2Error::Seed(format!(
                "source.refresh_token_file {} is not text",
                path.display()
            )));
        };
        let seed = text.trim();
        if seed.is_empty() && stored.refresh_token.is_some() {
            return Ok(());
        }
        if seed.is_empty() {
            return Err(OAuth2Error::Seed(format!("source.refresh_token_file {} is empty", path.display())));
        }
        let digest = format!("{:x}", Sha256::digest(seed.as_bytes()));
        if stored.refresh_token.is_some() && stored.seed.as_deref() == Some(digest.as_str()) {
            return Ok(());
        }
        stored.refresh_token = Some(seed.to_owned());
        stored.server = Some(self.server());
        stored.refused = false;
        stored.seed = Some(digest);
        stored.rotated_at = Some(unix(SystemTime::now()));
        locked.write(stored)?;
        Ok(())
    }

    /// What the store is bound to: the token endpoint as configured, else the issuer, else the
    /// resource (where the server is found from).
    fn server(&self) -> String {
        let c = &self.config;
        [&c.token_endpoint, &c.issuer, &c.resource]
            .into_iter()
            .flatten()
            .next()
            .map(Url::to_string)
            .unwrap_or_default()
    }

    /// The access token another holder stored, if it is newer than this process's last one
    /// and still valid.
    fn adopt(&self, stored: &Stored) -> Option<Issued> {
        let (token, expires_at) = (stored.access_token.as_ref()?, stored.access_expires_at?);
        let now = SystemTime::now();
        let mut last = self.lock_last();
        if last.is_some_and(|ours| ours >= expires_at) || expires_at <= unix(now) {
            return None;
        }
        *last = Some(expires_at);
        Some(Issued {
            access_token: Zeroizing::new(token.clone()),
            expires_in: Some(Duration::from_secs(expires_at - unix(now))),
            refresh_token: None,
            received_at: now,
        })
    }
}

pub(super) fn unix(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs()
}

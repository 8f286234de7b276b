//! A token exchanged from another token of this daemon (DESIGN §16, `subject_token = "NAME"`):
//! that token's states go into the exchanging source's feed, and each new version of it asks
//! the exchanging token's engine for an exchange at once. The subject is looked up by name in
//! the registry, so it may start after this one, be reloaded, or be replaced.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tracing::debug;

use crate::engine::EngineHandle;
use crate::registry::Registry;
use crate::source::SubjectFeed;
use crate::token::TokenState;

/// Feeds `feed` from its subject token until `cancel`, asking `engine` for an exchange on every
/// new valid version.
pub(super) async fn follow(
    feed: SubjectFeed,
    mut registry: Registry,
    engine: EngineHandle,
    cancel: CancellationToken,
) {
    let SubjectFeed { name, feed } = feed;
    let mut asked_for = None;
    loop {
        let Some(subject) = registry.borrow_and_update().get(&name).cloned() else {
            // Not running (yet): nothing to exchange until it is.
            feed.send_replace(TokenState::Empty);
            tokio::select! {
                changed = registry.changed() => if changed.is_err() { return },
                _ = cancel.cancelled() => return,
            }
            continue;
        };
        let mut states = subject.engine.token();
        loop {
            let state = states.borrow_and_update().clone();
            let version = state.current().map(|current| current.version);
            feed.send_replace(state);
            if version.is_some() && version != asked_for {
                asked_for = version;
                debug!("token {name} has a new version: exchanging it");
                tokio::select! {
                    _ = engine.refresh_now("a new version of the subject token") => {}
                    _ = cancel.cancelled() => return,
                }
            }
            tokio::select! {
                changed = states.changed() => if changed.is_err() {
                    // Its engine stopped: it is leaving, or being replaced.
                    feed.send_replace(TokenState::Empty);
                    tokio::select! {
                        changed = registry.changed() => if changed.is_err() { return },
                        _ = cancel.cancelled() => return,
                    }
                    break;
                },
                changed = registry.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    let now = registry.borrow().get(&name).cloned();
                    if !now.is_some_and(|now| Arc::ptr_eq(&now, &subject)) {
                        break;
                    }
                }
                _ = cancel.cancelled() => return,
            }
        }
    }
}

//! Watches that list again after any failure. kube's watcher resumes a broken watch from its
//! last resourceVersion and says nothing when it is back, so a reader cannot tell "current
//! again" from "still down", and after a long outage it may miss changes until the server
//! says `410 Expired`. Here a failed watch is started over (after [`QuickBackoff`]): its
//! `Init` ... `InitDone` marks exactly when the view is whole and current again, and the
//! reader swaps its state in then, never acting on a half-listed view.

use std::fmt::Debug;

use futures::stream::BoxStream;
use futures::{Stream, StreamExt};
use kube::Resource;
use kube::api::Api;
use kube::runtime::utils::Backoff;
use kube::runtime::watcher;
use serde::de::DeserializeOwned;

use super::backoff::QuickBackoff;

struct State<K> {
    api: Api<K>,
    config: watcher::Config,
    stream: Option<BoxStream<'static, Result<watcher::Event<K>, watcher::Error>>>,
    backoff: QuickBackoff,
    failed: bool,
}

/// The events of `api` as [`watcher`] gives them, started over (from a list) after each
/// error, which is passed on first.
pub fn relisting<K>(
    api: Api<K>,
    config: watcher::Config,
) -> impl Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    let state = State {
        api,
        config,
        stream: None,
        backoff: QuickBackoff::default(),
        failed: false,
    };
    futures::stream::unfold(state, |mut state| async move {
        loop {
            let stream = match &mut state.stream {
                Some(stream) => stream,
                None => {
                    if state.failed {
                        let wait = state.backoff.next().unwrap_or_default();
                        tokio::time::sleep(wait).await;
                    }
                    state
                        .stream
                        .insert(watcher(state.api.clone(), state.config.clone()).boxed())
                }
            };
            match stream.next().await {
                Some(Ok(event)) => {
                    if matches!(event, watcher::Event::InitDone) {
                        state.backoff.reset();
                        state.failed = false;
                    }
                    return Some((Ok(event), state));
                }
                Some(Err(error)) => {
                    state.stream = None;
                    state.failed = true;
                    return Some((Err(error), state));
                }
                // A watcher's stream does not end; if it did, start over.
                None => state.stream = None,
            }
        }
    })
}

use std::time::Duration;

use super::*;

fn is_evicted(slot: &Slot) -> bool {
    slot.entry.closed.load(Ordering::SeqCst)
}

fn is_answering(slot: &Slot) -> bool {
    slot.entry.answering.load(Ordering::Relaxed)
}

async fn answering(connections: &Arc<Connections>) -> Slot {
    let slot = connections.admit(None).await.slot;
    slot.answering();
    slot
}

#[tokio::test]
async fn free_slots_are_handed_out_without_closing_anyone() {
    let connections = Connections::new(2);
    let a = connections.admit(None).await;
    let b = connections.admit(None).await;
    assert!(!a.made_room && !b.made_room);
    assert!(!is_evicted(&a.slot) && !is_evicted(&b.slot));
}

#[tokio::test]
async fn when_full_the_connection_idle_longest_gives_way() {
    let connections = Connections::new(3);
    let busy = answering(&connections).await;
    let later = answering(&connections).await;
    let earlier = answering(&connections).await;
    earlier.answered();
    later.answered();

    let newcomer = connections.admit(None).await;
    assert!(newcomer.made_room);
    assert!(is_evicted(&earlier) && !is_evicted(&later), "admitted later, but idle longer");
    drop(earlier);
    newcomer.slot.answering();

    let _last = connections.admit(None).await;
    assert!(is_evicted(&later) && !is_evicted(&busy));
}

#[tokio::test]
async fn a_silent_peer_is_idle_since_it_came_and_newcomers_go_last() {
    let connections = Connections::new(3);
    let hoarder = connections.admit(None).await.slot;
    let kept_alive = answering(&connections).await;
    kept_alive.answered();
    let newcomer = connections.admit(None).await.slot;
    let _another = connections.admit(None).await;
    assert!(is_evicted(&hoarder) && !is_evicted(&kept_alive) && !is_evicted(&newcomer));
    drop(hoarder);
    let _more = connections.admit(None).await;
    assert!(is_evicted(&kept_alive) && !is_evicted(&newcomer));
}

#[tokio::test]
async fn a_peer_that_does_not_read_its_answers_gives_way_mid_answer() {
    let connections = Connections::new(2);
    let idle = answering(&connections).await;
    idle.answered();
    let stalled = answering(&connections).await;
    stalled.set_stalled(true);
    stalled.set_stalled(false);
    stalled.set_stalled(true);
    let _newcomer = connections.admit(None).await;
    assert!(is_evicted(&idle) && !is_evicted(&stalled), "idle since before the stall");
    let _another = connections.admit(None).await;
    assert!(is_evicted(&stalled));
}

#[tokio::test]
async fn a_sized_body_keeps_its_connection_answering_a_watch_stream_does_not() {
    let connections = Connections::new(2);
    let slot = Arc::new(answering(&connections).await);
    let sized = Tracked::new(http_body_util::Full::new(bytes::Bytes::from_static(b"t")), slot.clone(), true);
    assert!(is_answering(&slot));
    drop(sized);
    assert!(!is_answering(&slot));
    slot.answering();
    let stream = http_body_util::StreamBody::new(futures_util::stream::pending::<
        Result<Frame<bytes::Bytes>, std::convert::Infallible>,
    >());
    let watching = Tracked::new(stream, slot.clone(), true);
    assert!(!is_answering(&slot));
    drop(watching);
    slot.answering();
    let proxied = http_body_util::StreamBody::new(futures_util::stream::pending::<
        Result<Frame<bytes::Bytes>, std::convert::Infallible>,
    >());
    let streaming = Tracked::new(proxied, slot.clone(), false);
    assert!(is_answering(&slot), "a proxied stream is a request in progress");
    drop(streaming);
    assert!(!is_answering(&slot));
}

#[tokio::test(start_paused = true)]
async fn when_every_connection_is_answering_a_newcomer_waits_for_one_to_give_way() {
    let connections = Connections::new(2);
    let busy = answering(&connections).await;
    let _also_busy = answering(&connections).await;
    let waiting = tokio::spawn({
        let connections = connections.clone();
        async move { connections.admit(None).await.made_room }
    });
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert!(!waiting.is_finished(), "nobody may be closed in the middle of a request");
    busy.set_stalled(true);
    assert!(waiting.await.unwrap(), "the connection whose peer stopped reading gives way");
    assert!(is_evicted(&busy));
}

#[tokio::test(start_paused = true)]
async fn a_listener_settles_once_after_its_last_connection_and_not_while_idle() {
    let connections = Connections::new(4);
    let quiet = Duration::from_secs(2);
    let never_served = tokio::time::timeout(Duration::from_secs(60), connections.settled(quiet)).await;
    assert!(never_served.is_err(), "an idle listener settled: it would wake for nothing");

    let first = connections.admit(None).await.slot;
    let second = connections.admit(None).await.slot;
    let settled = tokio::spawn({
        let connections = connections.clone();
        async move { connections.settled(quiet).await }
    });
    drop(first);
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert!(!settled.is_finished(), "settled with a connection still open");
    let closed = tokio::time::Instant::now();
    drop(second);
    settled.await.unwrap();
    assert_eq!(closed.elapsed(), quiet);
    let again = tokio::time::timeout(Duration::from_secs(60), connections.settled(quiet)).await;
    assert!(again.is_err(), "settled twice for one burst");
}

#[tokio::test(start_paused = true)]
async fn a_closed_connection_frees_its_slot() {
    let connections = Connections::new(1);
    let busy = answering(&connections).await;
    let waiting = tokio::spawn({
        let connections = connections.clone();
        async move { connections.admit(None).await.made_room }
    });
    tokio::time::sleep(Duration::from_secs(1)).await;
    drop(busy);
    assert!(!waiting.await.unwrap());
}

#[tokio::test]
async fn closing_a_connection_aborts_the_task_serving_it_known_before_or_after() {
    let serving = || tokio::spawn(std::future::pending::<()>());
    let aborted = async |task: tokio::task::JoinHandle<()>| {
        let ended = tokio::time::timeout(Duration::from_secs(5), task).await;
        ended.expect("the task ended").unwrap_err().is_cancelled()
    };
    let connections = Connections::new(1);
    let idle = connections.admit(None).await.slot;
    let task = serving();
    idle.served_by(task.abort_handle());
    let newcomer = connections.admit(None).await;
    assert!(newcomer.made_room);
    assert!(aborted(task).await, "closed for room");

    // Closed for room before its task was known: the task is aborted as it is handed over.
    let newer = connections.admit(None).await.slot;
    let late = serving();
    newcomer.slot.served_by(late.abort_handle());
    assert!(aborted(late).await);

    // The listener stops: every connection ends.
    let stopping = CloseAll(connections.clone());
    let task = serving();
    newer.served_by(task.abort_handle());
    drop(stopping);
    assert!(aborted(task).await, "closed as the listener stopped");
}

/// Found by attacking the daemon: one user parked 401 reports on every slot of a daemon-wide
/// socket, and everyone else waited for that user's token to refresh.
#[tokio::test]
async fn a_user_holding_more_than_half_in_requests_gives_way_to_another_user() {
    let connections = Connections::new(4);
    let mut hogged = Vec::new();
    for _ in 0..3 {
        let slot = connections.admit(Some(1000)).await.slot;
        slot.answering();
        hogged.push(slot);
    }
    let other = connections.admit(Some(1001)).await.slot;
    other.answering();
    // Full, all in a request: the hog's own newcomer waits, another user's closes its oldest.
    assert!(connections.try_admit(Some(1000)).is_none());
    let admitted = connections.try_admit(Some(0)).expect("room made from the hog");
    assert!(admitted.made_room && is_evicted(&hogged[0]) && !is_evicted(&other));
    admitted.slot.answering();
    // Now at half: no longer a hog.
    assert!(connections.try_admit(Some(1002)).is_none());
}

//! The network service on its own: two services on 127.0.0.1 with ephemeral ports and a
//! channel as their event sink (no actors, no models, no ledger). A request travels one way and
//! its answer back; a gossip message published by one reaches the other's sink.

use std::sync::Arc;
use std::time::Duration;

use brainmesh::network::link::LinkModel;
use brainmesh::network::{command_channel, ChannelEvents, NetEvent, NetworkService, NetworkSettings};
use brainmesh_actors::{Metrics, NetworkSender, Proto};
use libp2p::identity::Keypair;
use tokio::sync::mpsc::UnboundedReceiver;

struct Peer {
    net: NetworkSender,
    events: UnboundedReceiver<NetEvent>,
    peer_id: String,
    addr: String,
}

async fn start(bootstrap: Vec<String>) -> Peer {
    start_on("/ip4/127.0.0.1/tcp/0", bootstrap).await
}

async fn start_on(listen: &str, bootstrap: Vec<String>) -> Peer {
    start_with(listen, bootstrap, None).await
}

async fn start_with(listen: &str, bootstrap: Vec<String>, link: Option<LinkModel>) -> Peer {
    let key = Keypair::generate_ed25519();
    let peer_id = key.public().to_peer_id().to_string();
    let (net, commands) = command_channel();
    let (sink, events) = ChannelEvents::new();
    let settings = NetworkSettings {
        listen: vec![listen.into()],
        bootstrap,
        gossip_heartbeat: Duration::from_millis(100),
        max_peers: 8,
        link,
    };
    let (service, addrs) = NetworkService::new(key, settings, commands, Arc::new(sink), Metrics::new())
        .await
        .expect("network service starts without a node");
    let addr = format!("{}/p2p/{peer_id}", addrs.first().expect("a listen address"));
    tokio::spawn(service.run());
    Peer { net, events, peer_id, addr }
}

/// Waits for the first event `pick` accepts, answering requests and gossip it passes over.
async fn next<T>(events: &mut UnboundedReceiver<NetEvent>, mut pick: impl FnMut(NetEvent) -> Option<T>) -> T {
    tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let ev = events.recv().await.expect("the service is running");
            if let Some(t) = pick(ev) {
                return t;
            }
        }
    })
    .await
    .expect("the event arrives within 30 s")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_network_services_exchange_a_request_and_a_gossip_message_without_actors() {
    let a = start(vec![]).await;
    let b = start(vec![a.addr.clone()]).await;
    exchange(a, b).await;
}

/// The same over libp2p's in-memory transport: peers of one process, no sockets (what a
/// simulator runs hundreds of).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_network_services_talk_over_the_in_memory_transport() {
    let a = start_on("/memory/0", vec![]).await;
    assert!(a.addr.starts_with("/memory/"), "{}", a.addr);
    let b = start_on("/memory/0", vec![a.addr.clone()]).await;
    exchange(a, b).await;
}

/// An emulated link (the simulator's network model) on both peers: a request's round trip takes
/// at least the two one-way latencies, and with total loss no gossip message is delivered while
/// requests still are.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_emulated_link_delays_requests_both_ways_and_loses_gossip() {
    let link = LinkModel::new(Duration::from_millis(150), Duration::ZERO, 1.0, 0);
    let mut a = start_with("/memory/0", vec![], link).await;
    let b = start_with("/memory/0", vec![a.addr.clone()], link).await;
    let topic = "brainmesh/test/lossy".to_string();
    a.net.subscribe(topic.clone()).await.expect("subscribe");
    b.net.subscribe(topic.clone()).await.expect("subscribe");
    let (net, to) = (b.net.clone(), a.peer_id.clone());
    let t0 = std::time::Instant::now();
    let asked = tokio::spawn(async move { net.request_on(Proto::Sync, to, b"ping?".to_vec()).await });
    // A answers every request; every gossip message reaching its sink is a failure.
    let publisher = b.net.clone();
    let t = topic.clone();
    let pumping = tokio::spawn(async move {
        for i in 0u32..20 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            publisher.publish(t.clone(), format!("lost #{i}").into_bytes());
        }
    });
    let answered = tokio::spawn(async move {
        loop {
            match a.events.recv().await {
                Some(NetEvent::Request { reply, .. }) => {
                    let _ = reply.send(b"pong!".to_vec());
                }
                Some(NetEvent::Gossip { .. }) => return Err("a gossip message crossed a link losing everything"),
                Some(_) => {}
                None => return Ok(()),
            }
        }
    });
    let answer = asked.await.expect("request task").expect("the response comes back");
    assert_eq!(answer, b"pong!");
    assert!(t0.elapsed() >= Duration::from_millis(300), "two one-way delays of 150 ms: {:?}", t0.elapsed());
    pumping.await.expect("publisher");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!answered.is_finished(), "{:?}", answered.await);
    answered.abort();
}

/// B (bootstrapped to A) and A: a connection, a request and its answer, a gossip message.
async fn exchange(mut a: Peer, mut b: Peer) {
    // B dials A through its bootstrap list; both sinks hear of the connection.
    let a_id = a.peer_id.clone();
    next(&mut b.events, |e| matches!(e, NetEvent::Connected(ref p) if *p == a_id).then_some(())).await;
    let b_id = b.peer_id.clone();
    next(&mut a.events, |e| matches!(e, NetEvent::Connected(ref p) if *p == b_id).then_some(())).await;

    // A request from B to A on the sync protocol; A's reader answers it.
    let net = b.net.clone();
    let to = a.peer_id.clone();
    let asked = tokio::spawn(async move { net.request_on(Proto::Sync, to, b"ping?".to_vec()).await });
    let (proto, from, data) = next(&mut a.events, |e| match e {
        NetEvent::Request { proto, peer, data, reply } => {
            let _ = reply.send(b"pong!".to_vec());
            Some((proto, peer, data))
        }
        _ => None,
    })
    .await;
    assert_eq!((proto, from.as_str(), data.as_slice()), (Proto::Sync, b.peer_id.as_str(), &b"ping?"[..]));
    let answer = asked.await.expect("request task").expect("the response comes back");
    assert_eq!(answer, b"pong!");

    // Gossip: both subscribe; B publishes until A's sink sees the message (the gossipsub mesh
    // forms on its heartbeat, and a publish before that has nobody to go to).
    let topic = "brainmesh/test/network-only".to_string();
    a.net.subscribe(topic.clone()).await.expect("subscribe");
    b.net.subscribe(topic.clone()).await.expect("subscribe");
    let publisher = b.net.clone();
    let t = topic.clone();
    let pumping = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(200));
        for i in 0u32.. {
            tick.tick().await;
            publisher.publish(t.clone(), format!("hello #{i}").into_bytes());
        }
    });
    let (got_topic, source, data) = next(&mut a.events, |e| match e {
        NetEvent::Gossip { topic, source, data, verdict } => {
            let _ = verdict.send(Ok(()));
            Some((topic, source, data))
        }
        NetEvent::Request { reply, .. } => {
            let _ = reply.send(Vec::new());
            None
        }
        _ => None,
    })
    .await;
    pumping.abort();
    assert_eq!(got_topic, topic);
    assert_eq!(source.as_deref(), Some(b.peer_id.as_str()), "gossipsub's signed author is B");
    assert!(String::from_utf8_lossy(&data).starts_with("hello #"), "{data:?}");
}

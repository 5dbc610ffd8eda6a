//! The one task that owns the `Swarm`: a `select!` over swarm events, commands from the actors
//! ([`NetworkMessage`]) and answers coming back from actors (validation results, responses).
//! The loop never awaits an actor: each inbound message is handed to a small spawned task.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use futures::StreamExt;
use libp2p::multiaddr::Protocol;
use libp2p::swarm::SwarmEvent;
use libp2p::{
    gossipsub, identify, identity::Keypair, kad, noise, ping, request_response, tcp, yamux, Multiaddr, PeerId, Swarm,
};
use tokio::sync::{mpsc, oneshot};

use brainmesh_actors::protocols::{Reject, MAX_MESSAGE_BYTES};
use std::sync::Arc;

use brainmesh_actors::{Metrics, NetworkError, NetworkEvents, NetworkInfo, NetworkMessage, NetworkSender, Proto};

use super::behaviour::{Behaviour, BehaviourEvent};

#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("cannot build the transport: {0}")]
    Transport(String),
    #[error("bad multiaddr `{addr}`: {reason}")]
    BadAddr { addr: String, reason: String },
    #[error("cannot listen on {addr}: {reason}")]
    Listen { addr: String, reason: String },
}

pub struct NetworkSettings {
    pub listen: Vec<String>,
    pub bootstrap: Vec<String>,
    pub gossip_heartbeat: Duration,
    pub max_peers: usize,
    /// An emulated inbound link (latency, jitter, loss, bandwidth); None: as fast as the socket.
    pub link: Option<super::link::LinkModel>,
}

/// Where a request's answer goes (the caller awaits it).
type ReplyTo = oneshot::Sender<Result<Vec<u8>, NetworkError>>;

/// Answers from the small per-message tasks back to the loop.
enum Internal {
    Validation { id: gossipsub::MessageId, source: PeerId, accept: bool },
    Respond { proto: Proto, channel: request_response::ResponseChannel<Vec<u8>>, data: Vec<u8> },
}

pub struct NetworkService {
    swarm: Swarm<Behaviour>,
    commands: mpsc::Receiver<NetworkMessage>,
    events: Arc<dyn NetworkEvents>,
    metrics: Metrics,
    internal_tx: mpsc::Sender<Internal>,
    internal_rx: mpsc::Receiver<Internal>,
    pending: HashMap<(Proto, request_response::OutboundRequestId), ReplyTo>,
    pending_dials: HashMap<libp2p::swarm::ConnectionId, oneshot::Sender<Result<(), NetworkError>>>,
    bootstrap: Vec<Multiaddr>,
    max_peers: usize,
    subscribed: HashSet<String>,
    link: Option<super::link::LinkModel>,
}

/// The sender half for commands, created before the service so actors can hold it.
pub fn command_channel() -> (NetworkSender, mpsc::Receiver<NetworkMessage>) {
    NetworkSender::channel(1024)
}

impl NetworkService {
    /// Builds the swarm and starts listening; returns the service and its bound addresses.
    pub async fn new(
        key: Keypair,
        settings: NetworkSettings,
        commands: mpsc::Receiver<NetworkMessage>,
        events: Arc<dyn NetworkEvents>,
        metrics: Metrics,
    ) -> Result<(Self, Vec<Multiaddr>), NetError> {
        let (heartbeat, max_peers) = (settings.gossip_heartbeat, settings.max_peers);
        let builder = libp2p::SwarmBuilder::with_existing_identity(key)
            .with_tokio()
            .with_tcp(tcp::Config::default().nodelay(true), noise::Config::new, yamux::Config::default)
            .map_err(|e| NetError::Transport(e.to_string()))?;
        #[cfg(feature = "quic")]
        let builder = builder.with_quic();
        // In-process peers (`/memory/N` addresses): many nodes in one process without sockets,
        // for a simulator; the same noise + yamux stack as TCP, unreachable from outside.
        let builder = builder
            .with_other_transport(|key| {
                use libp2p::core::{transport::MemoryTransport, upgrade::Version};
                use libp2p::Transport;
                let noise =
                    noise::Config::new(key).map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>)?;
                Ok::<_, Box<dyn std::error::Error + Send + Sync>>(
                    MemoryTransport::default()
                        .upgrade(Version::V1)
                        .authenticate(noise)
                        .multiplex(yamux::Config::default()),
                )
            })
            .map_err(|e| NetError::Transport(e.to_string()))?;
        let mut swarm = builder
            .with_behaviour(|key| Behaviour::new(key, heartbeat, max_peers))
            .map_err(|e| NetError::Transport(e.to_string()))?
            .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(120)))
            .build();

        let mut n_listen = 0;
        for a in &settings.listen {
            let addr: Multiaddr = a
                .parse()
                .map_err(|e: libp2p::multiaddr::Error| NetError::BadAddr { addr: a.clone(), reason: e.to_string() })?;
            swarm.listen_on(addr).map_err(|e| NetError::Listen { addr: a.clone(), reason: e.to_string() })?;
            n_listen += 1;
        }
        // Wait until every listener reports its address (ports may be ephemeral).
        let mut addrs = Vec::new();
        let deadline = tokio::time::sleep(Duration::from_secs(10));
        tokio::pin!(deadline);
        while addrs.len() < n_listen {
            tokio::select! {
                ev = swarm.select_next_some() => match ev {
                    SwarmEvent::NewListenAddr { address, .. } => addrs.push(address),
                    SwarmEvent::ListenerError { error, .. } => return Err(NetError::Listen { addr: "?".into(), reason: error.to_string() }),
                    _ => {}
                },
                _ = &mut deadline => break,
            }
        }
        let bootstrap = settings
            .bootstrap
            .iter()
            .map(|a| a.parse::<Multiaddr>().map_err(|e| NetError::BadAddr { addr: a.clone(), reason: e.to_string() }))
            .collect::<Result<Vec<_>, _>>()?;
        let (internal_tx, internal_rx) = mpsc::channel(4096);
        Ok((
            Self {
                swarm,
                commands,
                events,
                metrics,
                internal_tx,
                internal_rx,
                pending: HashMap::new(),
                pending_dials: HashMap::new(),
                bootstrap,
                max_peers: settings.max_peers,
                link: settings.link,
                subscribed: HashSet::new(),
            },
            addrs,
        ))
    }

    pub fn local_peer_id(&self) -> PeerId {
        *self.swarm.local_peer_id()
    }

    /// Runs until every command sender is dropped.
    pub async fn run(mut self) {
        for addr in self.bootstrap.clone() {
            if let Some(Protocol::P2p(peer)) = addr.iter().last() {
                self.swarm.behaviour_mut().kad.add_address(&peer, addr.clone());
            }
            if let Err(e) = self.swarm.dial(addr.clone()) {
                tracing::warn!(%addr, "cannot dial bootstrap peer: {e}");
            }
        }
        let mut kad_timer = tokio::time::interval(Duration::from_secs(30));
        loop {
            tokio::select! {
                ev = self.swarm.select_next_some() => self.on_swarm_event(ev),
                cmd = self.commands.recv() => match cmd {
                    Some(cmd) => self.on_command(cmd),
                    None => break,
                },
                Some(int) = self.internal_rx.recv() => self.on_internal(int),
                _ = kad_timer.tick() => {
                    if self.swarm.connected_peers().next().is_some() {
                        let _ = self.swarm.behaviour_mut().kad.bootstrap();
                    }
                }
            }
        }
        tracing::info!("network task stopped");
    }

    fn on_command(&mut self, cmd: NetworkMessage) {
        match cmd {
            NetworkMessage::Publish { topic, data } => {
                self.subscribe(&topic);
                let t = gossipsub::IdentTopic::new(topic.clone());
                match self.swarm.behaviour_mut().gossipsub.publish(t, data) {
                    Ok(_) => {}
                    Err(gossipsub::PublishError::NoPeersSubscribedToTopic) => {
                        tracing::debug!(%topic, "publish: no peers subscribed yet")
                    }
                    Err(gossipsub::PublishError::Duplicate) => tracing::debug!(%topic, "publish: duplicate"),
                    Err(e) => tracing::warn!(%topic, "publish failed: {e}"),
                }
            }
            NetworkMessage::Subscribe { topic } => self.subscribe(&topic),
            NetworkMessage::Request { proto, peer, data, reply } => match peer.parse::<PeerId>() {
                Ok(p) => {
                    let b = self.swarm.behaviour_mut();
                    let id = match proto {
                        Proto::Sync => b.sync.send_request(&p, data),
                        Proto::Task => b.task.send_request(&p, data),
                        Proto::Fhe => b.fhe.send_request(&p, data),
                        Proto::Audit => b.audit.send_request(&p, data),
                    };
                    self.pending.insert((proto, id), reply);
                }
                Err(_) => {
                    let _ = reply.send(Err(NetworkError::BadPeerId(peer)));
                }
            },
            NetworkMessage::Info { reply } => {
                let _ = reply.send(NetworkInfo {
                    peer_id: self.swarm.local_peer_id().to_string(),
                    listen_addrs: self.swarm.listeners().map(|a| a.to_string()).collect(),
                    connected_peers: self.swarm.connected_peers().map(|p| p.to_string()).collect(),
                });
            }
            NetworkMessage::Block { peer, blocked } => match peer.parse::<PeerId>() {
                Ok(p) if blocked => {
                    self.swarm.behaviour_mut().blocked.block_peer(p);
                }
                Ok(p) => {
                    self.swarm.behaviour_mut().blocked.unblock_peer(p);
                }
                Err(_) => tracing::warn!(%peer, "block: not a peer id"),
            },
            NetworkMessage::Dial { addr, reply } => match addr.parse::<Multiaddr>() {
                Ok(a) => {
                    let opts = libp2p::swarm::dial_opts::DialOpts::from(a);
                    let cid = opts.connection_id();
                    match self.swarm.dial(opts) {
                        Ok(()) => {
                            self.pending_dials.insert(cid, reply);
                        }
                        Err(e) => {
                            let _ = reply.send(Err(NetworkError::RequestFailed { peer: addr, reason: e.to_string() }));
                        }
                    }
                }
                Err(e) => {
                    let _ = reply.send(Err(NetworkError::RequestFailed { peer: addr, reason: e.to_string() }));
                }
            },
        }
    }

    fn subscribe(&mut self, topic: &str) {
        if self.subscribed.insert(topic.to_string()) {
            if let Err(e) = self.swarm.behaviour_mut().gossipsub.subscribe(&gossipsub::IdentTopic::new(topic)) {
                tracing::warn!(%topic, "subscribe failed: {e}");
            }
        }
    }

    fn on_internal(&mut self, int: Internal) {
        match int {
            Internal::Validation { id, source, accept } => {
                let acc =
                    if accept { gossipsub::MessageAcceptance::Accept } else { gossipsub::MessageAcceptance::Reject };
                self.swarm.behaviour_mut().gossipsub.report_message_validation_result(&id, &source, acc);
            }
            Internal::Respond { proto, channel, data } => {
                let b = self.swarm.behaviour_mut();
                let sent = match proto {
                    Proto::Sync => b.sync.send_response(channel, data),
                    Proto::Task => b.task.send_response(channel, data),
                    Proto::Fhe => b.fhe.send_response(channel, data),
                    Proto::Audit => b.audit.send_response(channel, data),
                };
                if sent.is_err() {
                    tracing::debug!("response dropped: the requester went away");
                }
            }
        }
    }

    fn on_swarm_event(&mut self, ev: SwarmEvent<BehaviourEvent>) {
        match ev {
            SwarmEvent::Behaviour(BehaviourEvent::Gossipsub(gossipsub::Event::Message {
                propagation_source,
                message_id,
                message,
            })) => {
                let topic = message.topic.as_str().to_string();
                if message.data.len() > MAX_MESSAGE_BYTES {
                    self.metrics.reject(Reject::Oversized);
                    self.swarm.behaviour_mut().gossipsub.report_message_validation_result(
                        &message_id,
                        &propagation_source,
                        gossipsub::MessageAcceptance::Reject,
                    );
                    return;
                }
                let delay = match self.link {
                    Some(l) if l.sample_lost() => {
                        // Lost on the emulated link: neither delivered nor forwarded.
                        self.metrics.task_event("link_lost");
                        self.swarm.behaviour_mut().gossipsub.report_message_validation_result(
                            &message_id,
                            &propagation_source,
                            gossipsub::MessageAcceptance::Ignore,
                        );
                        return;
                    }
                    Some(l) => l.sample_delay(message.data.len()),
                    None => Duration::ZERO,
                };
                let fut = self.events.gossip(
                    topic,
                    message.source.map(|p| p.to_string().into()),
                    propagation_source.to_string().into(),
                    message.data,
                );
                let tx = self.internal_tx.clone();
                tokio::spawn(async move {
                    if !delay.is_zero() {
                        tokio::time::sleep(delay).await;
                    }
                    let accept = fut.await.is_ok();
                    let _ = tx.send(Internal::Validation { id: message_id, source: propagation_source, accept }).await;
                });
            }
            SwarmEvent::Behaviour(BehaviourEvent::Sync(ev)) => self.on_request_response(Proto::Sync, ev),
            SwarmEvent::Behaviour(BehaviourEvent::Task(ev)) => self.on_request_response(Proto::Task, ev),
            SwarmEvent::Behaviour(BehaviourEvent::Fhe(ev)) => self.on_request_response(Proto::Fhe, ev),
            SwarmEvent::Behaviour(BehaviourEvent::Audit(ev)) => self.on_request_response(Proto::Audit, ev),
            SwarmEvent::Behaviour(BehaviourEvent::Identify(identify::Event::Received { peer_id, info, .. })) => {
                for addr in info.listen_addrs {
                    if is_dialable(&addr) {
                        self.swarm.behaviour_mut().kad.add_address(&peer_id, addr.clone());
                        self.swarm.add_peer_address(peer_id, addr);
                    }
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Kad(kad::Event::RoutingUpdated { peer, is_new_peer, .. })) => {
                let connected = self.swarm.connected_peers().count();
                if is_new_peer && !self.swarm.is_connected(&peer) && connected < self.max_peers {
                    let _ = self.swarm.dial(peer);
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Ping(ping::Event { peer, result: Ok(rtt), .. })) => {
                self.events.ping(peer.to_string().into(), rtt.as_micros() as u64);
            }
            SwarmEvent::ConnectionEstablished { peer_id, num_established, endpoint, connection_id, .. } => {
                if let Some(reply) = self.pending_dials.remove(&connection_id) {
                    let _ = reply.send(Ok(()));
                }
                if endpoint.is_dialer() {
                    let addr = endpoint.get_remote_address().clone();
                    self.swarm.behaviour_mut().kad.add_address(&peer_id, addr);
                }
                if num_established.get() == 1 {
                    self.metrics.connected_peers.set(self.swarm.connected_peers().count() as i64);
                    self.events.peer_connected(peer_id.to_string().into());
                    tracing::debug!(peer = %peer_id, "connected");
                    // The first connection (usually a bootstrap peer): look the mesh up now
                    // rather than at the next 30 s tick, so peers named in the roster can be
                    // dialled by id (a client reaching a miner it only knows from the roster).
                    if self.swarm.connected_peers().count() == 1 {
                        let _ = self.swarm.behaviour_mut().kad.bootstrap();
                    }
                }
            }
            SwarmEvent::ConnectionClosed { peer_id, num_established: 0, .. } => {
                self.metrics.connected_peers.set(self.swarm.connected_peers().count() as i64);
                self.events.peer_disconnected(peer_id.to_string().into());
                tracing::debug!(peer = %peer_id, "disconnected");
            }
            SwarmEvent::OutgoingConnectionError { connection_id, peer_id, error, .. } => {
                if let Some(reply) = self.pending_dials.remove(&connection_id) {
                    let _ = reply.send(Err(NetworkError::RequestFailed {
                        peer: peer_id.map(|p| p.to_string()).unwrap_or_default(),
                        reason: error.to_string(),
                    }));
                }
                tracing::debug!(peer = ?peer_id, "dial failed: {error}");
            }
            SwarmEvent::NewListenAddr { address, .. } => tracing::info!(%address, "listening"),
            _ => {}
        }
    }
}

impl NetworkService {
    fn on_request_response(&mut self, proto: Proto, ev: request_response::Event<Vec<u8>, Vec<u8>>) {
        match ev {
            request_response::Event::Message { peer, message, .. } => match message {
                request_response::Message::Request { request, channel, .. } => {
                    let delay = self.link.map(|l| l.sample_delay(request.len())).unwrap_or_default();
                    let fut = self.events.request(proto, peer.to_string().into(), request);
                    let tx = self.internal_tx.clone();
                    tokio::spawn(async move {
                        if !delay.is_zero() {
                            tokio::time::sleep(delay).await;
                        }
                        let data = fut.await;
                        let _ = tx.send(Internal::Respond { proto, channel, data }).await;
                    });
                }
                request_response::Message::Response { request_id, response } => {
                    if let Some(reply) = self.pending.remove(&(proto, request_id)) {
                        match self.link {
                            Some(l) => {
                                let delay = l.sample_delay(response.len());
                                tokio::spawn(async move {
                                    tokio::time::sleep(delay).await;
                                    let _ = reply.send(Ok(response));
                                });
                            }
                            None => {
                                let _ = reply.send(Ok(response));
                            }
                        }
                    }
                }
            },
            request_response::Event::OutboundFailure { peer, request_id, error, .. } => {
                if let Some(reply) = self.pending.remove(&(proto, request_id)) {
                    let _ = reply
                        .send(Err(NetworkError::RequestFailed { peer: peer.to_string(), reason: error.to_string() }));
                }
            }
            request_response::Event::InboundFailure { peer, error, .. } => {
                if let request_response::InboundFailure::Io(e) = &error {
                    if e.kind() == std::io::ErrorKind::InvalidData {
                        self.metrics.reject(Reject::Oversized);
                    }
                }
                tracing::debug!(%peer, "inbound request failed: {error}");
            }
            request_response::Event::ResponseSent { .. } => {}
        }
    }
}

/// Addresses worth handing to Kademlia: not unspecified (0.0.0.0) ones.
fn is_dialable(addr: &Multiaddr) -> bool {
    !addr.iter().any(|p| {
        matches!(p, Protocol::Ip4(ip) if ip.is_unspecified()) || matches!(p, Protocol::Ip6(ip) if ip.is_unspecified())
    })
}

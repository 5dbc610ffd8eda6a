//! The composed libp2p behaviour of a brainmesh peer.

use std::time::Duration;

use libp2p::{
    allow_block_list, connection_limits, gossipsub, identify, identity::Keypair, kad, ping, request_response,
    StreamProtocol,
};

use brainmesh_actors::Proto;

use super::codec::{protocol_id, BytesCodec};

/// Gossipsub's transmit limit: above our application limit so oversized messages reach the
/// application, are counted and rejected there (and never forwarded).
pub const GOSSIP_MAX_TRANSMIT: usize = 1024 * 1024;

/// Connections a peer may hold to us at once (a dial race can open two; more is abuse).
pub const MAX_CONNECTIONS_PER_PEER: u32 = 4;
/// Inbound connections still in their handshake at once.
pub const MAX_PENDING_INCOMING: u32 = 64;

#[derive(libp2p::swarm::NetworkBehaviour)]
pub struct Behaviour {
    /// Peers this node refuses to talk to (existing connections close; dials both ways fail):
    /// partitions in the simulator, an operator's block list.
    pub blocked: allow_block_list::Behaviour<allow_block_list::BlockedPeers>,
    /// Bounds on open and pending connections (inbound connections were unbounded before).
    pub limits: connection_limits::Behaviour,
    pub gossipsub: gossipsub::Behaviour,
    pub kad: kad::Behaviour<kad::store::MemoryStore>,
    pub identify: identify::Behaviour,
    pub ping: ping::Behaviour,
    pub sync: request_response::Behaviour<BytesCodec>,
    pub task: request_response::Behaviour<BytesCodec>,
    pub fhe: request_response::Behaviour<BytesCodec>,
    /// `/brainmesh/audit/1`: validators fetch transcripts from miners.
    pub audit: request_response::Behaviour<BytesCodec>,
}

impl Behaviour {
    /// `max_peers` bounds established inbound connections (and Kademlia's dials, in the service).
    pub fn new(
        key: &Keypair,
        gossip_heartbeat: Duration,
        max_peers: usize,
    ) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        let peer_id = key.public().to_peer_id();
        let gossip_cfg = gossipsub::ConfigBuilder::default()
            .heartbeat_interval(gossip_heartbeat)
            .validation_mode(gossipsub::ValidationMode::Strict)
            .validate_messages()
            .max_transmit_size(GOSSIP_MAX_TRANSMIT)
            .message_id_fn(message_id)
            .build()
            .map_err(|e| format!("gossipsub config: {e}"))?;
        let gossipsub = gossipsub::Behaviour::new(gossipsub::MessageAuthenticity::Signed(key.clone()), gossip_cfg)
            .map_err(|e| format!("gossipsub: {e}"))?;

        let mut kad_cfg = kad::Config::new(StreamProtocol::new("/brainmesh/kad/1.0.0"));
        kad_cfg.set_query_timeout(Duration::from_secs(30));
        let mut kad = kad::Behaviour::with_config(peer_id, kad::store::MemoryStore::new(peer_id), kad_cfg);
        kad.set_mode(Some(kad::Mode::Server));

        let identify = identify::Behaviour::new(identify::Config::new("/brainmesh/id/1.0.0".into(), key.public()));
        let ping = ping::Behaviour::new(ping::Config::new().with_interval(Duration::from_secs(5)));
        let sync = request_response::Behaviour::with_codec(
            BytesCodec::for_proto(Proto::Sync),
            [(protocol_id(Proto::Sync), request_response::ProtocolSupport::Full)],
            request_response::Config::default().with_request_timeout(Duration::from_secs(20)),
        );
        let task = request_response::Behaviour::with_codec(
            BytesCodec::for_proto(Proto::Task),
            [(protocol_id(Proto::Task), request_response::ProtocolSupport::Full)],
            request_response::Config::default()
                .with_request_timeout(Duration::from_secs(30))
                .with_max_concurrent_streams(1024),
        );
        // Encrypted mode: a key chunk per request; a classification takes seconds of miner CPU,
        // longer when it waits behind a key being decompressed.
        let fhe = request_response::Behaviour::with_codec(
            BytesCodec::for_proto(Proto::Fhe),
            [(protocol_id(Proto::Fhe), request_response::ProtocolSupport::Full)],
            request_response::Config::default().with_request_timeout(Duration::from_secs(300)),
        );
        let audit = request_response::Behaviour::with_codec(
            BytesCodec::for_proto(Proto::Audit),
            [(protocol_id(Proto::Audit), request_response::ProtocolSupport::Full)],
            request_response::Config::default().with_request_timeout(Duration::from_secs(30)),
        );
        let max_in = u32::try_from(max_peers.max(1)).unwrap_or(u32::MAX);
        let limits = connection_limits::Behaviour::new(
            connection_limits::ConnectionLimits::default()
                .with_max_established_incoming(Some(max_in))
                .with_max_pending_incoming(Some(MAX_PENDING_INCOMING))
                .with_max_established_per_peer(Some(MAX_CONNECTIONS_PER_PEER)),
        );
        Ok(Self { blocked: Default::default(), limits, gossipsub, kad, identify, ping, sync, task, fhe, audit })
    }
}

/// The gossipsub message id: SHA-256 over the author, the sequence number and the data, each
/// length-prefixed. Stable across Rust releases and platforms (std's `DefaultHasher` is not), so
/// peers built with different toolchains agree on which messages they have seen.
pub fn message_id(m: &gossipsub::Message) -> gossipsub::MessageId {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(b"brainmesh/gossip-id/v1");
    let src = m.source.map(|p| p.to_bytes()).unwrap_or_default();
    h.update((src.len() as u64).to_be_bytes());
    h.update(&src);
    h.update(m.sequence_number.unwrap_or(0).to_be_bytes());
    h.update((m.data.len() as u64).to_be_bytes());
    h.update(&m.data);
    gossipsub::MessageId::from(h.finalize().to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(seq: u64, data: &[u8]) -> gossipsub::Message {
        gossipsub::Message {
            source: Some(libp2p::identity::Keypair::generate_ed25519().public().to_peer_id()),
            data: data.to_vec(),
            sequence_number: Some(seq),
            topic: gossipsub::TopicHash::from_raw("t"),
        }
    }

    #[test]
    fn message_ids_are_sha256_and_tell_messages_apart() {
        let m = msg(1, b"hello");
        let a = message_id(&m);
        assert_eq!(a.0.len(), 32);
        assert_eq!(a, message_id(&m.clone()), "same message, same id");
        let mut other = m.clone();
        other.sequence_number = Some(2);
        assert_ne!(a, message_id(&other));
        let mut other = m.clone();
        other.data = b"hellp".to_vec();
        assert_ne!(a, message_id(&other));
    }
}

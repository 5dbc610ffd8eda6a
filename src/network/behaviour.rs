//! The composed libp2p behaviour of a brainmesh peer.

use std::time::Duration;

use libp2p::{gossipsub, identify, identity::Keypair, kad, ping, request_response, StreamProtocol};

use super::codec::{BytesCodec, AUDIT_PROTOCOL, FHE_PROTOCOL, SYNC_PROTOCOL, TASK_PROTOCOL};

/// Gossipsub's transmit limit: above our application limit so oversized messages reach the
/// application, are counted and rejected there (and never forwarded).
pub const GOSSIP_MAX_TRANSMIT: usize = 1024 * 1024;

#[derive(libp2p::swarm::NetworkBehaviour)]
pub struct Behaviour {
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
    pub fn new(key: &Keypair, gossip_heartbeat: Duration) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        let peer_id = key.public().to_peer_id();
        let gossip_cfg = gossipsub::ConfigBuilder::default()
            .heartbeat_interval(gossip_heartbeat)
            .validation_mode(gossipsub::ValidationMode::Strict)
            .validate_messages()
            .max_transmit_size(GOSSIP_MAX_TRANSMIT)
            .message_id_fn(|m: &gossipsub::Message| {
                use std::hash::{Hash, Hasher};
                let mut h = std::collections::hash_map::DefaultHasher::new();
                m.source.hash(&mut h);
                m.sequence_number.hash(&mut h);
                m.data.hash(&mut h);
                gossipsub::MessageId::from(h.finish().to_be_bytes().to_vec())
            })
            .build()
            .map_err(|e| format!("gossipsub config: {e}"))?;
        let gossipsub = gossipsub::Behaviour::new(gossipsub::MessageAuthenticity::Signed(key.clone()), gossip_cfg)
            .map_err(|e| format!("gossipsub: {e}"))?;

        let mut kad_cfg = kad::Config::new(StreamProtocol::new("/brainmesh/kad/1.0.0"));
        kad_cfg.set_query_timeout(Duration::from_secs(30));
        let mut kad = kad::Behaviour::with_config(peer_id, kad::store::MemoryStore::new(peer_id), kad_cfg);
        kad.set_mode(Some(kad::Mode::Server));

        let identify =
            identify::Behaviour::new(identify::Config::new("/brainmesh/id/1.0.0".into(), key.public()));
        let ping = ping::Behaviour::new(ping::Config::new().with_interval(Duration::from_secs(5)));
        let sync = request_response::Behaviour::with_codec(
            BytesCodec::sync(),
            [(SYNC_PROTOCOL, request_response::ProtocolSupport::Full)],
            request_response::Config::default().with_request_timeout(Duration::from_secs(20)),
        );
        let task = request_response::Behaviour::with_codec(
            BytesCodec::task(),
            [(TASK_PROTOCOL, request_response::ProtocolSupport::Full)],
            request_response::Config::default()
                .with_request_timeout(Duration::from_secs(30))
                .with_max_concurrent_streams(1024),
        );
        // Encrypted mode: a key chunk per request; a classification takes seconds of miner CPU,
        // longer when it waits behind a key being decompressed.
        let fhe = request_response::Behaviour::with_codec(
            BytesCodec::fhe(),
            [(FHE_PROTOCOL, request_response::ProtocolSupport::Full)],
            request_response::Config::default().with_request_timeout(Duration::from_secs(300)),
        );
        let audit = request_response::Behaviour::with_codec(
            BytesCodec::audit(),
            [(AUDIT_PROTOCOL, request_response::ProtocolSupport::Full)],
            request_response::Config::default().with_request_timeout(Duration::from_secs(30)),
        );
        Ok(Self { gossipsub, kad, identify, ping, sync, task, fhe, audit })
    }
}

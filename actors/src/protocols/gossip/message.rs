//! Wire types: every claim travels inside a signed, versioned, size-limited [`Envelope`].
//!
//! The envelope carries the body as the exact JSON text that was signed, so verification never
//! depends on re-serialising. The signer's ed25519 public key must hash to the claimed peer id;
//! on gossip, the gossipsub author must also be that peer.

use serde::{Deserialize, Serialize};

use crate::identity::{peer_id_of, Identity};
use crate::protocols::{Reject, MAX_MESSAGE_BYTES, PROTOCOL_VERSION};
use brainmesh_ledger::BrainId;

/// Largest accepted clock skew for timestamps in the future (ms).
pub const MAX_FUTURE_SKEW_MS: u64 = 60_000;

/// What a peer does in a Brain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Miner,
    Validator,
    Gateway,
}

impl Role {
    pub fn as_str(&self) -> &'static str {
        match self {
            Role::Miner => "miner",
            Role::Validator => "validator",
            Role::Gateway => "gateway",
        }
    }
}

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "miner" => Ok(Role::Miner),
            "validator" => Ok(Role::Validator),
            "gateway" => Ok(Role::Gateway),
            other => Err(format!("unknown role `{other}` (expected miner, validator or gateway)")),
        }
    }
}

/// Gossip topics, one set per Brain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum TopicKind {
    Membership,
    Heartbeat,
    Receipts,
    /// Ban entries and commit-reveal weight vectors from validators.
    Audit,
    /// Ledger: batch proposals and votes from validators, signed transactions.
    Rollup,
}

impl TopicKind {
    pub const ALL: [TopicKind; 5] =
        [TopicKind::Membership, TopicKind::Heartbeat, TopicKind::Receipts, TopicKind::Audit, TopicKind::Rollup];

    pub fn topic(&self, brain: BrainId) -> String {
        let name = match self {
            TopicKind::Membership => "membership",
            TopicKind::Heartbeat => "heartbeat",
            TopicKind::Receipts => "receipts",
            TopicKind::Audit => "audit",
            TopicKind::Rollup => "rollup",
        };
        format!("brainmesh/v{PROTOCOL_VERSION}/brain/{brain}/{name}")
    }

    /// Parses a topic string back into (kind, brain).
    pub fn parse(topic: &str) -> Option<(TopicKind, u16)> {
        let rest = topic.strip_prefix(&format!("brainmesh/v{PROTOCOL_VERSION}/brain/"))?;
        let (brain, name) = rest.split_once('/')?;
        let brain = brain.parse().ok()?;
        let kind = match name {
            "membership" => TopicKind::Membership,
            "heartbeat" => TopicKind::Heartbeat,
            "receipts" => TopicKind::Receipts,
            "audit" => TopicKind::Audit,
            "rollup" => TopicKind::Rollup,
            _ => return None,
        };
        Some((kind, brain))
    }
}

/// A peer's signed registration with a Brain ("permanent memory").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Registration {
    pub peer_id: String,
    pub brain: BrainId,
    pub roles: Vec<Role>,
    /// X25519 public key (hex) that prompts are sealed to.
    pub seal_key: String,
    /// Models this peer serves (miners) or audits (validators).
    pub models: Vec<String>,
    /// Registration fee paid, in base units, at the Brain's fee when it registered.
    pub fee: u64,
    /// Unix time in milliseconds.
    pub time_ms: u64,
}

/// Liveness and load, published every heartbeat interval.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Heartbeat {
    pub peer_id: String,
    pub brain: BrainId,
    /// Strictly increasing per peer; a lower or equal value is a replay.
    pub seq: u64,
    pub time_ms: u64,
    /// Host load per mille of the machine's cores (1-minute load average).
    pub load_permille: u32,
    /// Tasks waiting (miners).
    pub queue_depth: u32,
    /// Mean ping round-trip to connected peers, microseconds.
    pub latency_us: u64,
    /// Digest of the sender's roster, so peers that differ can sync.
    pub roster_digest: String,
    /// Models a miner has loaded and serves now.
    #[serde(default)]
    pub serving: Vec<ModelAd>,
    /// Smoothed decode speed, milli-tokens per second (miners).
    #[serde(default)]
    pub tokens_per_s_milli: u32,
    /// Smoothed time to first token, ms (miners).
    #[serde(default)]
    pub ttft_ms: u32,
}

/// A model a miner serves: id, content hash of the weights file, context length.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelAd {
    pub id: String,
    pub hash: String,
    pub context: u32,
}

/// The payloads an envelope can carry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "data", rename_all = "snake_case")]
pub enum Payload {
    Registration(Registration),
    Heartbeat(Heartbeat),
}

impl Payload {
    /// The peer the payload speaks for.
    pub fn subject(&self) -> &str {
        match self {
            Payload::Registration(r) => &r.peer_id,
            Payload::Heartbeat(h) => &h.peer_id,
        }
    }
    pub fn brain(&self) -> u16 {
        match self {
            Payload::Registration(r) => r.brain,
            Payload::Heartbeat(h) => h.brain,
        }
    }
}

/// A signed message: `sig` is ed25519 over `body` (the payload's JSON text) by `public_key`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    pub v: u16,
    pub signer: String,
    pub public_key: String,
    pub body: String,
    pub sig: String,
}

impl Envelope {
    /// Signs `payload` with `id`.
    pub fn seal(id: &Identity, payload: &Payload) -> Self {
        // Serialising a plain data enum to JSON cannot fail.
        let body = serde_json::to_string(payload).unwrap_or_default();
        let sig = id.sign(body.as_bytes());
        Envelope {
            v: PROTOCOL_VERSION,
            signer: id.peer_id().to_string(),
            public_key: hex::encode(id.public_key_bytes()),
            body,
            sig: hex::encode(sig),
        }
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Decodes and verifies raw bytes from a peer: size, format, version, signature, and that
    /// the signer is the peer the payload speaks for.
    pub fn open(bytes: &[u8]) -> Result<(Envelope, Payload), Reject> {
        if bytes.len() > MAX_MESSAGE_BYTES {
            return Err(Reject::Oversized);
        }
        let env: Envelope = serde_json::from_slice(bytes).map_err(|_| Reject::Malformed)?;
        if env.v != PROTOCOL_VERSION {
            return Err(Reject::BadVersion);
        }
        if env.sig.is_empty() || env.public_key.is_empty() {
            return Err(Reject::Unsigned);
        }
        let pk: [u8; 32] =
            hex::decode(&env.public_key).ok().and_then(|v| v.try_into().ok()).ok_or(Reject::Malformed)?;
        let sig: [u8; 64] = hex::decode(&env.sig).ok().and_then(|v| v.try_into().ok()).ok_or(Reject::Malformed)?;
        let derived = peer_id_of(&pk).map_err(|_| Reject::BadSignature)?;
        if derived.to_string() != env.signer {
            return Err(Reject::IdentityMismatch);
        }
        let vk = ed25519_dalek::VerifyingKey::from_bytes(&pk).map_err(|_| Reject::BadSignature)?;
        let sig = ed25519_dalek::Signature::from_bytes(&sig);
        vk.verify_strict(env.body.as_bytes(), &sig).map_err(|_| Reject::BadSignature)?;
        let payload: Payload = serde_json::from_str(&env.body).map_err(|_| Reject::Malformed)?;
        if payload.subject() != env.signer {
            return Err(Reject::IdentityMismatch);
        }
        Ok((env, payload))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reg(id: &Identity) -> Payload {
        Payload::Registration(Registration {
            peer_id: id.peer_id().to_string(),
            brain: 1,
            roles: vec![Role::Miner],
            seal_key: hex::encode(id.seal_public()),
            models: vec!["smollm2-135m".into()],
            fee: 100,
            time_ms: 1_700_000_000_000,
        })
    }

    #[test]
    fn sealed_envelope_opens_and_round_trips() {
        let id = Identity::generate();
        let env = Envelope::seal(&id, &reg(&id));
        let (e2, p) = Envelope::open(&env.to_bytes()).unwrap();
        assert_eq!(e2, env);
        assert_eq!(p.subject(), id.peer_id().to_string());
        assert!(matches!(p, Payload::Registration(ref r) if r.fee == 100 && r.brain == 1));
    }

    #[test]
    fn tampered_body_is_a_bad_signature() {
        let id = Identity::generate();
        let mut env = Envelope::seal(&id, &reg(&id));
        env.body = env.body.replace("\"fee\":100", "\"fee\":1");
        assert_eq!(Envelope::open(&env.to_bytes()), Err(Reject::BadSignature));
    }

    #[test]
    fn record_for_another_peer_is_an_identity_mismatch() {
        let victim = Identity::generate();
        let forger = Identity::generate();
        // Forger signs a registration that names the victim.
        let env = Envelope::seal(&forger, &reg(&victim));
        assert_eq!(Envelope::open(&env.to_bytes()), Err(Reject::IdentityMismatch));
        // Forger claims to be the victim in the envelope but signs with its own key.
        let mut env = Envelope::seal(&forger, &reg(&victim));
        env.signer = victim.peer_id().to_string();
        assert_eq!(Envelope::open(&env.to_bytes()), Err(Reject::IdentityMismatch));
    }

    #[test]
    fn garbage_unsigned_oversized_and_wrong_version_are_told_apart() {
        let id = Identity::generate();
        assert_eq!(Envelope::open(b"\x00\xffnot json"), Err(Reject::Malformed));
        assert_eq!(Envelope::open(&vec![b' '; MAX_MESSAGE_BYTES + 1]), Err(Reject::Oversized));
        let mut env = Envelope::seal(&id, &reg(&id));
        env.sig.clear();
        assert_eq!(Envelope::open(&env.to_bytes()), Err(Reject::Unsigned));
        let mut env = Envelope::seal(&id, &reg(&id));
        env.v = 99;
        assert_eq!(Envelope::open(&env.to_bytes()), Err(Reject::BadVersion));
    }

    #[test]
    fn topics_round_trip() {
        for k in TopicKind::ALL {
            assert_eq!(TopicKind::parse(&k.topic(7)), Some((k, 7)));
        }
        assert_eq!(TopicKind::parse("brainmesh/v1/brain/x/membership"), None);
    }
}

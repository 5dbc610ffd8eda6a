//! Durable storage behind a small trait (sled today; swappable).

use brainmesh_ledger::BrainId;
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("storage error: {0}")]
    Sled(#[from] sled::Error),
}

/// Key-value storage of signed registration envelopes, keyed by peer id.
pub trait RosterStore: Send {
    fn put(&self, brain: BrainId, peer_id: &str, envelope: &[u8]) -> Result<(), StoreError>;
    fn remove(&self, brain: BrainId, peer_id: &str) -> Result<(), StoreError>;
    /// Every stored envelope: (brain, bytes).
    fn load_all(&self) -> Result<Vec<(u16, Vec<u8>)>, StoreError>;
}

/// sled-backed store. Each write is flushed before it is acknowledged.
pub struct SledStore {
    db: sled::Db,
    registrations: sled::Tree,
}

impl SledStore {
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        let db = sled::Config::new().path(dir).open()?;
        let registrations = db.open_tree("registrations")?;
        Ok(Self { db, registrations })
    }

    pub fn temporary() -> Result<Self, StoreError> {
        let db = sled::Config::new().temporary(true).open()?;
        let registrations = db.open_tree("registrations")?;
        Ok(Self { db, registrations })
    }

    pub fn db(&self) -> &sled::Db {
        &self.db
    }

    fn key(brain: BrainId, peer_id: &str) -> Vec<u8> {
        let mut k = brain.to_be_bytes().to_vec();
        k.extend_from_slice(peer_id.as_bytes());
        k
    }
}

impl RosterStore for SledStore {
    fn put(&self, brain: BrainId, peer_id: &str, envelope: &[u8]) -> Result<(), StoreError> {
        self.registrations.insert(Self::key(brain, peer_id), envelope)?;
        self.registrations.flush()?;
        Ok(())
    }

    fn remove(&self, brain: BrainId, peer_id: &str) -> Result<(), StoreError> {
        self.registrations.remove(Self::key(brain, peer_id))?;
        self.registrations.flush()?;
        Ok(())
    }

    fn load_all(&self) -> Result<Vec<(u16, Vec<u8>)>, StoreError> {
        let mut out = Vec::new();
        for item in self.registrations.iter() {
            let (k, v) = item?;
            if k.len() >= 2 {
                out.push((u16::from_be_bytes([k[0], k[1]]), v.to_vec()));
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = SledStore::open(dir.path()).unwrap();
            s.put(3, "peerA", b"one").unwrap();
            s.put(3, "peerB", b"two").unwrap();
            s.remove(3, "peerB").unwrap();
        }
        let s = SledStore::open(dir.path()).unwrap();
        assert_eq!(s.load_all().unwrap(), vec![(3, b"one".to_vec())]);
    }
}

//! A peer's identity: one ed25519 key (the libp2p peer id and every application signature)
//! and one X25519 key (sealed prompts), both stored in the data directory with mode 0600.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use libp2p_identity::PeerId;

/// File names inside the data directory.
pub const ED25519_FILE: &str = "identity.key";
pub const X25519_FILE: &str = "seal.key";

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("cannot read or write key file {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("key file {path} is corrupt: expected 32 bytes, found {len}")]
    Corrupt { path: PathBuf, len: usize },
    #[error("key file {path} is readable by others (mode {mode:o}); run `chmod 600 {path}`")]
    Permissions { path: PathBuf, mode: u32 },
}

/// The keys of one peer.
pub struct Identity {
    signing: SigningKey,
    seal_secret: [u8; 32],
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity").field("peer_id", &self.peer_id()).finish_non_exhaustive()
    }
}

impl Identity {
    /// A fresh random identity (tests and `init`).
    pub fn generate() -> Self {
        Self::from_secrets(rand::random::<[u8; 32]>(), rand::random::<[u8; 32]>())
    }

    pub fn from_secrets(ed25519_secret: [u8; 32], seal_secret: [u8; 32]) -> Self {
        Self { signing: SigningKey::from_bytes(&ed25519_secret), seal_secret }
    }

    /// Loads the keys from `dir`, creating them (mode 0600) when absent.
    pub fn load_or_create(dir: &Path) -> Result<Self, IdentityError> {
        fs::create_dir_all(dir).map_err(|source| IdentityError::Io { path: dir.into(), source })?;
        let ed = load_or_create_secret(&dir.join(ED25519_FILE))?;
        let seal = load_or_create_secret(&dir.join(X25519_FILE))?;
        Ok(Self::from_secrets(ed, seal))
    }

    /// True when `dir` already holds an identity.
    pub fn exists(dir: &Path) -> bool {
        dir.join(ED25519_FILE).exists()
    }

    pub fn ed25519_secret(&self) -> [u8; 32] {
        self.signing.to_bytes()
    }

    pub fn verifying_key(&self) -> VerifyingKey {
        self.signing.verifying_key()
    }

    pub fn public_key_bytes(&self) -> [u8; 32] {
        self.signing.verifying_key().to_bytes()
    }

    pub fn peer_id(&self) -> PeerId {
        // Our own key is a valid ed25519 point by construction.
        #[allow(clippy::expect_used)]
        peer_id_of(&self.public_key_bytes()).expect("own ed25519 public key is valid")
    }

    pub fn sign(&self, msg: &[u8]) -> [u8; 64] {
        self.signing.sign(msg).to_bytes()
    }

    /// The X25519 public key other peers seal prompts to.
    pub fn seal_public(&self) -> [u8; 32] {
        let secret = x25519_dalek::StaticSecret::from(self.seal_secret);
        x25519_dalek::PublicKey::from(&secret).to_bytes()
    }

    pub fn seal_secret(&self) -> x25519_dalek::StaticSecret {
        x25519_dalek::StaticSecret::from(self.seal_secret)
    }
}

/// The libp2p peer id of an ed25519 public key (an ed25519 PeerId inlines the key).
pub fn peer_id_of(public_key: &[u8; 32]) -> Result<PeerId, libp2p_identity::DecodingError> {
    let pk = libp2p_identity::ed25519::PublicKey::try_from_bytes(public_key)?;
    Ok(PeerId::from_public_key(&libp2p_identity::PublicKey::from(pk)))
}

fn load_or_create_secret(path: &Path) -> Result<[u8; 32], IdentityError> {
    let io = |source| IdentityError::Io { path: path.into(), source };
    match fs::read(path) {
        Ok(bytes) => {
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                let mode = fs::metadata(path).map_err(io)?.permissions().mode() & 0o777;
                if mode & 0o077 != 0 {
                    return Err(IdentityError::Permissions { path: path.into(), mode });
                }
            }
            let len = bytes.len();
            bytes.try_into().map_err(|_| IdentityError::Corrupt { path: path.into(), len })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let secret = rand::random::<[u8; 32]>();
            let mut opts = fs::OpenOptions::new();
            opts.write(true).create_new(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt;
                opts.mode(0o600);
            }
            let mut f = opts.open(path).map_err(io)?;
            f.write_all(&secret).map_err(io)?;
            f.sync_all().map_err(io)?;
            Ok(secret)
        }
        Err(e) => Err(io(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_survives_reload_and_key_file_is_private() {
        let dir = tempfile::tempdir().unwrap();
        let a = Identity::load_or_create(dir.path()).unwrap();
        let b = Identity::load_or_create(dir.path()).unwrap();
        assert_eq!(a.peer_id(), b.peer_id());
        assert_eq!(a.seal_public(), b.seal_public());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(dir.path().join(ED25519_FILE)).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn truncated_key_file_is_reported_not_replaced() {
        let dir = tempfile::tempdir().unwrap();
        Identity::load_or_create(dir.path()).unwrap();
        let p = dir.path().join(ED25519_FILE);
        fs::write(&p, [1u8; 5]).unwrap();
        assert!(matches!(Identity::load_or_create(dir.path()), Err(IdentityError::Corrupt { len: 5, .. })));
    }

    #[test]
    fn peer_id_matches_libp2p_keypair_from_same_secret() {
        let id = Identity::generate();
        let mut secret = id.ed25519_secret();
        let kp = libp2p_identity::Keypair::ed25519_from_bytes(&mut secret).unwrap();
        assert_eq!(kp.public().to_peer_id(), id.peer_id());
    }
}

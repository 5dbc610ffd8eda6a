//! Weights sealed at rest: a model file or directory encrypted to one miner's X25519 key, so the
//! copy on its disk is useless to anyone else (and to the miner itself without its key). The
//! miner decrypts it only into RAM (a private tmpfs directory the node removes as soon as the
//! model is loaded).
//!
//! Format: `MAGIC`, a little-endian u32 header length, the header (JSON: kind, name, ephemeral
//! public key, nonce, recipient key), then the ChaCha20-Poly1305 ciphertext of the payload (the
//! file, or the directory's files as `[u32 name length][name][u64 length][bytes]…`), the header
//! as associated data. The key is SHA-256 over a label, the X25519 shared secret of a fresh
//! ephemeral key and the recipient's key, and both public keys.
//!
//! What it does not do: a miner who controls its machine can read the weights from memory while
//! it serves them (docs/model-protection.md).

use std::path::{Path, PathBuf};

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use x25519_dalek::{PublicKey, StaticSecret};

/// The first bytes of a sealed model.
pub const MAGIC: &[u8; 16] = b"brainmesh-sealed";
/// Largest header accepted.
const MAX_HEADER: u32 = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum SealedModelError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0} is not a sealed model (no brainmesh-sealed header)")]
    NotSealed(PathBuf),
    #[error("malformed sealed model: {0}")]
    Malformed(String),
    #[error("this sealed model is for the miner with seal key {for_key}, not this one ({mine})")]
    WrongMiner { for_key: String, mine: String },
    #[error("the sealed model does not decrypt (tampered, or sealed to another key)")]
    Decrypt,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SealedModelError + '_ {
    move |source| SealedModelError::Io { path: path.to_path_buf(), source }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    pub version: u32,
    /// "file" or "dir".
    pub kind: String,
    /// The sealed file's or directory's name.
    pub name: String,
    /// Hex X25519 keys: the sealer's ephemeral one and the recipient miner's.
    pub eph: String,
    pub recipient: String,
    pub nonce: String,
}

fn cipher(shared: &[u8; 32], eph: &[u8; 32], recipient: &[u8; 32]) -> ChaCha20Poly1305 {
    let mut h = Sha256::new();
    h.update(b"brainmesh/sealed-model/v1");
    h.update(shared);
    h.update(eph);
    h.update(recipient);
    let k: [u8; 32] = h.finalize().into();
    ChaCha20Poly1305::new(Key::from_slice(&k))
}

/// Whether `path` is a sealed model file.
pub fn is_sealed(path: &Path) -> bool {
    let mut magic = [0u8; 16];
    path.is_file()
        && std::fs::File::open(path).and_then(|mut f| std::io::Read::read_exact(&mut f, &mut magic)).is_ok()
        && &magic == MAGIC
}

fn pack(path: &Path) -> Result<(String, Vec<u8>), SealedModelError> {
    if path.is_file() {
        return Ok(("file".into(), std::fs::read(path).map_err(io(path))?));
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(path)
        .map_err(io(path))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    let mut out = Vec::new();
    for f in files {
        let name = f.file_name().and_then(|n| n.to_str()).unwrap_or_default().as_bytes().to_vec();
        let bytes = std::fs::read(&f).map_err(io(&f))?;
        out.extend_from_slice(&(name.len() as u32).to_le_bytes());
        out.extend_from_slice(&name);
        out.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
        out.extend_from_slice(&bytes);
    }
    Ok(("dir".into(), out))
}

/// Seals the model at `model` (a file or a directory of files) to the miner whose X25519 seal
/// key is `recipient`, writing `out`.
pub fn seal_model(model: &Path, recipient: &[u8; 32], out: &Path) -> Result<Header, SealedModelError> {
    let (kind, plain) = pack(model)?;
    let eph = StaticSecret::from(rand::random::<[u8; 32]>());
    let eph_pub = PublicKey::from(&eph).to_bytes();
    let shared = eph.diffie_hellman(&PublicKey::from(*recipient)).to_bytes();
    let nonce: [u8; 12] = rand::random();
    let header = Header {
        version: 1,
        kind,
        name: model.file_name().and_then(|n| n.to_str()).unwrap_or("model").to_string(),
        eph: hex::encode(eph_pub),
        recipient: hex::encode(recipient),
        nonce: hex::encode(nonce),
    };
    let hbytes = serde_json::to_vec(&header).map_err(|e| SealedModelError::Malformed(e.to_string()))?;
    let ct = cipher(&shared, &eph_pub, recipient)
        .encrypt(Nonce::from_slice(&nonce), Payload { msg: &plain, aad: &hbytes })
        .map_err(|_| SealedModelError::Malformed("encryption failed".into()))?;
    let mut file = Vec::with_capacity(16 + 4 + hbytes.len() + ct.len());
    file.extend_from_slice(MAGIC);
    file.extend_from_slice(&(hbytes.len() as u32).to_le_bytes());
    file.extend_from_slice(&hbytes);
    file.extend_from_slice(&ct);
    std::fs::write(out, file).map_err(io(out))?;
    Ok(header)
}

/// Decrypts the sealed model at `sealed` with the miner's seal secret into `dir` (which should
/// be RAM-backed) and returns the model's path inside it (the file, or the directory).
pub fn unseal_model(sealed: &Path, secret: &StaticSecret, dir: &Path) -> Result<PathBuf, SealedModelError> {
    let data = std::fs::read(sealed).map_err(io(sealed))?;
    if data.len() < 20 || &data[..16] != MAGIC {
        return Err(SealedModelError::NotSealed(sealed.to_path_buf()));
    }
    let hlen = u32::from_le_bytes([data[16], data[17], data[18], data[19]]);
    if hlen > MAX_HEADER || data.len() < 20 + hlen as usize {
        return Err(SealedModelError::Malformed("header length".into()));
    }
    let hbytes = &data[20..20 + hlen as usize];
    let header: Header = serde_json::from_slice(hbytes).map_err(|e| SealedModelError::Malformed(e.to_string()))?;
    let key32 = |h: &str| -> Result<[u8; 32], SealedModelError> {
        hex::decode(h)
            .ok()
            .and_then(|b| <[u8; 32]>::try_from(b).ok())
            .ok_or_else(|| SealedModelError::Malformed("key".into()))
    };
    let (eph, recipient) = (key32(&header.eph)?, key32(&header.recipient)?);
    let mine = PublicKey::from(secret).to_bytes();
    if mine != recipient {
        return Err(SealedModelError::WrongMiner { for_key: header.recipient.clone(), mine: hex::encode(mine) });
    }
    let nonce = hex::decode(&header.nonce)
        .ok()
        .and_then(|b| <[u8; 12]>::try_from(b).ok())
        .ok_or_else(|| SealedModelError::Malformed("nonce".into()))?;
    let shared = secret.diffie_hellman(&PublicKey::from(eph)).to_bytes();
    let plain = cipher(&shared, &eph, &recipient)
        .decrypt(Nonce::from_slice(&nonce), Payload { msg: &data[20 + hlen as usize..], aad: hbytes })
        .map_err(|_| SealedModelError::Decrypt)?;
    drop(data);
    let safe = |n: &str| !n.is_empty() && !n.contains('/') && n != "." && n != "..";
    if !safe(&header.name) {
        return Err(SealedModelError::Malformed(format!("bad name {:?}", header.name)));
    }
    let target = dir.join(&header.name);
    match header.kind.as_str() {
        "file" => std::fs::write(&target, &plain).map_err(io(&target))?,
        "dir" => {
            std::fs::create_dir_all(&target).map_err(io(&target))?;
            let mut rest = &plain[..];
            while !rest.is_empty() {
                let bad = || SealedModelError::Malformed("truncated archive".into());
                let nlen = u32::from_le_bytes(rest.get(..4).ok_or_else(bad)?.try_into().map_err(|_| bad())?) as usize;
                let name = std::str::from_utf8(rest.get(4..4 + nlen).ok_or_else(bad)?).map_err(|_| bad())?;
                if !safe(name) {
                    return Err(SealedModelError::Malformed(format!("bad file name {name:?}")));
                }
                let at = 4 + nlen;
                let blen =
                    u64::from_le_bytes(rest.get(at..at + 8).ok_or_else(bad)?.try_into().map_err(|_| bad())?) as usize;
                let bytes = rest.get(at + 8..at + 8 + blen).ok_or_else(bad)?;
                let p = target.join(name);
                std::fs::write(&p, bytes).map_err(io(&p))?;
                rest = &rest[at + 8 + blen..];
            }
        }
        other => return Err(SealedModelError::Malformed(format!("kind {other:?}"))),
    }
    Ok(target)
}

/// A private RAM-backed directory to decrypt into (`/dev/shm`, mode 0700), removed on drop.
pub struct RamDir(PathBuf);

impl RamDir {
    pub fn new() -> Result<Self, SealedModelError> {
        let base = Path::new("/dev/shm");
        if !base.is_dir() {
            return Err(SealedModelError::Io {
                path: base.to_path_buf(),
                source: std::io::Error::other(
                    "no RAM-backed /dev/shm to decrypt a sealed model into (refusing to use disk)",
                ),
            });
        }
        let p = base.join(format!("brainmesh-model-{}-{:016x}", std::process::id(), rand::random::<u64>()));
        std::fs::create_dir(&p).map_err(io(&p))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o700)).map_err(io(&p))?;
        }
        Ok(RamDir(p))
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for RamDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_directory_opens_only_for_its_miner_and_not_once_tampered() {
        let src = tempfile::tempdir().unwrap();
        let model = src.path().join("obf");
        std::fs::create_dir(&model).unwrap();
        std::fs::write(model.join("config.json"), b"{\"a\":1}").unwrap();
        std::fs::write(model.join("model.safetensors"), vec![7u8; 100_000]).unwrap();
        let miner = StaticSecret::from([3u8; 32]);
        let other = StaticSecret::from([4u8; 32]);
        let sealed = src.path().join("obf.sealed");
        seal_model(&model, &PublicKey::from(&miner).to_bytes(), &sealed).unwrap();
        assert!(is_sealed(&sealed) && !is_sealed(&model.join("config.json")));
        let bytes = std::fs::read(&sealed).unwrap();
        assert!(!bytes.windows(7).any(|w| w == b"{\"a\":1}"), "plaintext in the sealed file");

        let out = tempfile::tempdir().unwrap();
        let opened = unseal_model(&sealed, &miner, out.path()).unwrap();
        assert_eq!(std::fs::read(opened.join("config.json")).unwrap(), b"{\"a\":1}");
        assert_eq!(std::fs::read(opened.join("model.safetensors")).unwrap(), vec![7u8; 100_000]);

        let e = unseal_model(&sealed, &other, out.path()).unwrap_err();
        assert!(matches!(e, SealedModelError::WrongMiner { .. }), "{e}");
        let mut bad = bytes.clone();
        let last = bad.len() - 10;
        bad[last] ^= 1;
        std::fs::write(&sealed, &bad).unwrap();
        assert!(matches!(unseal_model(&sealed, &miner, out.path()), Err(SealedModelError::Decrypt)));
        std::fs::write(&sealed, b"not sealed at all").unwrap();
        assert!(matches!(unseal_model(&sealed, &miner, out.path()), Err(SealedModelError::NotSealed(_))));
    }

    #[test]
    fn a_ram_dir_is_private_and_gone_when_dropped() {
        let Ok(d) = RamDir::new() else { return }; // no /dev/shm on this machine
        let p = d.path().to_path_buf();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o700);
        }
        std::fs::write(p.join("x"), b"secret").unwrap();
        drop(d);
        assert!(!p.exists());
    }
}

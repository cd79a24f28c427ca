//! Proof that an allocation is alive: the validator reaches the sandbox's SSH server and
//! has it prove possession of the host key pinned at allocation time over a fresh key
//! exchange.
//!
//! # Why the SSH key exchange is the proof
//! In SSH's transport layer (RFC 4253 §8, RFC 8731) the server signs the exchange hash `H`
//! with its host key. `H` covers the client's random KEXINIT cookie and the client's
//! ephemeral X25519 key, both fresh per connection (the validator's nonce), so a valid
//! signature cannot be replayed from an earlier connection, and only a process that holds
//! the host's private key, listening at the advertised address *now*, can produce it. The
//! host key is generated per allocation inside the sandbox's directory and sealed to the
//! renter at reservation time ([`crate::seal`]); the renter pins it. So a successful
//! exchange proves "the SSH endpoint the renter was given is up and is the one created for
//! this allocation". No login is needed (the validator holds no key of the renter's), and
//! nothing about the sandbox is taken on the miner's word.
//!
//! What it does not prove: that the limits inside are the promised ones (a miner could run a
//! bare `sshd` with the host key; its renter would then get a whole host instead of a
//! sandbox, which cheats nobody of access). See `validator` for how proofs are used.
//!
//! Only what the proof needs is implemented: the version exchange, KEXINIT,
//! `curve25519-sha256` and `ssh-ed25519` host keys (what the sandbox generates). Every read
//! is bounded in bytes and the whole exchange in time.

use std::time::Duration;

use base64::Engine;
use curve25519_dalek::montgomery::MontgomeryPoint;
use ed25519_dalek::{Signature, VerifyingKey};
use rand::RngCore;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// Our identification string (RFC 4253 §4.2).
const CLIENT_VERSION: &[u8] = b"SSH-2.0-ganglion_liveness_1.0";
/// Longest packet accepted before the key exchange (RFC 4253 §6.1 requires 35000).
const MAX_PACKET: usize = 35_000;
/// Lines a server may send before its identification (RFC 4253 §4.2), bounded.
const MAX_BANNER_LINES: usize = 16;
const MSG_DISCONNECT: u8 = 1;
const MSG_IGNORE: u8 = 2;
const MSG_UNIMPLEMENTED: u8 = 3;
const MSG_DEBUG: u8 = 4;
const MSG_KEXINIT: u8 = 20;
const MSG_KEX_ECDH_INIT: u8 = 30;
const MSG_KEX_ECDH_REPLY: u8 = 31;
const KEX: &str = "curve25519-sha256";
const KEX_ALIAS: &str = "curve25519-sha256@libssh.org";
const HOST_KEY_ALG: &str = "ssh-ed25519";

/// Why an allocation could not be proven alive (stable names: [`LivenessFailure::cause`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LivenessFailure {
    /// Nothing accepts connections at the advertised address.
    #[error("cannot connect to the allocation's ssh at {addr}: {reason}")]
    Unreachable {
        /// host:port.
        addr: String,
        /// The OS error.
        reason: String,
    },
    /// The exchange did not finish in time.
    #[error("the allocation's ssh at {addr} did not finish the key exchange within {limit_ms} ms")]
    Timeout {
        /// host:port.
        addr: String,
        /// The bound.
        limit_ms: u64,
    },
    /// The peer does not speak SSH (or broke the protocol).
    #[error("the allocation's endpoint does not speak SSH: {0}")]
    Protocol(String),
    /// The pinned host key or the server's algorithms are not ones the proof supports.
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// The server presented another host key than the one pinned at allocation time.
    #[error("the server's host key is not the one pinned at allocation time")]
    WrongHostKey,
    /// The host key signature over the exchange hash does not verify.
    #[error("the host key signature over the key exchange does not verify")]
    BadSignature,
    /// Another reservation of this validator pins the same host key: one sandbox counts once.
    #[error("another reservation pins the same host key (one sandbox counts once)")]
    Duplicate,
    /// The advertised SSH host is not the miner's axon address.
    #[error("the allocation's ssh host {host} is not the miner's address {axon}")]
    WrongHost {
        /// Advertised host.
        host: String,
        /// The miner's axon IP.
        axon: String,
    },
    /// The record holds no usable access information.
    #[error("the reservation holds no pinned host key or address: {0}")]
    NoPin(String),
}

impl LivenessFailure {
    /// The stable cause name recorded for this failure.
    pub fn cause(&self) -> &'static str {
        match self {
            LivenessFailure::Unreachable { .. } => "allocation_unreachable",
            LivenessFailure::Timeout { .. } => "allocation_timeout",
            LivenessFailure::Protocol(_) => "allocation_not_ssh",
            LivenessFailure::Unsupported(_) | LivenessFailure::NoPin(_) => "allocation_unverifiable",
            LivenessFailure::WrongHostKey => "allocation_wrong_host_key",
            LivenessFailure::BadSignature => "allocation_bad_signature",
            LivenessFailure::Duplicate => "allocation_duplicate",
            LivenessFailure::WrongHost { .. } => "allocation_wrong_host",
        }
    }
}

/// The SSH wire blob of a pinned `ssh-ed25519 AAAA…` public key line.
pub fn host_key_blob(line: &str) -> Result<Vec<u8>, LivenessFailure> {
    let mut fields = line.split_whitespace();
    let (Some(kind), Some(data)) = (fields.next(), fields.next()) else {
        return Err(LivenessFailure::NoPin("the pinned host key is not an OpenSSH public key line".into()));
    };
    if kind != HOST_KEY_ALG {
        return Err(LivenessFailure::Unsupported(format!("pinned host key type {kind:?} (only {HOST_KEY_ALG})")));
    }
    let blob = base64::engine::general_purpose::STANDARD
        .decode(data)
        .map_err(|_| LivenessFailure::NoPin("the pinned host key is not base64".into()))?;
    let mut reader = Reader::new(&blob);
    let name = reader.string()?;
    let key = reader.string()?;
    if name != HOST_KEY_ALG.as_bytes() || key.len() != 32 || !reader.is_empty() {
        return Err(LivenessFailure::NoPin("the pinned host key blob is malformed".into()));
    }
    Ok(blob)
}

/// Connects to `host:port` and checks that the SSH server there proves possession of the
/// pinned host key (`ssh-ed25519 AAAA…`) over a fresh key exchange, all within `limit`.
pub async fn prove(host: &str, port: u16, pinned_host_key: &str, limit: Duration) -> Result<(), LivenessFailure> {
    let pinned = host_key_blob(pinned_host_key)?;
    let addr = if host.contains(':') && !host.starts_with('[') { format!("[{host}]:{port}") } else { format!("{host}:{port}") };
    let limit_ms = u64::try_from(limit.as_millis()).unwrap_or(u64::MAX);
    match tokio::time::timeout(limit, exchange(&addr, &pinned)).await {
        Ok(result) => result,
        Err(_) => Err(LivenessFailure::Timeout { addr, limit_ms }),
    }
}

async fn exchange(addr: &str, pinned: &[u8]) -> Result<(), LivenessFailure> {
    let stream = TcpStream::connect(addr).await.map_err(|err| LivenessFailure::Unreachable { addr: addr.to_string(), reason: err.to_string() })?;
    let _ = stream.set_nodelay(true);
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::new(read);
    let io = |err: std::io::Error| LivenessFailure::Protocol(format!("connection: {err}"));

    let mut hello = CLIENT_VERSION.to_vec();
    hello.extend_from_slice(b"\r\n");
    write.write_all(&hello).await.map_err(io)?;
    let server_version = read_version(&mut read).await?;

    let mut cookie = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut cookie);
    let client_kexinit = kexinit(&cookie);
    write.write_all(&frame(&client_kexinit)).await.map_err(io)?;
    let server_kexinit = loop {
        let payload = read_packet(&mut read).await?;
        if payload.first() == Some(&MSG_KEXINIT) {
            break payload;
        }
    };
    check_algorithms(&server_kexinit)?;

    let mut secret = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut secret);
    let client_public = MontgomeryPoint::mul_base_clamped(secret).to_bytes();
    let mut init = vec![MSG_KEX_ECDH_INIT];
    put_string(&mut init, &client_public);
    write.write_all(&frame(&init)).await.map_err(io)?;
    let reply = loop {
        let payload = read_packet(&mut read).await?;
        if payload.first() == Some(&MSG_KEX_ECDH_REPLY) {
            break payload;
        }
    };
    let mut reader = Reader::new(&reply[1..]);
    let host_key = reader.string()?.to_vec();
    let server_public = reader.string()?.to_vec();
    let signature = reader.string()?.to_vec();
    if host_key != pinned {
        return Err(LivenessFailure::WrongHostKey);
    }
    let server_public: [u8; 32] = server_public.try_into().map_err(|_| LivenessFailure::Protocol("the server's X25519 key is not 32 bytes".into()))?;
    let shared = MontgomeryPoint(server_public).mul_clamped(secret).to_bytes();
    if shared == [0u8; 32] {
        return Err(LivenessFailure::Protocol("the server's X25519 key is a low-order point".into()));
    }
    let mut hash_input = Vec::with_capacity(2048);
    put_string(&mut hash_input, CLIENT_VERSION);
    put_string(&mut hash_input, &server_version);
    put_string(&mut hash_input, &client_kexinit);
    put_string(&mut hash_input, &server_kexinit);
    put_string(&mut hash_input, &host_key);
    put_string(&mut hash_input, &client_public);
    put_string(&mut hash_input, &server_public);
    put_mpint(&mut hash_input, &shared);
    let exchange_hash = Sha256::digest(&hash_input);
    verify(&host_key, &signature, &exchange_hash)
}

/// Verifies an `ssh-ed25519` signature blob by the host key blob over `message`.
fn verify(host_key: &[u8], signature: &[u8], message: &[u8]) -> Result<(), LivenessFailure> {
    let mut key = Reader::new(host_key);
    let (_, key_bytes) = (key.string()?, key.string()?);
    let key_bytes: [u8; 32] = key_bytes.try_into().map_err(|_| LivenessFailure::BadSignature)?;
    let key = VerifyingKey::from_bytes(&key_bytes).map_err(|_| LivenessFailure::BadSignature)?;
    let mut sig = Reader::new(signature);
    let name = sig.string()?;
    let bytes = sig.string()?;
    if name != HOST_KEY_ALG.as_bytes() {
        return Err(LivenessFailure::Unsupported("the server signed with another algorithm than ssh-ed25519".into()));
    }
    let bytes: [u8; 64] = bytes.try_into().map_err(|_| LivenessFailure::BadSignature)?;
    // `verify_strict` also refuses small-order keys and non-canonical signatures.
    key.verify_strict(message, &Signature::from_bytes(&bytes)).map_err(|_| LivenessFailure::BadSignature)
}

async fn read_version<R: tokio::io::AsyncBufRead + Unpin>(read: &mut R) -> Result<Vec<u8>, LivenessFailure> {
    for _ in 0..MAX_BANNER_LINES {
        let mut line = Vec::new();
        let mut limited = (&mut *read).take(256);
        tokio::io::AsyncBufReadExt::read_until(&mut limited, b'\n', &mut line)
            .await
            .map_err(|err| LivenessFailure::Protocol(format!("reading the identification: {err}")))?;
        if line.is_empty() {
            return Err(LivenessFailure::Protocol("the connection closed before an SSH identification".into()));
        }
        if line.last() != Some(&b'\n') {
            return Err(LivenessFailure::Protocol("identification line longer than 255 bytes".into()));
        }
        while matches!(line.last(), Some(b'\n' | b'\r')) {
            line.pop();
        }
        if line.starts_with(b"SSH-") {
            if !(line.starts_with(b"SSH-2.0-") || line.starts_with(b"SSH-1.99-")) {
                return Err(LivenessFailure::Protocol("not SSH protocol 2".into()));
            }
            return Ok(line);
        }
    }
    Err(LivenessFailure::Protocol("no SSH identification".into()))
}

async fn read_packet<R: tokio::io::AsyncRead + Unpin>(read: &mut R) -> Result<Vec<u8>, LivenessFailure> {
    let io = |err: std::io::Error| LivenessFailure::Protocol(format!("reading a packet: {err}"));
    loop {
        let length = read.read_u32().await.map_err(io)? as usize;
        if !(5..=MAX_PACKET).contains(&length) {
            return Err(LivenessFailure::Protocol(format!("packet length {length}")));
        }
        let mut packet = vec![0u8; length];
        read.read_exact(&mut packet).await.map_err(io)?;
        let padding = usize::from(packet[0]);
        if padding < 4 || padding + 1 > length {
            return Err(LivenessFailure::Protocol("bad packet padding".into()));
        }
        let payload = packet[1..length - padding].to_vec();
        match payload.first() {
            None => return Err(LivenessFailure::Protocol("empty packet".into())),
            Some(&MSG_IGNORE | &MSG_DEBUG | &MSG_UNIMPLEMENTED) => continue,
            Some(&MSG_DISCONNECT) => return Err(LivenessFailure::Protocol("the server disconnected during the key exchange".into())),
            Some(_) => return Ok(payload),
        }
    }
}

fn check_algorithms(server_kexinit: &[u8]) -> Result<(), LivenessFailure> {
    let mut reader = Reader::new(server_kexinit.get(17..).unwrap_or_default());
    let kex = reader.string()?;
    let host_keys = reader.string()?;
    let has = |list: &[u8], name: &str| list.split(|b| *b == b',').any(|n| n == name.as_bytes());
    if !has(kex, KEX) && !has(kex, KEX_ALIAS) {
        return Err(LivenessFailure::Unsupported("the server offers no curve25519-sha256 key exchange".into()));
    }
    if !has(host_keys, HOST_KEY_ALG) {
        return Err(LivenessFailure::Unsupported("the server has no ssh-ed25519 host key".into()));
    }
    Ok(())
}

/// Our KEXINIT payload (ciphers and MACs are offered but never used: we stop after the
/// server's signature).
fn kexinit(cookie: &[u8; 16]) -> Vec<u8> {
    let mut payload = vec![MSG_KEXINIT];
    payload.extend_from_slice(cookie);
    for list in [
        &format!("{KEX},{KEX_ALIAS}")[..],
        HOST_KEY_ALG,
        "aes128-ctr,aes256-ctr,chacha20-poly1305@openssh.com",
        "aes128-ctr,aes256-ctr,chacha20-poly1305@openssh.com",
        "hmac-sha2-256,hmac-sha2-512",
        "hmac-sha2-256,hmac-sha2-512",
        "none",
        "none",
        "",
        "",
    ] {
        put_string(&mut payload, list.as_bytes());
    }
    payload.push(0); // first_kex_packet_follows
    payload.extend_from_slice(&[0, 0, 0, 0]); // reserved
    payload
}

/// An unencrypted binary packet (RFC 4253 §6): block size 8, at least 4 bytes of padding.
fn frame(payload: &[u8]) -> Vec<u8> {
    let mut padding = 8 - (payload.len() + 5) % 8;
    if padding < 4 {
        padding += 8;
    }
    let length = payload.len() + padding + 1;
    let mut packet = Vec::with_capacity(length + 4);
    packet.extend_from_slice(&(length as u32).to_be_bytes());
    packet.push(padding as u8);
    packet.extend_from_slice(payload);
    let mut pad = vec![0u8; padding];
    rand::rngs::OsRng.fill_bytes(&mut pad);
    packet.extend_from_slice(&pad);
    packet
}

fn put_string(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
    out.extend_from_slice(bytes);
}

/// The X25519 output as an SSH mpint (RFC 8731 §3.1: an unsigned big-endian integer).
fn put_mpint(out: &mut Vec<u8>, bytes: &[u8]) {
    let trimmed: &[u8] = {
        let first = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
        &bytes[first..]
    };
    if trimmed.first().is_some_and(|b| b & 0x80 != 0) {
        out.extend_from_slice(&((trimmed.len() + 1) as u32).to_be_bytes());
        out.push(0);
    } else {
        out.extend_from_slice(&(trimmed.len() as u32).to_be_bytes());
    }
    out.extend_from_slice(trimmed);
}

struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Reader { bytes }
    }

    fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    fn string(&mut self) -> Result<&'a [u8], LivenessFailure> {
        let bad = || LivenessFailure::Protocol("truncated field".into());
        let length = self.bytes.get(..4).ok_or_else(bad)?;
        let length = u32::from_be_bytes([length[0], length[1], length[2], length[3]]) as usize;
        let value = self.bytes.get(4..4 + length).ok_or_else(bad)?;
        self.bytes = &self.bytes[4 + length..];
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mpint_and_frames_follow_the_rfc() {
        let mut out = Vec::new();
        put_mpint(&mut out, &[0, 0, 0x80, 1]);
        assert_eq!(out, vec![0, 0, 0, 3, 0, 0x80, 1]);
        let mut out = Vec::new();
        put_mpint(&mut out, &[0, 0x7f]);
        assert_eq!(out, vec![0, 0, 0, 1, 0x7f]);
        for n in 0..40 {
            let packet = frame(&vec![7u8; n]);
            assert_eq!(packet.len() % 8, 0);
            assert!(usize::from(packet[4]) >= 4);
        }
    }

    #[test]
    fn pins_must_be_ed25519_lines() {
        assert!(matches!(host_key_blob("ssh-rsa AAAAB3NzaC1yc2E="), Err(LivenessFailure::Unsupported(_))));
        assert!(matches!(host_key_blob(""), Err(LivenessFailure::NoPin(_))));
        assert!(matches!(host_key_blob("ssh-ed25519 %%%"), Err(LivenessFailure::NoPin(_))));
        let key = ssh_key::PrivateKey::random(&mut ssh_key::rand_core::OsRng, ssh_key::Algorithm::Ed25519).unwrap_or_else(|e| panic!("{e}"));
        let line = key.public_key().to_openssh().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(host_key_blob(&line).map(|b| b.len()).ok(), Some(4 + 11 + 4 + 32));
    }

    #[tokio::test]
    async fn a_non_ssh_listener_and_a_closed_port_fail_with_causes() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap_or_else(|e| panic!("{e}"));
        let port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
        tokio::spawn(async move {
            if let Ok((mut socket, _)) = listener.accept().await {
                let _ = socket.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n").await;
            }
        });
        let key = ssh_key::PrivateKey::random(&mut ssh_key::rand_core::OsRng, ssh_key::Algorithm::Ed25519).unwrap_or_else(|e| panic!("{e}"));
        let line = key.public_key().to_openssh().unwrap_or_else(|e| panic!("{e}"));
        let failure = prove("127.0.0.1", port, &line, Duration::from_secs(5)).await.err();
        assert_eq!(failure.as_ref().map(LivenessFailure::cause), Some("allocation_not_ssh"), "{failure:?}");
        let closed = prove("127.0.0.1", port, &line, Duration::from_secs(5)).await.err();
        assert_eq!(closed.as_ref().map(LivenessFailure::cause), Some("allocation_unreachable"), "{closed:?}");
    }
}

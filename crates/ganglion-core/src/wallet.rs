//! Wallets in the Bittensor layout:
//!
//! ```text
//! <root>/<name>/coldkey            (encrypted by default)
//! <root>/<name>/coldkeypub.txt
//! <root>/<name>/hotkeys/<hotkey>   (plain by default)
//! <root>/<name>/hotkeys/<hotkey>pub.txt
//! ```
//!
//! `<root>` defaults to `~/.bittensor/wallets`. A wallet holding only `coldkeypub.txt` is a
//! supported, watch-only mode for servers that must never hold the coldkey secret.

use std::fs;
use std::path::{Path, PathBuf};

use crate::error::{CoreError, CoreResult};
use crate::fsutil;
use crate::keyfile::{self, Encryption, KdfParams, KeyMaterial, MAX_KEYFILE_BYTES};
use crate::keys::{Keypair, PublicKey};
use crate::password::Passwords;

/// File mode of every key file.
pub const KEYFILE_MODE: u32 = 0o600;

/// The default wallets root: `~/.bittensor/wallets`.
pub fn default_root() -> PathBuf {
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("."));
    home.join(".bittensor").join("wallets")
}

/// Expands a leading `~/` the way btwallet does for `--wallet.path`.
pub fn expand_home(path: &Path) -> PathBuf {
    match path.strip_prefix("~") {
        Ok(rest) => std::env::var_os("HOME").map(PathBuf::from).unwrap_or_default().join(rest),
        Err(_) => path.to_path_buf(),
    }
}

/// How to protect a key file when writing it.
#[derive(Debug, Clone)]
pub enum Protection<'a> {
    /// Plain JSON (hotkeys, and coldkeys with `--no-password`).
    Plain,
    /// `$NACL` with the password from these sources.
    Encrypted(&'a Passwords),
}

/// One wallet: a root directory, a wallet name and the hotkey name in use.
#[derive(Debug, Clone)]
pub struct Wallet {
    root: PathBuf,
    name: String,
    hotkey: String,
    kdf: KdfParams,
}

impl Wallet {
    /// A handle on `<root>/<name>` with hotkey `hotkey`. Nothing is read or created yet.
    pub fn new(root: impl AsRef<Path>, name: &str, hotkey: &str) -> CoreResult<Wallet> {
        validate_name("wallet", name)?;
        validate_name("hotkey", hotkey)?;
        Ok(Wallet {
            root: expand_home(root.as_ref()),
            name: name.to_string(),
            hotkey: hotkey.to_string(),
            kdf: KdfParams::SENSITIVE,
        })
    }

    /// Uses cheaper Argon2 parameters (tests only: files written this way do not open elsewhere).
    #[doc(hidden)]
    pub fn with_kdf(mut self, kdf: KdfParams) -> Wallet {
        self.kdf = kdf;
        self
    }

    /// The wallet's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The hotkey's name.
    pub fn hotkey_name(&self) -> &str {
        &self.hotkey
    }

    /// `<root>/<name>`.
    pub fn dir(&self) -> PathBuf {
        self.root.join(&self.name)
    }

    /// `<root>/<name>/coldkey`.
    pub fn coldkey_path(&self) -> PathBuf {
        self.dir().join("coldkey")
    }

    /// `<root>/<name>/coldkeypub.txt`.
    pub fn coldkeypub_path(&self) -> PathBuf {
        self.dir().join("coldkeypub.txt")
    }

    /// `<root>/<name>/hotkeys/<hotkey>`.
    pub fn hotkey_path(&self) -> PathBuf {
        self.dir().join("hotkeys").join(&self.hotkey)
    }

    /// `<root>/<name>/hotkeys/<hotkey>pub.txt`.
    pub fn hotkeypub_path(&self) -> PathBuf {
        self.dir().join("hotkeys").join(format!("{}pub.txt", self.hotkey))
    }

    /// The coldkey's public key: from `coldkeypub.txt`, else from a plain `coldkey`.
    pub fn coldkeypub(&self) -> CoreResult<PublicKey> {
        let pub_path = self.coldkeypub_path();
        if pub_path.exists() {
            return read_keyfile(&pub_path, None, self.kdf).map(|m| m.public());
        }
        let path = self.coldkey_path();
        if path.exists() {
            return read_keyfile(&path, None, self.kdf).map(|m| m.public());
        }
        Err(self.not_found("coldkey", pub_path, "create it with `ganglion wallet new-coldkey` or `regen-coldkeypub`"))
    }

    /// The coldkey secret (asks for the password if it is encrypted).
    pub fn coldkey(&self, passwords: &Passwords) -> CoreResult<Keypair> {
        let path = self.coldkey_path();
        if !path.exists() {
            if self.coldkeypub_path().exists() {
                return Err(CoreError::PublicOnly("coldkey: this wallet has only coldkeypub.txt"));
            }
            return Err(self.not_found("coldkey", path, "create it with `ganglion wallet new-coldkey` or `regen-coldkey`"));
        }
        match read_keyfile(&path, Some(passwords), self.kdf)? {
            KeyMaterial::Secret(keypair) => Ok(keypair),
            KeyMaterial::Public(_) => Err(CoreError::PublicOnly("coldkey")),
        }
    }

    /// The hotkey secret (hotkeys may be encrypted too).
    pub fn hotkey(&self, passwords: &Passwords) -> CoreResult<Keypair> {
        let path = self.hotkey_path();
        if !path.exists() {
            return Err(self.not_found(
                &format!("hotkey '{}'", self.hotkey),
                path,
                "create it with `ganglion wallet new-hotkey` or `regen-hotkey`",
            ));
        }
        match read_keyfile(&path, Some(passwords), self.kdf)? {
            KeyMaterial::Secret(keypair) => Ok(keypair),
            KeyMaterial::Public(_) => Err(CoreError::PublicOnly("hotkey")),
        }
    }

    /// The hotkey's public key: from `<hotkey>pub.txt`, else from a plain hotkey file.
    pub fn hotkeypub(&self) -> CoreResult<PublicKey> {
        let pub_path = self.hotkeypub_path();
        if pub_path.exists() {
            return read_keyfile(&pub_path, None, self.kdf).map(|m| m.public());
        }
        let path = self.hotkey_path();
        if path.exists() {
            return read_keyfile(&path, None, self.kdf).map(|m| m.public());
        }
        Err(self.not_found(&format!("hotkey '{}'", self.hotkey), path, "create it with `ganglion wallet new-hotkey`"))
    }

    /// Writes `coldkey` and `coldkeypub.txt`. Refuses to replace either unless `overwrite`.
    pub fn write_coldkey(&self, keypair: &Keypair, protection: Protection<'_>, overwrite: bool) -> CoreResult<()> {
        let path = self.coldkey_path();
        let pub_path = self.coldkeypub_path();
        refuse_overwrite(&[&path, &pub_path], overwrite)?;
        self.write_secret(&path, keypair, protection)?;
        fsutil::write_atomic(&pub_path, &keyfile::serialize_public(&keypair.public()), KEYFILE_MODE)
    }

    /// Writes only `coldkeypub.txt` (a watch-only wallet).
    pub fn write_coldkeypub(&self, public: &PublicKey, overwrite: bool) -> CoreResult<()> {
        let pub_path = self.coldkeypub_path();
        refuse_overwrite(&[&pub_path], overwrite)?;
        fsutil::write_atomic(&pub_path, &keyfile::serialize_public(public), KEYFILE_MODE)
    }

    /// Writes the hotkey file and `<hotkey>pub.txt`. Refuses to replace either unless `overwrite`.
    pub fn write_hotkey(&self, keypair: &Keypair, protection: Protection<'_>, overwrite: bool) -> CoreResult<()> {
        let path = self.hotkey_path();
        let pub_path = self.hotkeypub_path();
        refuse_overwrite(&[&path, &pub_path], overwrite)?;
        self.write_secret(&path, keypair, protection)?;
        fsutil::write_atomic(&pub_path, &keyfile::serialize_public(&keypair.public()), KEYFILE_MODE)
    }

    /// The names of this wallet's hotkeys, sorted.
    pub fn hotkey_names(&self) -> CoreResult<Vec<String>> {
        let dir = self.dir().join("hotkeys");
        let mut names = Vec::new();
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(names),
            Err(err) => return Err(CoreError::io("listing", dir, err)),
        };
        for entry in entries {
            let entry = entry.map_err(|err| CoreError::io("listing", &dir, err))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') || name.ends_with("pub.txt") || !entry.path().is_file() {
                continue;
            }
            names.push(name);
        }
        names.sort();
        Ok(names)
    }

    fn write_secret(&self, path: &Path, keypair: &Keypair, protection: Protection<'_>) -> CoreResult<()> {
        let plain = keyfile::serialize_keypair(keypair);
        let bytes = match protection {
            Protection::Plain => plain.to_vec(),
            Protection::Encrypted(passwords) => {
                let password = passwords.to_encrypt(path)?;
                keyfile::encrypt(&plain, &password, self.kdf)?
            }
        };
        fsutil::write_atomic(path, &bytes, KEYFILE_MODE)
    }

    fn not_found(&self, what: &str, path: PathBuf, hint: &'static str) -> CoreError {
        CoreError::KeyNotFound { what: format!("{what} of wallet '{}'", self.name), path, hint }
    }
}

/// Names of the wallets under `root` (directories), sorted.
pub fn list_wallets(root: &Path) -> CoreResult<Vec<String>> {
    let root = expand_home(root);
    let entries = match fs::read_dir(&root) {
        Ok(entries) => entries,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(err) => return Err(CoreError::io("listing", root, err)),
    };
    let mut names: Vec<String> = entries
        .filter_map(Result::ok)
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with('.'))
        .collect();
    names.sort();
    Ok(names)
}

/// Reads and, if needed, decrypts one key file.
pub fn read_keyfile(path: &Path, passwords: Option<&Passwords>, kdf: KdfParams) -> CoreResult<KeyMaterial> {
    let data = fsutil::read_bounded(path, MAX_KEYFILE_BYTES)?;
    match Encryption::detect(&data) {
        Encryption::Nacl => {
            let passwords = passwords.ok_or_else(|| CoreError::CorruptKeyfile {
                path: path.to_path_buf(),
                reason: "a public-key file is encrypted, which btwallet never does".into(),
            })?;
            let password = passwords.to_decrypt(path)?;
            let plain = keyfile::decrypt(&data, &password, kdf, path)?;
            keyfile::deserialize(&plain, path)
        }
        _ => keyfile::deserialize(&data, path),
    }
}

fn refuse_overwrite(paths: &[&Path], overwrite: bool) -> CoreResult<()> {
    if overwrite {
        return Ok(());
    }
    match paths.iter().find(|p| p.exists()) {
        Some(existing) => Err(CoreError::AlreadyExists { path: existing.to_path_buf() }),
        None => Ok(()),
    }
}

fn validate_name(what: &'static str, name: &str) -> CoreResult<()> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && name != "."
        && name != ".."
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok { Ok(()) } else { Err(CoreError::InvalidName { what, name: name.to_string() }) }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHEAP: KdfParams = KdfParams { memory_kib: 64, iterations: 1 };

    fn wallet(dir: &Path) -> Wallet {
        Wallet::new(dir, "w", "h").expect("names").with_kdf(CHEAP)
    }

    #[test]
    fn coldkey_and_hotkey_round_trip_with_layout_and_modes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let wallet = wallet(dir.path());
        let cold = Keypair::from_uri("//Alice").expect("uri");
        let hot = Keypair::from_uri("//Alice//hot").expect("uri");
        let pw_file = dir.path().join("pw");
        fs::write(&pw_file, "pw\n").expect("write");
        let passwords = Passwords::from_file(&pw_file);
        wallet.write_coldkey(&cold, Protection::Encrypted(&passwords), false).expect("coldkey");
        wallet.write_hotkey(&hot, Protection::Plain, false).expect("hotkey");

        assert!(dir.path().join("w/coldkey").exists());
        assert!(dir.path().join("w/coldkeypub.txt").exists());
        assert!(dir.path().join("w/hotkeys/h").exists());
        assert!(dir.path().join("w/hotkeys/hpub.txt").exists());
        assert!(fs::read(dir.path().join("w/coldkey")).expect("read").starts_with(b"$NACL"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            for f in ["w/coldkey", "w/coldkeypub.txt", "w/hotkeys/h", "w/hotkeys/hpub.txt"] {
                let mode = fs::metadata(dir.path().join(f)).expect("meta").permissions().mode() & 0o777;
                assert_eq!(mode, 0o600, "{f}");
            }
        }

        assert_eq!(wallet.coldkeypub().expect("pub"), cold.public());
        assert_eq!(wallet.coldkey(&passwords).expect("cold").public(), cold.public());
        assert_eq!(wallet.hotkey(&Passwords::default()).expect("hot").public(), hot.public());
        assert_eq!(wallet.hotkeypub().expect("hotpub"), hot.public());
        assert_eq!(wallet.hotkey_names().expect("names"), vec!["h".to_string()]);
        assert_eq!(list_wallets(dir.path()).expect("list"), vec!["w".to_string()]);

        let wrong = dir.path().join("wrong");
        fs::write(&wrong, "nope").expect("write");
        assert!(matches!(wallet.coldkey(&Passwords::from_file(&wrong)), Err(CoreError::WrongPassword { .. })));
    }

    #[test]
    fn never_overwrites_without_permission() {
        let dir = tempfile::tempdir().expect("tempdir");
        let wallet = wallet(dir.path());
        let first = Keypair::from_uri("//One").expect("uri");
        let second = Keypair::from_uri("//Two").expect("uri");
        wallet.write_hotkey(&first, Protection::Plain, false).expect("first");
        let err = wallet.write_hotkey(&second, Protection::Plain, false).expect_err("exists");
        assert!(matches!(err, CoreError::AlreadyExists { .. }));
        assert_eq!(wallet.hotkeypub().expect("pub"), first.public());
        wallet.write_hotkey(&second, Protection::Plain, true).expect("overwrite");
        assert_eq!(wallet.hotkeypub().expect("pub"), second.public());
    }

    #[test]
    fn watch_only_coldkey() {
        let dir = tempfile::tempdir().expect("tempdir");
        let wallet = wallet(dir.path());
        let cold = Keypair::from_uri("//Alice").expect("uri");
        wallet.write_coldkeypub(&cold.public(), false).expect("pub");
        assert_eq!(wallet.coldkeypub().expect("pub"), cold.public());
        assert!(matches!(wallet.coldkey(&Passwords::default()), Err(CoreError::PublicOnly(_))));
    }

    #[test]
    fn bad_names_and_missing_keys() {
        assert!(Wallet::new("/tmp", "../etc", "h").is_err());
        assert!(Wallet::new("/tmp", "w", "a/b").is_err());
        assert!(Wallet::new("/tmp", "", "h").is_err());
        let dir = tempfile::tempdir().expect("tempdir");
        let err = wallet(dir.path()).hotkey(&Passwords::default()).expect_err("missing");
        assert!(err.to_string().contains("new-hotkey"), "{err}");
    }

    #[test]
    fn truncated_and_oversized_keyfiles_are_clear_errors() {
        let dir = tempfile::tempdir().expect("tempdir");
        let wallet = wallet(dir.path());
        fs::create_dir_all(dir.path().join("w/hotkeys")).expect("mkdir");
        fs::write(wallet.hotkey_path(), b"{\"secretPhrase\": \"old leop").expect("write");
        assert!(matches!(wallet.hotkey(&Passwords::default()), Err(CoreError::CorruptKeyfile { .. })));
        fs::write(wallet.hotkey_path(), vec![b' '; 100_000]).expect("write");
        assert!(matches!(wallet.hotkey(&Passwords::default()), Err(CoreError::CorruptKeyfile { .. })));
        fs::write(wallet.hotkey_path(), b"$NACL").expect("write");
        let pw = dir.path().join("pw");
        fs::write(&pw, "x").expect("write");
        assert!(matches!(wallet.hotkey(&Passwords::from_file(&pw)), Err(CoreError::CorruptKeyfile { .. })));
    }
}

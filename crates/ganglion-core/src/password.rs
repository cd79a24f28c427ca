//! Where keyfile passwords come from: a file, the reference's `BT_PW_…` environment
//! variable, or an interactive prompt — and never a prompt without a terminal.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use zeroize::Zeroizing;

use crate::error::{CoreError, CoreResult};
use crate::fsutil;

/// The environment variable btwallet reads a keyfile's password from:
/// `BT_PW_` + the keyfile's path with `/` and `.` replaced by `_`, upper-cased.
pub fn env_var_name(keyfile: &Path) -> String {
    let path = keyfile.to_string_lossy().replace(['/', '.'], "_").to_uppercase();
    format!("BT_PW_{path}")
}

/// The value btwallet stores in that variable: base64(password XOR the variable's name).
pub fn encode_env_password(var_name: &str, password: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(xor_with(password.as_bytes(), var_name.as_bytes()))
}

fn xor_with(data: &[u8], key: &[u8]) -> Vec<u8> {
    data.iter().zip(key.iter().cycle()).map(|(d, k)| d ^ k).collect()
}

/// Reads the password for `keyfile` from its `BT_PW_…` variable, if set.
pub fn password_from_env(keyfile: &Path) -> CoreResult<Option<Zeroizing<String>>> {
    let name = env_var_name(keyfile);
    let Ok(value) = std::env::var(&name) else {
        return Ok(None);
    };
    let bad = |reason: &str| {
        CoreError::PasswordUnavailable(format!(
            "environment variable {name} is not a btwallet-encoded password ({reason}); unset it or set it with `ganglion wallet password-env`"
        ))
    };
    let bytes = base64::engine::general_purpose::STANDARD.decode(value.trim()).map_err(|_| bad("not base64"))?;
    let plain = String::from_utf8(xor_with(&bytes, name.as_bytes())).map_err(|_| bad("not UTF-8 once decoded"))?;
    Ok(Some(Zeroizing::new(plain)))
}

/// How a command obtains passwords. Built once from the CLI flags.
#[derive(Debug, Clone, Default)]
pub struct Passwords {
    /// `--password-file`: the first line of this file is the password.
    pub file: Option<PathBuf>,
    /// Whether an interactive prompt is allowed (it is still never shown without a TTY).
    pub allow_prompt: bool,
}

impl Passwords {
    /// Prompting allowed, no file.
    pub fn interactive() -> Passwords {
        Passwords { file: None, allow_prompt: true }
    }

    /// A password from a file only.
    pub fn from_file(path: impl Into<PathBuf>) -> Passwords {
        Passwords { file: Some(path.into()), allow_prompt: false }
    }

    /// The password to decrypt `keyfile`: file, then environment, then prompt.
    pub fn to_decrypt(&self, keyfile: &Path) -> CoreResult<Zeroizing<String>> {
        if let Some(password) = self.read_file_or_env(keyfile)? {
            return Ok(password);
        }
        self.prompt(&format!("Enter password to unlock {}: ", keyfile.display()), false)
    }

    /// The password to encrypt a new `keyfile`: file, then environment, then prompt (twice).
    pub fn to_encrypt(&self, keyfile: &Path) -> CoreResult<Zeroizing<String>> {
        let password = match self.read_file_or_env(keyfile)? {
            Some(password) => password,
            None => self.prompt(&format!("Choose a password for {}: ", keyfile.display()), true)?,
        };
        if password.is_empty() {
            return Err(CoreError::PasswordUnavailable(
                "the password is empty; choose a non-empty one or pass --no-password to store the key unencrypted".into(),
            ));
        }
        Ok(password)
    }

    fn read_file_or_env(&self, keyfile: &Path) -> CoreResult<Option<Zeroizing<String>>> {
        if let Some(file) = &self.file {
            let bytes = Zeroizing::new(fsutil::read_bounded(file, 4096).map_err(|err| match err {
                CoreError::CorruptKeyfile { .. } => {
                    CoreError::PasswordUnavailable(format!("password file {} is larger than 4 KiB", file.display()))
                }
                other => other,
            })?);
            let text = std::str::from_utf8(&bytes).map_err(|_| {
                CoreError::PasswordUnavailable(format!("password file {} is not UTF-8", file.display()))
            })?;
            let first_line = text.lines().next().unwrap_or("");
            return Ok(Some(Zeroizing::new(first_line.to_string())));
        }
        password_from_env(keyfile)
    }

    fn prompt(&self, question: &str, confirm: bool) -> CoreResult<Zeroizing<String>> {
        let has_tty = std::io::stdin().is_terminal() && std::io::stderr().is_terminal();
        if !self.allow_prompt || !has_tty {
            return Err(CoreError::PasswordUnavailable(
                "a password is needed but there is no terminal to ask on; pass --password-file FILE, \
                 or set the BT_PW_… variable btwallet uses (see `ganglion wallet password-env --help`)"
                    .into(),
            ));
        }
        let first = Zeroizing::new(
            rpassword::prompt_password(question)
                .map_err(|err| CoreError::PasswordUnavailable(format!("could not read the password: {err}")))?,
        );
        if confirm {
            let second = Zeroizing::new(
                rpassword::prompt_password("Repeat the password: ")
                    .map_err(|err| CoreError::PasswordUnavailable(format!("could not read the password: {err}")))?,
            );
            if *first != *second {
                return Err(CoreError::PasswordUnavailable("the two passwords differ; nothing was written".into()));
            }
        }
        Ok(first)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_var_name_matches_btwallet() {
        // bittensor_wallet.Keyfile("/tmp/btw/wallets/w1/coldkey").env_var_name()
        assert_eq!(env_var_name(Path::new("/tmp/btw/wallets/w1/coldkey")), "BT_PW__TMP_BTW_WALLETS_W1_COLDKEY");
        assert_eq!(env_var_name(Path::new("/h/.bittensor/x")), "BT_PW__H__BITTENSOR_X");
    }

    #[test]
    fn env_encoding_round_trips() {
        let encoded = encode_env_password("BT_PW_X", "hunter2 and more");
        let decoded = xor_with(&base64::engine::general_purpose::STANDARD.decode(encoded).expect("b64"), b"BT_PW_X");
        assert_eq!(decoded, b"hunter2 and more");
    }

    #[test]
    fn password_file_first_line_and_no_prompt_without_tty() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("pw");
        std::fs::write(&file, "s3cret\nignored\n").expect("write");
        let passwords = Passwords::from_file(&file);
        assert_eq!(&*passwords.to_decrypt(Path::new("/nowhere/coldkey")).expect("pw"), "s3cret");
        // With prompting off, a missing password is a clear error, never a block.
        let err = Passwords::default().to_decrypt(Path::new("/nowhere/ganglion-test-key")).expect_err("no tty");
        assert!(err.to_string().contains("--password-file"), "{err}");
        let missing = Passwords::from_file(dir.path().join("absent")).to_decrypt(Path::new("/x"));
        assert!(missing.is_err());
    }
}

//! `ganglion wallet …`: Bittensor-compatible wallet management, mirroring `btcli wallet`.
//!
//! Files are exactly btwallet's, so the same `~/.bittensor/wallets` works with btcli and
//! with Ganglion. Secrets are printed only when a key is created (its mnemonic, as btcli does).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use ganglion_core::keys::{Keypair, PublicKey, Signature};
use ganglion_core::password::{self, Passwords};
use ganglion_core::wallet::{self, Protection, Wallet};
use serde_json::json;

/// Which wallet and hotkey, with btcli's flag names.
#[derive(Debug, Clone, Args)]
pub(crate) struct WalletArgs {
    /// Wallet name (the directory under the wallets path).
    #[arg(long = "wallet.name", env = "BT_WALLET_NAME", default_value = "default")]
    pub(crate) name: String,
    /// Hotkey name (the file under `hotkeys/`).
    #[arg(long = "wallet.hotkey", env = "BT_WALLET_HOTKEY", default_value = "default")]
    pub(crate) hotkey: String,
    /// Where wallets live.
    #[arg(long = "wallet.path", env = "BT_WALLET_PATH", default_value = "~/.bittensor/wallets")]
    pub(crate) path: PathBuf,
    /// Read the keyfile password from the first line of this file (else: the `BT_PW_…`
    /// environment variable btwallet uses, else an interactive prompt; never a prompt
    /// without a terminal).
    #[arg(long = "password-file", env = "GANGLION_PASSWORD_FILE")]
    pub(crate) password_file: Option<PathBuf>,
}

impl WalletArgs {
    pub(crate) fn wallet(&self) -> anyhow::Result<Wallet> {
        Ok(Wallet::new(&self.path, &self.name, &self.hotkey)?)
    }

    pub(crate) fn passwords(&self) -> Passwords {
        Passwords { file: self.password_file.clone(), allow_prompt: true }
    }
}

/// Flags shared by commands that write keys.
#[derive(Debug, Clone, Args)]
pub(crate) struct WriteArgs {
    /// Replace existing key files (the old key is lost unless you have its mnemonic).
    #[arg(long)]
    overwrite: bool,
    /// Store the key unencrypted (the default for hotkeys; coldkeys are encrypted unless this is given).
    #[arg(long = "no-password")]
    no_password: bool,
    /// Encrypt the key with a password (the default for coldkeys).
    #[arg(long = "use-password", conflicts_with = "no_password")]
    use_password: bool,
}

/// Where a regenerated key comes from: exactly one of these.
#[derive(Debug, Clone, Args)]
#[group(required = true, multiple = false)]
pub(crate) struct KeySource {
    /// A BIP39 mnemonic of 12–24 words, in quotes.
    #[arg(long)]
    mnemonic: Option<String>,
    /// A 32-byte mini-secret seed as 0x-hex.
    #[arg(long)]
    seed: Option<String>,
    /// A Substrate secret URI such as `//Alice` or `<mnemonic>//hard/soft`.
    #[arg(long)]
    uri: Option<String>,
}

impl KeySource {
    fn keypair(&self) -> anyhow::Result<Keypair> {
        if let Some(mnemonic) = &self.mnemonic {
            return Keypair::from_phrase(mnemonic, None).context("reading --mnemonic");
        }
        if let Some(seed) = &self.seed {
            let digits = seed.strip_prefix("0x").unwrap_or(seed);
            let mut bytes = [0u8; 32];
            hex::decode_to_slice(digits, &mut bytes)
                .map_err(|_| anyhow::format_err!("--seed must be 0x followed by 64 hex digits (a 32-byte mini-secret)"))?;
            return Keypair::from_seed(&bytes).context("reading --seed");
        }
        if let Some(uri) = &self.uri {
            return Keypair::from_uri(uri).context("reading --uri");
        }
        bail!("give one of --mnemonic, --seed or --uri")
    }
}

#[derive(Debug, Subcommand)]
pub(crate) enum WalletCommand {
    /// Create a new coldkey and hotkey (like `btcli wallet create`).
    Create {
        #[command(flatten)]
        wallet: WalletArgs,
        #[command(flatten)]
        write: WriteArgs,
        /// Words in the new mnemonics.
        #[arg(long = "n-words", default_value_t = 12, value_parser = parse_word_count)]
        n_words: usize,
        #[arg(long)]
        json: bool,
    },
    /// Create a new coldkey (encrypted unless --no-password).
    NewColdkey {
        #[command(flatten)]
        wallet: WalletArgs,
        #[command(flatten)]
        write: WriteArgs,
        #[arg(long = "n-words", default_value_t = 12, value_parser = parse_word_count)]
        n_words: usize,
        #[arg(long)]
        json: bool,
    },
    /// Create a new hotkey (unencrypted unless --use-password).
    NewHotkey {
        #[command(flatten)]
        wallet: WalletArgs,
        #[command(flatten)]
        write: WriteArgs,
        #[arg(long = "n-words", default_value_t = 12, value_parser = parse_word_count)]
        n_words: usize,
        #[arg(long)]
        json: bool,
    },
    /// Restore a coldkey from its mnemonic, seed or URI.
    RegenColdkey {
        #[command(flatten)]
        wallet: WalletArgs,
        #[command(flatten)]
        source: KeySource,
        #[command(flatten)]
        write: WriteArgs,
        #[arg(long)]
        json: bool,
    },
    /// Write only `coldkeypub.txt` (a watch-only wallet, e.g. for servers).
    RegenColdkeypub {
        #[command(flatten)]
        wallet: WalletArgs,
        /// The coldkey's SS58 address.
        #[arg(long = "ss58", visible_alias = "ss58-address", conflicts_with = "public_key")]
        ss58: Option<String>,
        /// The coldkey's public key as 0x-hex.
        #[arg(long = "public-key", visible_alias = "public-key-hex")]
        public_key: Option<String>,
        #[arg(long)]
        overwrite: bool,
        #[arg(long)]
        json: bool,
    },
    /// Restore a hotkey from its mnemonic, seed or URI.
    RegenHotkey {
        #[command(flatten)]
        wallet: WalletArgs,
        #[command(flatten)]
        source: KeySource,
        #[command(flatten)]
        write: WriteArgs,
        #[arg(long)]
        json: bool,
    },
    /// List wallets and their hotkeys (public keys only; no password needed).
    List {
        /// Where wallets live.
        #[arg(long = "wallet.path", env = "BT_WALLET_PATH", default_value = "~/.bittensor/wallets")]
        path: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Show a wallet's coldkey and hotkey addresses (public keys only).
    Show {
        #[command(flatten)]
        wallet: WalletArgs,
        #[arg(long)]
        json: bool,
    },
    /// Sign a message with the hotkey (or the coldkey) and print the 0x-hex signature.
    Sign {
        #[command(flatten)]
        wallet: WalletArgs,
        /// The text to sign (its UTF-8 bytes are signed).
        #[arg(long)]
        message: String,
        /// Sign with the coldkey instead of the hotkey.
        #[arg(long = "use-coldkey")]
        use_coldkey: bool,
        #[arg(long)]
        json: bool,
    },
    /// Verify a signature. Exits 0 if valid, 1 if not.
    Verify {
        #[command(flatten)]
        wallet: WalletArgs,
        /// The text that was signed.
        #[arg(long)]
        message: String,
        /// The 0x-hex signature.
        #[arg(long)]
        signature: String,
        /// The signer's SS58 address or 0x public key (default: the wallet's hotkey, or coldkey with --use-coldkey).
        #[arg(long = "ss58", visible_alias = "public-key")]
        signer: Option<String>,
        /// Check against the wallet's coldkey instead of its hotkey.
        #[arg(long = "use-coldkey")]
        use_coldkey: bool,
        #[arg(long)]
        json: bool,
    },
    /// Print the `BT_PW_…` variable btwallet reads a keyfile's password from.
    PasswordEnv {
        #[command(flatten)]
        wallet: WalletArgs,
        /// For the hotkey instead of the coldkey.
        #[arg(long = "hotkey-file")]
        hotkey_file: bool,
    },
}

fn parse_word_count(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(n @ (12 | 15 | 18 | 21 | 24)) => Ok(n),
        _ => Err("must be 12, 15, 18, 21 or 24".into()),
    }
}

fn key_json(keypair_public: &PublicKey) -> serde_json::Value {
    json!({ "ss58": keypair_public.to_ss58(), "public_key": keypair_public.to_hex() })
}

fn protection<'a>(write: &WriteArgs, passwords: &'a Passwords, encrypt_by_default: bool) -> Protection<'a> {
    let encrypt = if encrypt_by_default { !write.no_password } else { write.use_password };
    if encrypt { Protection::Encrypted(passwords) } else { Protection::Plain }
}

fn print_new_key(kind: &str, keypair: &Keypair, json: bool, results: &mut Vec<serde_json::Value>) {
    let mut value = key_json(&keypair.public());
    value["kind"] = json!(kind);
    if let Some(phrase) = keypair.phrase() {
        value["mnemonic"] = json!(phrase);
    }
    if json {
        results.push(value);
    } else {
        println!("{kind}: {}", keypair.public().to_ss58());
        if let Some(phrase) = keypair.phrase() {
            println!(
                "  mnemonic (write it down and keep it secret; it restores the key with `ganglion wallet regen-{kind} --mnemonic`):\n  {phrase}"
            );
        }
    }
}

fn emit_json(value: serde_json::Value) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(&value)?);
    Ok(())
}

pub(crate) fn run(command: WalletCommand) -> anyhow::Result<ExitCode> {
    match command {
        WalletCommand::Create { wallet: args, write, n_words, json } => {
            let wallet = args.wallet()?;
            let passwords = args.passwords();
            let cold = Keypair::generate(n_words)?;
            let hot = Keypair::generate(n_words)?;
            // Check both before writing either, so a refusal leaves nothing half-created.
            for path in [wallet.coldkey_path(), wallet.coldkeypub_path(), wallet.hotkey_path()] {
                if path.exists() && !write.overwrite {
                    bail!("{} already exists; pass --overwrite to replace it", path.display());
                }
            }
            wallet.write_coldkey(&cold, protection(&write, &passwords, true), write.overwrite)?;
            wallet.write_hotkey(&hot, protection(&write, &passwords, false), write.overwrite)?;
            let mut results = Vec::new();
            print_new_key("coldkey", &cold, json, &mut results);
            print_new_key("hotkey", &hot, json, &mut results);
            if json {
                emit_json(json!({ "wallet": wallet.name(), "hotkey_name": wallet.hotkey_name(), "keys": results }))?;
            }
        }
        WalletCommand::NewColdkey { wallet: args, write, n_words, json } => {
            let wallet = args.wallet()?;
            let keypair = Keypair::generate(n_words)?;
            wallet.write_coldkey(&keypair, protection(&write, &args.passwords(), true), write.overwrite)?;
            finish_new("coldkey", &keypair, json)?;
        }
        WalletCommand::NewHotkey { wallet: args, write, n_words, json } => {
            let wallet = args.wallet()?;
            let keypair = Keypair::generate(n_words)?;
            wallet.write_hotkey(&keypair, protection(&write, &args.passwords(), false), write.overwrite)?;
            finish_new("hotkey", &keypair, json)?;
        }
        WalletCommand::RegenColdkey { wallet: args, source, write, json } => {
            let wallet = args.wallet()?;
            let keypair = source.keypair()?;
            wallet.write_coldkey(&keypair, protection(&write, &args.passwords(), true), write.overwrite)?;
            finish_regen("coldkey", &wallet, &keypair.public(), json)?;
        }
        WalletCommand::RegenColdkeypub { wallet: args, ss58, public_key, overwrite, json } => {
            let wallet = args.wallet()?;
            let public = match (ss58, public_key) {
                (Some(address), _) => PublicKey::from_ss58(&address)?,
                (None, Some(hex)) => PublicKey::from_hex(&hex)?,
                (None, None) => bail!("give --ss58 ADDRESS or --public-key 0x…"),
            };
            wallet.write_coldkeypub(&public, overwrite)?;
            finish_regen("coldkeypub", &wallet, &public, json)?;
        }
        WalletCommand::RegenHotkey { wallet: args, source, write, json } => {
            let wallet = args.wallet()?;
            let keypair = source.keypair()?;
            wallet.write_hotkey(&keypair, protection(&write, &args.passwords(), false), write.overwrite)?;
            finish_regen("hotkey", &wallet, &keypair.public(), json)?;
        }
        WalletCommand::List { path, json } => list(&path, json)?,
        WalletCommand::Show { wallet: args, json } => show(&args, json)?,
        WalletCommand::Sign { wallet: args, message, use_coldkey, json } => {
            let wallet = args.wallet()?;
            let keypair =
                if use_coldkey { wallet.coldkey(&args.passwords())? } else { wallet.hotkey(&args.passwords())? };
            let signature = keypair.sign(message.as_bytes());
            if json {
                emit_json(json!({ "signature": signature.to_hex(), "ss58": keypair.public().to_ss58() }))?;
            } else {
                println!("{}", signature.to_hex());
            }
        }
        WalletCommand::Verify { wallet: args, message, signature, signer, use_coldkey, json } => {
            let signature = Signature::from_hex(&signature).context("reading --signature")?;
            let signer = match signer {
                Some(text) => text.parse::<PublicKey>().context("reading --ss58")?,
                None => {
                    let wallet = args.wallet()?;
                    if use_coldkey { wallet.coldkeypub()? } else { wallet.hotkeypub()? }
                }
            };
            let valid = signer.verify(message.as_bytes(), &signature);
            if json {
                emit_json(json!({ "valid": valid, "ss58": signer.to_ss58() }))?;
            } else if valid {
                println!("valid signature by {signer}");
            } else {
                println!("INVALID: the signature was not made by {signer} over this message");
            }
            return Ok(if valid { ExitCode::SUCCESS } else { ExitCode::from(1) });
        }
        WalletCommand::PasswordEnv { wallet: args, hotkey_file } => {
            let wallet = args.wallet()?;
            let path = if hotkey_file { wallet.hotkey_path() } else { wallet.coldkey_path() };
            let absolute = std::path::absolute(&path).unwrap_or(path);
            let name = password::env_var_name(&absolute);
            let secret = args.passwords().to_decrypt(&absolute)?;
            println!("export {name}={}", password::encode_env_password(&name, &secret));
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn finish_new(kind: &str, keypair: &Keypair, json: bool) -> anyhow::Result<()> {
    let mut results = Vec::new();
    print_new_key(kind, keypair, json, &mut results);
    if let Some(value) = results.pop() {
        emit_json(value)?;
    }
    Ok(())
}

fn finish_regen(kind: &str, wallet: &Wallet, public: &PublicKey, json: bool) -> anyhow::Result<()> {
    if json {
        let mut value = key_json(public);
        value["kind"] = json!(kind);
        value["wallet"] = json!(wallet.name());
        emit_json(value)?;
    } else {
        println!("{kind} of wallet '{}' restored: {public}", wallet.name());
    }
    Ok(())
}

fn show(args: &WalletArgs, json: bool) -> anyhow::Result<()> {
    let wallet = args.wallet()?;
    let coldkey = wallet.coldkeypub();
    let hotkey = wallet.hotkeypub();
    if let (Err(cold_err), Err(_)) = (&coldkey, &hotkey) {
        bail!("wallet '{}' has no keys at {}: {cold_err}", wallet.name(), wallet.dir().display());
    }
    if json {
        emit_json(json!({
            "wallet": wallet.name(),
            "path": wallet.dir(),
            "coldkey": coldkey.as_ref().ok().map(key_json),
            "hotkey_name": wallet.hotkey_name(),
            "hotkey": hotkey.as_ref().ok().map(key_json),
        }))?;
    } else {
        println!("wallet   {} ({})", wallet.name(), wallet.dir().display());
        match &coldkey {
            Ok(key) => println!("coldkey  {key}  {}", key.to_hex()),
            Err(err) => println!("coldkey  - ({err})"),
        }
        match &hotkey {
            Ok(key) => println!("hotkey   {}: {key}  {}", wallet.hotkey_name(), key.to_hex()),
            Err(err) => println!("hotkey   {}: - ({err})", wallet.hotkey_name()),
        }
    }
    Ok(())
}

fn list(root: &std::path::Path, json: bool) -> anyhow::Result<()> {
    let names = wallet::list_wallets(root)?;
    let mut entries = Vec::new();
    for name in &names {
        let Ok(wallet) = Wallet::new(root, name, "default") else { continue };
        let coldkey = wallet.coldkeypub().ok();
        let mut hotkeys = Vec::new();
        for hotkey_name in wallet.hotkey_names()? {
            let Ok(hot_wallet) = Wallet::new(root, name, &hotkey_name) else { continue };
            let public = hot_wallet.hotkeypub().ok();
            hotkeys.push((hotkey_name, public));
        }
        entries.push((name.clone(), coldkey, hotkeys));
    }
    if json {
        let value: Vec<_> = entries
            .iter()
            .map(|(name, cold, hots)| {
                json!({
                    "name": name,
                    "coldkey": cold.as_ref().map(key_json),
                    "hotkeys": hots.iter().map(|(hot_name, public)| json!({
                        "name": hot_name,
                        "ss58": public.map(|p| p.to_ss58()),
                        "public_key": public.map(|p| p.to_hex()),
                    })).collect::<Vec<_>>(),
                })
            })
            .collect();
        emit_json(json!(value))?;
        return Ok(());
    }
    if entries.is_empty() {
        println!("no wallets under {}; create one with `ganglion wallet create`", wallet::expand_home(root).display());
    }
    for (name, cold, hots) in entries {
        let cold = cold.map(|c| c.to_ss58()).unwrap_or_else(|| "(no coldkey)".into());
        println!("{name}  {cold}");
        for (hot_name, public) in hots {
            let public = public.map(|p| p.to_ss58()).unwrap_or_else(|| "(unreadable)".into());
            println!("  └─ {hot_name}  {public}");
        }
    }
    Ok(())
}

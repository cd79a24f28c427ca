//! Wallet interop with the reference implementation, the `bittensor-wallet` PyPI package:
//! keyfiles written by either side load on the other with the same addresses (including a
//! `$NACL`-encrypted coldkey), and signatures made by either side verify on the other.

#[path = "../../../../tests/support/python.rs"]
mod python;

use std::path::Path;
use std::process::Command;

fn ganglion(args: &[&str]) -> (bool, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_ganglion"))
        .args(args)
        .env_remove("BT_WALLET_NAME")
        .env_remove("BT_WALLET_HOTKEY")
        .env_remove("BT_WALLET_PATH")
        .output()
        .expect("run ganglion");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn ganglion_json(args: &[&str]) -> serde_json::Value {
    let (ok, stdout, stderr) = ganglion(args);
    assert!(ok, "ganglion {args:?} failed:\n{stderr}");
    serde_json::from_str(&stdout).unwrap_or_else(|err| panic!("ganglion {args:?} printed no JSON ({err}):\n{stdout}"))
}

/// The reference prints progress lines ("Decrypting...") before its JSON; take the last line.
fn last_json_line(text: &str) -> serde_json::Value {
    let line = text.lines().rev().find(|l| l.starts_with('{')).unwrap_or_else(|| panic!("no JSON in {text}"));
    serde_json::from_str(line).expect("json")
}

fn wallet_flags<'a>(root: &'a str, name: &'a str) -> Vec<&'a str> {
    vec!["--wallet.path", root, "--wallet.name", name, "--wallet.hotkey", "hot"]
}

#[test]
fn reference_wallets_load_in_ganglion() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().to_str().expect("utf8");
    let pw_file = dir.path().join("pw");
    std::fs::write(&pw_file, "correct horse\n").expect("write");
    let created = last_json_line(&python::run_script("wallet_ref.py", &["create", root, "ref", "hot", "correct horse"], &[]));

    let mut args = vec!["wallet", "show", "--json"];
    args.extend(wallet_flags(root, "ref"));
    let shown = ganglion_json(&args);
    assert_eq!(shown["coldkey"]["ss58"], created["coldkey"]);
    assert_eq!(shown["hotkey"]["ss58"], created["hotkey"]);

    // Decrypting the reference's $NACL coldkey proves the Argon2i/secretbox parameters match.
    let mut args = vec!["wallet", "sign", "--use-coldkey", "--message", "from ganglion", "--json", "--password-file"];
    let pw = pw_file.to_str().expect("utf8");
    args.push(pw);
    args.extend(wallet_flags(root, "ref"));
    let signed = ganglion_json(&args);
    assert_eq!(signed["ss58"], created["coldkey"]);
    let verdict = python::run_script(
        "wallet_ref.py",
        &["verify", created["coldkey"].as_str().expect("str"), "from ganglion", signed["signature"].as_str().expect("str")],
        &[],
    );
    assert_eq!(verdict.trim(), "true", "reference must accept Ganglion's signature");

    // A wrong password is a clear error, not a panic.
    let bad_pw = dir.path().join("bad");
    std::fs::write(&bad_pw, "wrong\n").expect("write");
    let mut args = vec!["wallet", "sign", "--use-coldkey", "--message", "x", "--password-file"];
    let bad = bad_pw.to_str().expect("utf8");
    args.push(bad);
    args.extend(wallet_flags(root, "ref"));
    let (ok, _, stderr) = ganglion(&args);
    assert!(!ok);
    assert!(stderr.contains("wrong password"), "{stderr}");

    // Reference signature over the hotkey verifies in Ganglion.
    let signature = python::run_script("wallet_ref.py", &["sign", root, "ref", "hot", "from python"], &[]);
    let hotkey = created["hotkey"].as_str().expect("str");
    let (ok, stdout, stderr) =
        ganglion(&["wallet", "verify", "--message", "from python", "--signature", signature.trim(), "--ss58", hotkey]);
    assert!(ok, "Ganglion must accept the reference's signature: {stdout}{stderr}");
    let (ok, _, _) =
        ganglion(&["wallet", "verify", "--message", "tampered", "--signature", signature.trim(), "--ss58", hotkey]);
    assert!(!ok, "a signature over another message must be refused");
}

#[test]
fn ganglion_wallets_load_in_the_reference() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().to_str().expect("utf8");
    let pw_file = dir.path().join("pw");
    std::fs::write(&pw_file, "s3cret pass\n").expect("write");
    let pw = pw_file.to_str().expect("utf8");
    let mut args = vec!["wallet", "create", "--json", "--password-file", pw];
    args.extend(wallet_flags(root, "ours"));
    let created = ganglion_json(&args);
    let keys = created["keys"].as_array().expect("keys");
    let coldkey = keys[0]["ss58"].as_str().expect("coldkey");
    let hotkey = keys[1]["ss58"].as_str().expect("hotkey");
    assert!(std::fs::read(Path::new(root).join("ours/coldkey")).expect("read").starts_with(b"$NACL"));

    let loaded = last_json_line(&python::run_script("wallet_ref.py", &["load", root, "ours", "hot", "s3cret pass"], &[]));
    assert_eq!(loaded["coldkey"], coldkey);
    assert_eq!(loaded["coldkeypub"], coldkey);
    assert_eq!(loaded["hotkey"], hotkey);
    assert_eq!(loaded["hotkeypub"], hotkey);

    let mut args = vec!["wallet", "sign", "--message", "hotkey says hi", "--json"];
    args.extend(wallet_flags(root, "ours"));
    let signed = ganglion_json(&args);
    let verdict = python::run_script(
        "wallet_ref.py",
        &["verify", hotkey, "hotkey says hi", signed["signature"].as_str().expect("str")],
        &[],
    );
    assert_eq!(verdict.trim(), "true");
}

#[test]
fn password_environment_variable_matches_the_reference() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().to_str().expect("utf8");
    let pw_file = dir.path().join("pw");
    std::fs::write(&pw_file, "env pass\n").expect("write");
    let pw = pw_file.to_str().expect("utf8");
    let mut args = vec!["wallet", "new-coldkey", "--json", "--password-file", pw];
    args.extend(wallet_flags(root, "envw"));
    ganglion_json(&args);
    let mut args = vec!["wallet", "password-env", "--password-file", pw];
    args.extend(wallet_flags(root, "envw"));
    let (ok, stdout, stderr) = ganglion(&args);
    assert!(ok, "{stderr}");
    let assignment = stdout.trim().strip_prefix("export ").expect("export line");
    let (name, value) = assignment.split_once('=').expect("NAME=value");
    assert!(name.starts_with("BT_PW_") && name.ends_with("_ENVW_COLDKEY"), "{name}");
    // The reference decodes what we encoded…
    let decoded = python::run_script("wallet_ref.py", &["env-password", name], &[(name, value)]);
    assert_eq!(decoded.trim(), "env pass");
    // …and Ganglion unlocks the coldkey from the variable alone, with no prompt and no file.
    let output = Command::new(env!("CARGO_BIN_EXE_ganglion"))
        .args(["wallet", "sign", "--use-coldkey", "--message", "m"])
        .args(wallet_flags(root, "envw"))
        .env(name, value)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
}

#[test]
fn no_terminal_means_a_clear_error_not_a_prompt() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().to_str().expect("utf8");
    let output = Command::new(env!("CARGO_BIN_EXE_ganglion"))
        .args(["wallet", "new-coldkey"])
        .args(wallet_flags(root, "tty"))
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("no terminal") && stderr.contains("--password-file"), "{stderr}");
    assert!(!Path::new(root).join("tty/coldkey").exists(), "nothing is written on failure");
}

#[test]
fn regen_coldkey_prints_the_vector_address() {
    let dir = tempfile::tempdir().expect("tempdir");
    let output = Command::new(env!("CARGO_BIN_EXE_ganglion"))
        .args([
            "wallet",
            "regen-coldkey",
            "--mnemonic",
            "old leopard transfer rib spatial phone calm indicate online fire caution review",
            "--no-password",
            "--json",
        ])
        .env("HOME", dir.path())
        .env_remove("BT_WALLET_PATH")
        .env_remove("BT_WALLET_NAME")
        .output()
        .expect("run");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let value: serde_json::Value = serde_json::from_slice(&output.stdout).expect("json");
    assert_eq!(value["ss58"], "5HDvhV6WDCjCKyrXqGQSDYqQAzkzabNhctmiDYEqgBC66BsX");
    assert!(dir.path().join(".bittensor/wallets/default/coldkeypub.txt").exists());
}

const ZERO_SIGNATURE: &str = "0x00000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000";

#[test]
fn bad_input_gives_clear_errors() {
    let cases: &[(&[&str], &str)] = &[
        (&["wallet", "verify", "--message", "m", "--signature", "0xzz", "--ss58", "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY"], "signature"),
        (&["wallet", "verify", "--message", "m", "--signature", ZERO_SIGNATURE, "--ss58", "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQZ"], "checksum"),
        (&["wallet", "regen-hotkey", "--mnemonic", "one two three", "--wallet.path", "/nonexistent-ganglion"], "mnemonic"),
        (&["wallet", "regen-hotkey", "--seed", "0x1234", "--wallet.path", "/nonexistent-ganglion"], "--seed"),
        (&["wallet", "show", "--wallet.name", "../x"], "invalid wallet name"),
    ];
    for (args, needle) in cases {
        let (ok, _, stderr) = ganglion(args);
        assert!(!ok, "{args:?} should fail");
        assert!(stderr.contains(needle), "{args:?}: expected {needle:?} in:\n{stderr}");
        assert!(!stderr.contains("panicked"), "{args:?} panicked:\n{stderr}");
    }
}

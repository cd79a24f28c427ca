"""Reference side of the wallet interop test: the `bittensor-wallet` PyPI package.

Usage:
  wallet_ref.py create ROOT NAME HOTKEY PASSWORD   -> writes an encrypted coldkey + plain hotkey, prints JSON
  wallet_ref.py load ROOT NAME HOTKEY PASSWORD     -> loads (decrypting the coldkey), prints JSON
  wallet_ref.py sign ROOT NAME HOTKEY MESSAGE      -> hotkey signature as 0x-hex
  wallet_ref.py verify SS58 MESSAGE SIGNATURE      -> prints true/false
  wallet_ref.py env-password VAR                   -> the password decoded from $VAR the way btwallet does
"""
import json
import sys

from bittensor_wallet import Keypair, Wallet
from bittensor_wallet import keyfile as kf


def wallet(root, name, hotkey):
    return Wallet(name=name, hotkey=hotkey, path=root)


def main(argv):
    cmd = argv[0]
    if cmd == "create":
        root, name, hotkey, password = argv[1:5]
        w = wallet(root, name, hotkey)
        cold = Keypair.create_from_mnemonic(Keypair.generate_mnemonic(12))
        hot = Keypair.create_from_mnemonic(Keypair.generate_mnemonic(12))
        w.set_coldkey(cold, encrypt=True, overwrite=True, coldkey_password=password)
        w.set_coldkeypub(cold, overwrite=True)
        w.set_hotkey(hot, encrypt=False, overwrite=True)
        w.set_hotkeypub(hot, overwrite=True)
        data = open(f"{root}/{name}/coldkey", "rb").read()
        assert data.startswith(b"$NACL"), "reference coldkey should be $NACL-encrypted"
        print(json.dumps({"coldkey": cold.ss58_address, "hotkey": hot.ss58_address}))
    elif cmd == "load":
        root, name, hotkey, password = argv[1:5]
        w = wallet(root, name, hotkey)
        cold = w.get_coldkey(password=password)
        hot = w.get_hotkey()
        print(json.dumps({
            "coldkey": cold.ss58_address,
            "coldkeypub": w.get_coldkeypub().ss58_address,
            "hotkey": hot.ss58_address,
            "hotkeypub": w.get_hotkeypub().ss58_address,
        }))
    elif cmd == "sign":
        root, name, hotkey, message = argv[1:5]
        print("0x" + wallet(root, name, hotkey).get_hotkey().sign(message.encode()).hex())
    elif cmd == "verify":
        ss58, message, signature = argv[1:4]
        ok = Keypair(ss58_address=ss58).verify(message.encode(), bytes.fromhex(signature.removeprefix("0x")))
        print("true" if ok else "false")
    elif cmd == "env-password":
        print(kf.get_password_from_environment(argv[1]))
    else:
        raise SystemExit(f"unknown command {cmd}")


if __name__ == "__main__":
    main(sys.argv[1:])

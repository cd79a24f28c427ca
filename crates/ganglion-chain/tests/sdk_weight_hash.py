"""Computes the real SDK's commit hashes for the cases of tests/it/sdk_hash.rs.

Input (argv[1], JSON): [{"address": ss58, "netuid": int, "uids": [...], "values": [...],
"salt": [...], "version_key": int}, ...]. For each case, calls
bittensor.utils.weight_utils.generate_weight_hash and writes its answer (a 0x-prefixed hex
string) as one line to argv[2] (a file, not stdout, which the SDK's logging may write to).
Nothing here reimplements the SDK."""
import json
import sys

from bittensor.utils.weight_utils import generate_weight_hash

with open(sys.argv[1]) as f:
    cases = json.load(f)
out = []
for c in cases:
    out.append(
        generate_weight_hash(
            address=c["address"],
            netuid=c["netuid"],
            uids=c["uids"],
            values=c["values"],
            version_key=c["version_key"],
            salt=c["salt"],
        )
    )
with open(sys.argv[2], "w") as f:
    f.write("\n".join(out) + "\n")

"""Runs the real SDK's weight processing on the cases of tests/it/sdk_weights.rs.

Input (argv[1], JSON): [{"uids": [...], "w": [float32 bit patterns], "n": int, "min": int,
"mwl": int, "q": int}, ...]. For each case, calls bittensor.utils.weight_utils
.process_weights_for_netuid with a stub subtensor (min_allowed_weights / max_weight_limit, the
two hyperparameter reads it makes, returning what the real Subtensor returns for the raw chain
values) and a stub metagraph (.n as the real Metagraph holds it, a 0-d int64 array), then
convert_weights_and_uids_for_emit. Writes one line per case to argv[2] (a file, not stdout,
which the SDK's logging may write to):
  ok|<processed uids>|<processed weights as float64 bit patterns, hex>|<emit uids>|<emit values>
  process_error|<exception class>
  convert_error|<processed uids>|<processed weights as float64 bits>|<exception class>
Lists are comma-separated. Nothing here reimplements the SDK."""
import json
import os
import sys

os.environ.pop("USE_TORCH", None)  # the SDK's numpy path

import numpy as np
from bittensor.utils import u16_normalized_float
from bittensor.utils.weight_utils import convert_weights_and_uids_for_emit, process_weights_for_netuid


class Subtensor:
    def __init__(self, min_allowed_weights, max_weights_limit):
        self._min = min_allowed_weights
        self._max = max_weights_limit

    def min_allowed_weights(self, netuid, block=None):
        return int(self._min)

    def max_weight_limit(self, netuid, block=None):
        return u16_normalized_float(int(self._max))


class Metagraph:
    def __init__(self, n):
        self.n = np.array(n, dtype=np.int64)


def ints(xs):
    return ",".join(str(int(x)) for x in xs)


def bits(xs):
    return ",".join(format(int(b), "x") for b in np.asarray(xs, dtype=np.float64).view(np.uint64))


out = []
for case in json.load(open(sys.argv[1], encoding="utf-8")):
    uids = np.array(case["uids"], dtype=np.int64)
    weights = np.array(case["w"], dtype=np.uint32).view(np.float32)
    try:
        p_uids, p_weights = process_weights_for_netuid(
            uids, weights, 1, Subtensor(case["min"], case["mwl"]), Metagraph(case["n"]), case["q"]
        )
    except Exception as e:  # noqa: BLE001 - the class name is what the test compares
        out.append(f"process_error|{type(e).__name__}")
        continue
    try:
        e_uids, e_vals = convert_weights_and_uids_for_emit(p_uids, p_weights)
    except Exception as e:  # noqa: BLE001
        out.append(f"convert_error|{ints(p_uids)}|{bits(p_weights)}|{type(e).__name__}")
        continue
    out.append(f"ok|{ints(p_uids)}|{bits(p_weights)}|{ints(e_uids)}|{ints(e_vals)}")
with open(sys.argv[2], "w", encoding="utf-8") as f:
    f.write("\n".join(out) + "\n")

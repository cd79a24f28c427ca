"""Thin caller of macrocosm-os/taoverse (PyPI `taoverse`, installed without its dependencies
by scripts/setup-venv): reads cases as JSON from argv[1], writes answers as JSON to argv[2].

Only pure modules are imported: taoverse.model.data (needs transformers, present in the venv,
for type names only), taoverse.model.utils, taoverse.model.storage.disk.utils and
taoverse.model.competition.epsilon.
"""
import json
import sys

from taoverse.model.competition.epsilon import FixedEpsilon, LinearDecay
from taoverse.model.data import ModelId
from taoverse.model.storage.disk.utils import get_hash_of_directory
from taoverse.model.utils import get_hash_of_two_strings

cases = json.load(open(sys.argv[1]))
out = {}
out["render"] = [
    ModelId(
        namespace=c["namespace"],
        name=c["name"],
        commit=c["commit"],
        secure_hash=c["hash"],
        competition_id=c["competition_id"],
    ).to_compressed_str()
    for c in cases["render"]
]


def parsed(s):
    m = ModelId.from_compressed_str(s, default_competition_id=-1)
    return {
        "namespace": m.namespace,
        "name": m.name,
        "commit": m.commit,
        "hash": m.secure_hash,
        "competition_id": m.competition_id,
    }


out["parse"] = [parsed(s) for s in cases["parse"]]
out["dirhash"] = [get_hash_of_directory(p) for p in cases["dirhash"]]
out["bind"] = [get_hash_of_two_strings(a, b) for a, b in cases["bind"]]
out["decay"] = [
    LinearDecay(s, e, d).compute_epsilon(current_block=cur, model_block=blk)
    for s, e, d, cur, blk in cases["decay"]
]
out["fixed"] = [FixedEpsilon(e).compute_epsilon(cur, blk) for e, cur, blk in cases["fixed"]]
json.dump(out, open(sys.argv[2], "w"))

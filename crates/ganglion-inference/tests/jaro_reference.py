"""Reference Jaro / Jaro-Winkler values from the `jellyfish` package for the pairs in a JSON
file: [[a, b], ...] -> [[jaro, jaro_winkler], ...] on stdout. Used by tests/jaro_reference.rs."""
import json
import sys

import jellyfish

pairs = json.load(open(sys.argv[1], encoding="utf-8"))
out = [[jellyfish.jaro_similarity(a, b), jellyfish.jaro_winkler_similarity(a, b)] for a, b in pairs]
json.dump(out, sys.stdout)

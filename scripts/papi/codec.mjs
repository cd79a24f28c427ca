// The independent side of the subtensor call-encoding test: polkadot-api's own SCALE codecs,
// built from a runtime's metadata (`@polkadot-api/metadata-builders`), decode the call bytes
// our Rust code produced and encode the same arguments again from JSON.
//
//   node codec.mjs METADATA.scale CALLS.json
//
// CALLS.json: [{ "pallet": "SubtensorModule", "call": "set_weights", "hex": "0x…", "args": {…} }]
// where `args` is the call's arguments as polkadot-api values in JSON (integers as numbers or
// decimal strings, byte strings as "0x…" hex, accounts as SS58 strings, enums as
// {"type": "Variant", "value": …}).
// Prints, per call: the pallet/call indices polkadot-api resolves, the arguments it decodes
// from our bytes (as JSON) and the hex it encodes from `args`.
import { readFileSync } from "node:fs";
import { decAnyMetadata, unifyMetadata, Binary } from "@polkadot-api/substrate-bindings";
import { getDynamicBuilder, getLookupFn } from "@polkadot-api/metadata-builders";

const [metadataPath, callsPath] = process.argv.slice(2);
const metadata = unifyMetadata(decAnyMetadata(readFileSync(metadataPath)));
const builder = getDynamicBuilder(getLookupFn(metadata));

const fromHex = (hex) => Uint8Array.from(Buffer.from(hex.replace(/^0x/, ""), "hex"));
const toHex = (bytes) => "0x" + Buffer.from(bytes).toString("hex");

// JSON → polkadot-api values: digit strings become bigints; "0x…" strings stay strings (the
// form polkadot-api gives fixed-size byte arrays) unless the key says `bytes:` (variable-length
// bytes, which it takes as a Uint8Array).
function revive(value) {
  if (typeof value === "string" && value.startsWith("bytes:0x")) return Binary.fromHex(value.slice(6));
  if (typeof value === "string" && /^[0-9]+$/.test(value)) return BigInt(value);
  if (Array.isArray(value)) return value.map(revive);
  if (value && typeof value === "object") return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, revive(v)]));
  return value;
}

// polkadot-api values → JSON: bigints as decimal strings, variable-length bytes as "bytes:0x…".
function plain(value) {
  if (typeof value === "bigint") return value.toString();
  if (value instanceof Uint8Array) return "bytes:" + toHex(value);
  if (Array.isArray(value)) return value.map(plain);
  if (value && typeof value === "object") return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, plain(v)]));
  return value;
}

const out = [];
for (const { pallet, call, hex, args } of JSON.parse(readFileSync(callsPath, "utf8"))) {
  const { codec, location } = builder.buildCall(pallet, call);
  const bytes = fromHex(hex);
  let decoded, encoded;
  try {
    decoded = plain(codec.dec(bytes.slice(2)));
  } catch (e) {
    decoded = { error: `cannot decode ${pallet}.${call}: ${e.message}` };
  }
  try {
    encoded = toHex([...location, ...codec.enc(revive(args))]);
  } catch (e) {
    encoded = `cannot encode ${pallet}.${call} from ${JSON.stringify(args)}: ${e.message}`;
  }
  out.push({ pallet, call, location, decoded, encoded });
}
process.stdout.write(JSON.stringify(out));

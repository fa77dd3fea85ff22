// Score plugin: prefers nodes that carry the labels the settings list.
//
//   settings:
//     labels: {disktype: ssd, example.com/gpu: "true"}   # required, at least one
//     weights: {example.com/gpu: 3}                      # optional, per label key, default 1
//
// A node's raw score is the sum of the weights of the listed labels it carries with exactly
// that value (0 when it carries none). `configure` declares `scale`, so the host maps the best
// candidate to 100 and the others in proportion; the plugin never rejects a node.
//
// The plugin keeps its own view of the nodes (handle -> labels), built from the host's `sync`
// deltas: the host sends only what changed, so the view is the only place the labels of a
// candidate can come from. Bound pods do not matter to this rule and are not kept.
//
// Built with componentize-js into a component of the `wkube:scheduler` `plugin` world (see
// plugins/js/build.mjs). Records are objects with camelCase fields, `list<tuple<..>>` arrives
// as arrays of [key, value], variants are `{tag, val}`, enums strings, and `s64` is a BigInt.
// Its native twin, which the tests compare it with, is tests/twins/prefer_labels.rs.

// Settings are checked so that a typo is refused rather than silently preferring nothing.
const MAX_WEIGHT = 1000;

// The configured rule: [[key, value, weight], ...], or null before `configure`.
let wanted = null;
// Node handle -> Map of its labels.
const nodes = new Map();

function isObject(v) {
  return v !== null && typeof v === "object" && !Array.isArray(v);
}

// Parses the settings into the rule, or throws the message saying why they are wrong. Keys are
// checked in sorted order so the first complaint is the same whatever order the JSON had (and
// the same as the native twin's, whose JSON objects are sorted maps).
function parseSettings(text) {
  let s;
  try {
    s = JSON.parse(text || "{}");
  } catch (e) {
    throw `settings are not JSON: ${e.message}`;
  }
  if (!isObject(s)) throw "settings must be an object";
  for (const key of Object.keys(s).sort()) {
    if (key !== "labels" && key !== "weights") {
      throw `settings.${key}: unknown setting (known: labels, weights)`;
    }
  }
  if (!isObject(s.labels) || Object.keys(s.labels).length === 0) {
    throw "settings.labels: must be an object of at least one label key -> value";
  }
  const keys = Object.keys(s.labels).sort();
  for (const key of keys) {
    if (key === "") throw "settings.labels: a label key is empty";
    if (typeof s.labels[key] !== "string") {
      throw `settings.labels.${key}: ${JSON.stringify(s.labels[key])} is not a string`;
    }
  }
  const weights = s.weights === undefined ? {} : s.weights;
  if (!isObject(weights)) throw "settings.weights: must be an object of label key -> weight";
  for (const key of Object.keys(weights).sort()) {
    const w = weights[key];
    if (!Object.prototype.hasOwnProperty.call(s.labels, key)) {
      throw `settings.weights.${key}: not one of settings.labels`;
    }
    if (!Number.isInteger(w) || w < 1 || w > MAX_WEIGHT) {
      throw `settings.weights.${key}: ${JSON.stringify(w)} is not an integer in 1..=${MAX_WEIGHT}`;
    }
  }
  return keys.map((key) => [key, s.labels[key], weights[key] === undefined ? 1 : weights[key]]);
}

// A thrown string is the `err` of `result<normalization, string>`.
export function configure(settings) {
  wanted = parseSettings(settings);
  return "scale";
}

// Applies a delta in the contract's order. Pods are not kept, so only nodes matter: removed
// ones are forgotten, added or changed ones replace what was known under their handle.
export function sync(delta) {
  if (delta.reset) nodes.clear();
  for (const handle of delta.nodesRemoved) nodes.delete(handle);
  for (const node of delta.nodes) nodes.set(node.handle, new Map(node.labels));
}

// The rule does not depend on the pod: every pod gets the same preference.
export function preFilter(_pod) {
  return { tag: "all" };
}

// `list<u32>` arrives as a Uint32Array, whose `map` would build another Uint32Array (of NaN
// turned to 0, or a TypeError for BigInts): answers are built with `Array.from` instead.

// A Score plugin must still export the whole world; listed as a Filter it would pass everyone.
export function filter(_pod, candidates) {
  return Array.from(candidates, () => ({ tag: "pass" }));
}

export function score(_pod, candidates) {
  return Array.from(candidates, (handle) => {
    const labels = nodes.get(handle);
    let total = 0;
    if (labels && wanted) {
      for (const [key, value, weight] of wanted) {
        if (labels.get(key) === value) total += weight;
      }
    }
    return BigInt(total);
  });
}

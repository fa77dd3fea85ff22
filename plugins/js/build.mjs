// Builds one JavaScript policy or plugin into a component of a world of WIT_DIR (default
// `policy`, the `wkube:admission` world; scheduler plugins pass `plugin`):
//   node build.mjs WIT_DIR SOURCE.js OUT.wasm [WORLD]
// Node resolves imports from this file's own directory, so plugins/build.sh copies it next to
// the node_modules it installed (pinned by package-lock.json) and runs it there. The JS API of
// componentize-js is used because the `jco componentize` CLI did not resolve paths here.
import { writeFile, rename } from "node:fs/promises";
import { resolve } from "node:path";
import { componentize } from "@bytecodealliance/componentize-js";

const [wit, source, out, world = "policy"] = process.argv.slice(2);
if (!wit || !source || !out) {
  console.error("usage: node build.mjs WIT_DIR SOURCE.js OUT.wasm [WORLD]");
  process.exit(2);
}
const { component } = await componentize({
  sourcePath: resolve(source),
  witPath: resolve(wit),
  worldName: world,
  // Without these the component imports wasi:http, which the plugin host does not link (a
  // policy or plugin gets no network), and it would be refused as "imports more than WASI
  // preview 2".
  disableFeatures: ["http", "fetch-event"],
});
// Readers may be using OUT right now: replace it atomically.
await writeFile(`${out}.tmp`, component);
await rename(`${out}.tmp`, out);

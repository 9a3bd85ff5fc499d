// Bundle autobahn-js (the npm package "autobahn", pinned in package-lock.json) for the browser
// as one ES module, web/vendor/autobahn.js, with esbuild. scripts/install runs it after
// `npm ci`; the output is not committed (web/.gitignore). Run again by hand: `npm run build`.
//
// autobahn 26 is written for Node.js and the browser alike; a few of its dependencies are
// Node-only or unused by this page, and are left out of the bundle:
// - cbor (node-cbor 9) and msgpack5 need Node's stream, util, assert and events modules. The page
//   speaks WAMP over JSON only (link.js passes autobahn's JSONSerializer), so both become
//   stand-ins: autobahn requires them when it loads, and never calls them with JSON.
// - crypto-js (WAMP-CRA) and tweetnacl (WAMP-cryptosign): the page signs in with a ticket only;
//   autobahn requires them when it loads and calls them only for those methods.
// - when.js: autobahn looks for it inside try/catch and uses the browser's own Promise without it.
// - fs: required only under process.env.AUTOBAHN_TRACE, which a browser never has.
// `global` (Node's name) is mapped to `globalThis`.

import { readFileSync, mkdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import * as esbuild from "esbuild";

const here = dirname(fileURLToPath(import.meta.url));
const outfile = join(here, "vendor", "autobahn.js");
const autobahnDir = join(here, "node_modules", "autobahn");
const { version } = JSON.parse(readFileSync(join(autobahnDir, "package.json"), "utf8"));
const licence = readFileSync(join(autobahnDir, "LICENSE"), "utf8").trim();

/** Modules replaced by a stand-in: the reason each is left out is above. */
const STAND_INS = {
  cbor: "module.exports = {};",
  msgpack5: `module.exports = function msgpack5() {
    const absent = () => { throw new Error("MessagePack is left out of this bundle: the page speaks JSON"); };
    return { encode: absent, decode: absent };
  };`,
  "crypto-js": "module.exports = {};",
  tweetnacl: "module.exports = {};",
  when: 'throw new Error("when.js is left out of this bundle: autobahn uses the browser\'s Promise");',
  fs: "module.exports = {};",
};

const leaveOut = {
  name: "leave-out",
  setup(build) {
    build.onResolve({ filter: /^[^./]/ }, (args) => {
      const name = args.path.split("/")[0];
      return Object.hasOwn(STAND_INS, name) ? { path: name, namespace: "stand-in" } : undefined;
    });
    build.onLoad({ filter: /.*/, namespace: "stand-in" }, (args) => ({
      contents: STAND_INS[args.path],
      loader: "js",
    }));
  },
};

mkdirSync(dirname(outfile), { recursive: true });
const result = await esbuild.build({
  stdin: {
    contents: 'import autobahn from "autobahn";\nexport default autobahn;\n',
    resolveDir: here,
    sourcefile: "autobahn-entry.js",
  },
  bundle: true,
  format: "esm",
  platform: "browser",
  target: ["es2020"],
  define: { global: "globalThis" },
  minify: true,
  legalComments: "none",
  banner: { js: `/*! autobahn-js ${version}, bundled for deptcast with esbuild.\n${licence}\n*/` },
  plugins: [leaveOut],
  outfile,
  logLevel: "warning",
});
if (result.errors.length) process.exit(1);
console.log(`web/vendor/autobahn.js: autobahn ${version}, ${readFileSync(outfile).length} bytes`);

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
//
// One upstream line is replaced (PATCHES below, each with its reason; the build fails if a
// patched line is not found exactly once, so an upgrade of autobahn is checked by hand):
// - lib/session.js, Session._protocol_violation (checked against autobahn 26.3.1): it reports
//   `Error("failing transport due to protocol violation: ...")` to `on_internal_error`, but
//   session.js defines its own WAMP `Error` (error, args, kwargs) that shadows JavaScript's,
//   and calls it without `new`. In this bundle (an ES module: strict code) that throws
//   "TypeError: Cannot set properties of undefined (setting 'error')" out of the WebSocket's
//   message handler, so the page's handler is never reached and the browser logs an uncaught
//   error; in sloppy code it writes `error`, `args` and `kwargs` onto the global object and
//   reports `undefined`. The page meets it when a router's message arrives after its GOODBYE
//   (link.js accepts that quietly). Reported upstream as crossbario/autobahn-js issue 434
//   (open); the patch can go once a release builds a real Error there.
// - lib/transport/websocket.js, transport.send (checked against autobahn 26.3.1): it awaits the
//   serializer before `websocket.send`, so the reply to a router's GOODBYE goes out after the
//   connection has already closed the WebSocket (Connection closes it when the session leaves).
//   A browser drops a message sent on a closing WebSocket anyway, but logs "WebSocket is
//   already in CLOSING or CLOSED state." as a console error, at every GOODBYE of a node (a
//   drain, an expired token, a revocation). The patch sends only on an open WebSocket; it can
//   go once autobahn sends synchronously, or checks the state itself.

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

/** Upstream lines replaced: file (under node_modules/autobahn) -> [[line, replacement]]; the
 * reason for each is above. */
const PATCHES = {
  "lib/transport/websocket.js": [[
    "websocket.send(payload);",
    "if (websocket.readyState === 1) websocket.send(payload); // OPEN: see bundle.mjs",
  ]],
  "lib/session.js": [[
    'util.handle_error(self._on_internal_error, Error("failing transport due to protocol violation: " + reason))',
    'util.handle_error(self._on_internal_error, new globalThis.Error("failing transport due to protocol violation: " + reason))',
  ]],
};

const patchUpstream = {
  name: "patch-upstream",
  setup(build) {
    build.onLoad({ filter: /[\\/]node_modules[\\/]autobahn[\\/]lib[\\/].*\.js$/ }, (args) => {
      const file = args.path.split(/[\\/]node_modules[\\/]autobahn[\\/]/).pop().replace(/\\/g, "/");
      const patches = PATCHES[file];
      if (!patches) return undefined;
      let contents = readFileSync(args.path, "utf8");
      for (const [line, replacement] of patches) {
        const found = contents.split(line).length - 1;
        if (found !== 1) {
          throw new Error(`autobahn ${file}: the patched line is there ${found} times, not once: `
            + "check the patch in bundle.mjs against this version of autobahn");
        }
        contents = contents.replace(line, replacement);
      }
      return { contents, loader: "js" };
    });
  },
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
  plugins: [leaveOut, patchUpstream],
  outfile,
  logLevel: "warning",
});
if (result.errors.length) process.exit(1);
console.log(`web/vendor/autobahn.js: autobahn ${version}, ${readFileSync(outfile).length} bytes`);

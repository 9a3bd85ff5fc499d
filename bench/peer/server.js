// The benchmark's peer: what deptcast is compared with. A Socket.IO 4.8 server whose
// broadcasts go through @socket.io/redis-adapter, so a message sent via one process reaches
// the room's sockets on every process, as deptcast's events cross its router links.
//
//   node server.js --port 9301 [--redis redis://127.0.0.1:6379] [--key socket.io]
//
// Protocol (default namespace "/"):
//   client -> "join", dept, ack       joins the room <dept>; ack() once it is in
//   client -> "send", {to, message}    io.to(to).emit("m", message) on every process
//   server -> "m", message              the message text, as deptcast's legacy endpoint sends it
// No authentication: the benchmark's figures for the peer are a floor for what a Socket.IO
// deployment with auth would cost.
"use strict";

const http = require("node:http");
const { Server } = require("socket.io");
const { createAdapter } = require("@socket.io/redis-adapter");
const { createClient } = require("redis");

function option(name, fallback) {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && i + 1 < process.argv.length ? process.argv[i + 1] : fallback;
}

async function main() {
  const port = Number(option("port", "9301"));
  const redisUrl = option("redis", "redis://127.0.0.1:6379");
  // a key of its own per benchmark run, so two runs sharing a Redis never mix their rooms
  const key = option("key", "socket.io");

  const pub = createClient({ url: redisUrl });
  const sub = pub.duplicate();
  for (const c of [pub, sub]) c.on("error", (err) => console.error(`redis: ${err.message}`));
  await Promise.all([pub.connect(), sub.connect()]);

  const httpServer = http.createServer((req, res) => {
    res.writeHead(404).end();
  });
  const io = new Server(httpServer, {
    adapter: createAdapter(pub, sub, { key }),
    // the load generator uses WebSocket only, like deptcast's clients
    transports: ["websocket"],
    serveClient: false,
  });

  io.on("connection", (socket) => {
    socket.on("join", (dept, ack) => {
      if (typeof dept !== "string" || dept.length === 0 || dept.length > 64) return;
      socket.join(dept);
      if (typeof ack === "function") ack(true);
    });
    socket.on("send", (frame) => {
      if (!frame || typeof frame.to !== "string" || typeof frame.message !== "string") return;
      io.to(frame.to).emit("m", frame.message);
    });
  });

  // the same listen backlog as deptcast's node configs (1024): a connection storm then
  // meets the same queue on both sides
  httpServer.listen(port, "127.0.0.1", 1024, () => {
    console.log(`peer listening on 127.0.0.1:${port} (pid ${process.pid}, redis key ${key})`);
  });

  const stop = () => {
    io.close();
    Promise.allSettled([pub.quit(), sub.quit()]).finally(() => process.exit(0));
    setTimeout(() => process.exit(0), 2000).unref();
  };
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});

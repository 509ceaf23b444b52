// A small bridge on matrix-appservice (npm), the framework under
// matrix-appservice-bridge: tests/appservice/test_node_appservice.py runs it.
//
//   node bridge.js register <file> <as-url> <server-name>
//       writes a registration file made by the framework's own
//       AppServiceRegistration (tokens, namespaces)
//   node bridge.js run <file> <port> <homeserver-url> <room-id>
//       serves the transactions, registers the ghost @node_ghost, names it,
//       joins it to the room and sends as it (the as_token with ?user_id=),
//       then waits for a message of somebody else in the room to arrive in a
//       transaction; prints one JSON line per step on stdout; exit 0 when
//       done, 1 on any failure
"use strict";
const fs = require("fs");
const yaml = require("js-yaml");
const { AppService, AppServiceRegistration } = require("matrix-appservice");

function say(obj) { process.stdout.write(JSON.stringify(obj) + "\n"); }

async function call(hs, token, method, path, body, userId) {
  const url = new URL(hs + path);
  if (userId) url.searchParams.set("user_id", userId);
  const resp = await fetch(url, {
    method,
    headers: { "Authorization": `Bearer ${token}`, "Content-Type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const json = await resp.json();
  if (!resp.ok) throw new Error(`${method} ${path}: ${resp.status} ${JSON.stringify(json)}`);
  return json;
}

async function register(file, asUrl, serverName) {
  const reg = new AppServiceRegistration(asUrl);
  reg.setId("node-bridge");
  reg.setHomeserverToken(AppServiceRegistration.generateToken());
  reg.setAppServiceToken(AppServiceRegistration.generateToken());
  reg.setSenderLocalpart("node_bot");
  reg.addRegexPattern("users", `@node_.*:${serverName.replace(/\./g, "\\.")}`, true);
  reg.setRateLimited(false);
  reg.outputAsYaml(file);
  say({ registered: reg.getId() });
}

async function run(file, port, hs, roomId) {
  const reg = AppServiceRegistration.fromObject(yaml.load(fs.readFileSync(file, "utf8")));
  const asToken = reg.getAppServiceToken();
  const serverName = new URL(hs).searchParams.get("server_name") || "";
  const service = new AppService({ homeserverToken: reg.getHomeserverToken() });
  let ghost = null;
  const heard = new Promise((resolve) => {
    service.on("type:m.room.message", (event) => {
      if (event.room_id === roomId && event.sender !== ghost) resolve(event);
    });
  });
  await service.listen(Number(port), "127.0.0.1", 10);
  const base = hs.split("?")[0];
  const v3 = "/_matrix/client/v3";
  const made = await call(base, asToken, "POST", `${v3}/register`,
    { type: "m.login.application_service", username: "node_ghost", inhibit_login: true });
  ghost = made.user_id;
  say({ ghost });
  await call(base, asToken, "PUT", `${v3}/profile/${encodeURIComponent(ghost)}/displayname`,
    { displayname: "Node Ghost" }, ghost);
  await call(base, asToken, "POST", `${v3}/join/${encodeURIComponent(roomId)}`, {}, ghost);
  const sent = await call(base, asToken, "PUT",
    `${v3}/rooms/${encodeURIComponent(roomId)}/send/m.room.message/node1`,
    { msgtype: "m.text", body: "hello from node" }, ghost);
  say({ sent: sent.event_id });
  const event = await heard;
  say({ heard: event.content.body, sender: event.sender });
  await service.close();
  void serverName;
}

const [cmd, ...args] = process.argv.slice(2);
(cmd === "register" ? register(...args) : run(...args))
  .then(() => process.exit(0))
  .catch((err) => { say({ error: String(err && err.stack || err) }); process.exit(1); });

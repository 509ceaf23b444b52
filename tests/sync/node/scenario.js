// matrix-js-sdk's SlidingSync (MSC4186) against a homeserver, as Element X
// and Element Web's sliding sync mode use it: one list of the 20 most recent
// rooms, grown to 40 as the user scrolls (only the 20 new rooms come), a
// subscription to one room outside the window, then what another user does arrives live (a message, typing, a
// read receipt, a to-device message). Prints one JSON object.
//
// usage: node scenario.js BASE_URL ALICE_JSON BOB_JSON SUBSCRIBE_ROOM LIVE_ROOM
//   *_JSON: {"user_id", "access_token", "device_id"}
import * as sdk from "matrix-js-sdk";
import { SlidingSync, SlidingSyncEvent, SlidingSyncState } from "matrix-js-sdk/lib/sliding-sync.js";
import { logger } from "matrix-js-sdk/lib/logger.js";

logger.setLevel("silent");
const [baseUrl, aliceJson, bobJson, subscribeRoom, liveRoom] = process.argv.slice(2);
const aliceCreds = JSON.parse(aliceJson);
const bobCreds = JSON.parse(bobJson);
const out = { windows: [], counts: [], subscribed: null, live: {}, errors: [] };

function client(creds) {
  return sdk.createClient({
    baseUrl, accessToken: creds.access_token, userId: creds.user_id, deviceId: creds.device_id,
  });
}

function deadline(ms, what) {
  return new Promise((_, reject) => setTimeout(() => reject(new Error(`timed out: ${what}`)), ms));
}

function until(emitter, event, test, what, ms = 15000) {
  return Promise.race([
    new Promise((resolve) => {
      const listener = (...args) => {
        if (test(...args)) {
          emitter.off(event, listener);
          resolve(args);
        }
      };
      emitter.on(event, listener);
    }),
    deadline(ms, what),
  ]);
}

const alice = client(aliceCreds);
const bob = client(bobCreds);
const lists = new Map([["all", {
  ranges: [[0, 19]],
  timeline_limit: 1,
  required_state: [["m.room.name", ""], ["m.room.member", "$LAZY"]],
}]]);
const sliding = new SlidingSync(baseUrl, lists, { timeline_limit: 5, required_state: [["*", "*"]] },
  alice, 10000);

// every room the server sends, with its bump stamp, per response
let received = new Map();
sliding.on(SlidingSyncEvent.RoomData, (roomId, data) => {
  received.set(roomId, data);
});

async function nextResponse(what) {
  const [, resp] = await until(sliding, SlidingSyncEvent.Lifecycle,
    (state, r, err) => state === SlidingSyncState.Complete && r !== null, what);
  return resp;
}

function window(resp) {
  return [...received.entries()]
    .filter(([roomId]) => resp.rooms && roomId in resp.rooms)
    .sort((a, b) => (b[1].bump_stamp ?? 0) - (a[1].bump_stamp ?? 0))
    .map(([roomId]) => roomId);
}

try {
  const first = nextResponse("first window");
  await alice.startClient({ slidingSync: sliding });
  const resp1 = await first;
  out.windows.push(window(resp1));
  out.counts.push(sliding.getListData("all")?.joinedCount ?? null);

  // scroll: the window grows to 40; the server sends the 20 rooms new to it
  received = new Map();
  const second = nextResponse("second window");
  sliding.setListRanges("all", [[0, 39]]);
  const resp2 = await second;
  out.windows.push(window(resp2));
  out.counts.push(sliding.getListData("all")?.joinedCount ?? null);

  // a room subscription for a room outside the window
  received = new Map();
  const third = until(sliding, SlidingSyncEvent.RoomData, (roomId) => roomId === subscribeRoom,
    "subscription");
  sliding.modifyRoomSubscriptions(new Set([subscribeRoom]));
  const [, subData] = await third;
  out.subscribed = {
    timeline: subData.timeline.filter((e) => e.type === "m.room.message").map((e) => e.content.body),
    state_types: [...new Set(subData.required_state.map((e) => e.type))].sort(),
  };

  // live: bob acts in the live room; alice's client sees each through the SDK's models
  const message = until(alice, sdk.RoomEvent.Timeline,
    (event, room) => room?.roomId === liveRoom && event.getContent().body === "hello from bob",
    "message");
  const typing = until(alice, sdk.RoomMemberEvent.Typing,
    (event, member) => member.userId === bobCreds.user_id && member.typing, "typing");
  const toDevice = until(alice, sdk.ClientEvent.ToDeviceEvent,
    (event) => event.getType() === "org.example.ping", "to-device");
  const sent = await bob.sendMessage(liveRoom, { msgtype: "m.text", body: "hello from bob" });
  await message;
  out.live.message = true;
  await bob.sendTyping(liveRoom, true, 20000);
  await typing;
  out.live.typing = true;
  const receipt = until(alice, sdk.RoomEvent.Receipt,
    (event, room) => room.roomId === liveRoom
      && room.getReadReceiptForUserId(bobCreds.user_id)?.eventId === sent.event_id, "receipt");
  await bob.sendReadReceipt(new sdk.MatrixEvent({ event_id: sent.event_id, room_id: liveRoom,
    type: "m.room.message", content: {} }));
  await receipt;
  out.live.receipt = true;
  const contentMap = new Map([[aliceCreds.user_id, new Map([[aliceCreds.device_id, { n: 1 }]])]]);
  await bob.sendToDevice("org.example.ping", contentMap);
  const [pinged] = await toDevice;
  out.live.to_device = pinged.getContent();
  out.live.room_timeline = alice.getRoom(liveRoom)?.getLiveTimeline().getEvents()
    .filter((e) => e.getType() === "m.room.message").map((e) => e.getContent().body) ?? null;
} catch (e) {
  out.errors.push(String(e && e.stack ? e.stack : e));
} finally {
  alice.stopClient();
  sliding.stop();
}
console.log(JSON.stringify(out));
process.exit(0);

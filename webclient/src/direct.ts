// Direct messages: rooms listed in the m.direct account data (the spec's
// way of marking a room as a chat with one person), keyed by that person.
import { EventType, KnownMembership, MatrixClient, Preset, Room } from "matrix-js-sdk";

type DirectMap = Record<string, string[]>;

function directMap(client: MatrixClient): DirectMap {
  const content = client.getAccountData(EventType.Direct)?.getContent();
  return content && typeof content === "object" ? { ...(content as DirectMap) } : {};
}

/** The other person of a DM room, or null for a room that is not one. */
export function directPartner(client: MatrixClient, room: Room): string | null {
  for (const [userId, rooms] of Object.entries(directMap(client))) {
    if (Array.isArray(rooms) && rooms.includes(room.roomId)) return userId;
  }
  // an invite to a DM says so in its membership event
  if (room.getMyMembership() === KnownMembership.Invite) {
    const member = room.getMember(client.getUserId() ?? "");
    if (member?.events.member?.getContent().is_direct) return member.events.member.getSender() ?? null;
  }
  return null;
}

async function markDirect(client: MatrixClient, userId: string, roomId: string): Promise<void> {
  const map = directMap(client);
  const rooms = Array.isArray(map[userId]) ? map[userId] : [];
  if (rooms.includes(roomId)) return;
  map[userId] = [...rooms, roomId];
  await client.setAccountData(EventType.Direct, map);
}

/** A new private room with `userId`, invited, marked as a DM on our side. */
export async function startDirectChat(
  client: MatrixClient,
  userId: string,
  encrypted: boolean,
): Promise<string> {
  const { room_id } = await client.createRoom({
    is_direct: true,
    invite: [userId],
    preset: Preset.TrustedPrivateChat,
    initial_state: encrypted
      ? [{ type: EventType.RoomEncryption, state_key: "", content: { algorithm: "m.megolm.v1.aes-sha2" } }]
      : undefined,
  });
  await markDirect(client, userId, room_id);
  return room_id;
}

/** Join an invited room; a DM invite is marked as a DM on our side too. */
export async function acceptInvite(client: MatrixClient, room: Room): Promise<void> {
  const partner = directPartner(client, room);
  await client.joinRoom(room.roomId);
  if (partner) await markDirect(client, partner, room.roomId);
}

/** "@name:server" from what a person typed ("name" means one on our server). */
export function fullUserId(client: MatrixClient, typed: string): string {
  let userId = typed.trim();
  if (!userId.startsWith("@")) userId = "@" + userId;
  if (!userId.includes(":")) userId += ":" + (client.getDomain() ?? "");
  return userId;
}

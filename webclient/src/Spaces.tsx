// Spaces as workspaces: a switcher over the spaces one is in; picking one
// narrows the room list to its children (the space's m.space.child state),
// and rooms can be added to it. A space is a room whose create event says
// `type: m.space`; it is never listed as a room to chat in.
import { FormEvent, useEffect, useState } from "react";
import {
  EventTimeline,
  HierarchyRoom,
  EventType,
  KnownMembership,
  MatrixClient,
  Preset,
  Room,
  RoomType,
  Visibility,
} from "matrix-js-sdk";
import { describeError } from "./session";
import { useSubmit } from "./forms";

export function isSpace(room: Room): boolean {
  return room.getType() === RoomType.Space;
}

export function joinedSpaces(client: MatrixClient): Room[] {
  return client
    .getRooms()
    .filter((r) => isSpace(r) && r.getMyMembership() === KnownMembership.Join)
    .sort((a, b) => a.name.localeCompare(b.name));
}

/** The room IDs a space lists as children (an m.space.child with `via`). */
export function spaceChildren(space: Room): Set<string> {
  const state = space.getLiveTimeline().getState(EventTimeline.FORWARDS);
  const children = new Set<string>();
  for (const ev of state?.getStateEvents(EventType.SpaceChild) ?? []) {
    const via = ev.getContent().via;
    if (Array.isArray(via) && via.length > 0 && ev.getStateKey()) children.add(ev.getStateKey()!);
  }
  return children;
}

function serverOf(userId: string): string {
  return userId.slice(userId.indexOf(":") + 1);
}

export async function addToSpace(client: MatrixClient, spaceId: string, roomId: string): Promise<void> {
  await client.sendStateEvent(
    spaceId,
    EventType.SpaceChild,
    { via: [serverOf(client.getUserId() ?? "")] },
    roomId,
  );
}

export function SpaceSwitcher({
  client,
  spaceId,
  onPick,
}: {
  client: MatrixClient;
  spaceId: string | null;
  onPick: (spaceId: string | null) => void;
}) {
  const spaces = joinedSpaces(client);
  const [creating, setCreating] = useState(false);
  return (
    <div className="spaces">
      <div className="space-tabs" role="group" aria-label="Spaces">
        <button type="button" aria-pressed={spaceId === null} onClick={() => onPick(null)}>
          All rooms
        </button>
        {spaces.map((s) => (
          <button
            key={s.roomId}
            type="button"
            aria-pressed={spaceId === s.roomId}
            onClick={() => onPick(s.roomId)}
          >
            {s.name}
          </button>
        ))}
        <button type="button" aria-expanded={creating} onClick={() => setCreating(!creating)}>
          New space
        </button>
      </div>
      {creating && (
        <CreateSpace
          client={client}
          onDone={(id) => {
            setCreating(false);
            onPick(id);
          }}
        />
      )}
    </div>
  );
}

function CreateSpace({ client, onDone }: { client: MatrixClient; onDone: (id: string) => void }) {
  const [name, setName] = useState("");
  const { error, busy, submit } = useSubmit(async () => {
    const { room_id } = await client.createRoom({
      name: name.trim(),
      visibility: Visibility.Private,
      preset: Preset.PrivateChat,
      creation_content: { type: RoomType.Space },
    });
    onDone(room_id);
  });
  return (
    <form className="panel" onSubmit={submit} aria-label="Create a space">
      <label>
        Space name
        <input value={name} onChange={(e) => setName(e.target.value)} required />
      </label>
      {error && (
        <p role="alert" className="error">
          {error}
        </p>
      )}
      <button type="submit" className="primary" disabled={busy}>
        Create space
      </button>
    </form>
  );
}

/** Adding one of one's rooms (not yet in it) to the space. */
export function AddToSpace({ client, space }: { client: MatrixClient; space: Room }) {
  const children = spaceChildren(space);
  const candidates = client
    .getRooms()
    .filter(
      (r) =>
        !isSpace(r) && r.getMyMembership() === KnownMembership.Join && !children.has(r.roomId),
    )
    .sort((a, b) => a.name.localeCompare(b.name));
  const [roomId, setRoomId] = useState("");
  const [error, setError] = useState<string | null>(null);
  const submit = async (e: FormEvent) => {
    e.preventDefault();
    setError(null);
    const chosen = roomId || candidates[0]?.roomId;
    if (!chosen) return;
    try {
      await addToSpace(client, space.roomId, chosen);
      setRoomId("");
    } catch (err) {
      setError(describeError(err));
    }
  };
  if (candidates.length === 0) return null;
  return (
    <form className="panel add-to-space" onSubmit={submit} aria-label={`Add a room to ${space.name}`}>
      <label>
        Room to add to {space.name}
        <select value={roomId || candidates[0].roomId} onChange={(e) => setRoomId(e.target.value)}>
          {candidates.map((r) => (
            <option key={r.roomId} value={r.roomId}>
              {r.name}
            </option>
          ))}
        </select>
      </label>
      {error && (
        <p role="alert" className="error">
          {error}
        </p>
      )}
      <button type="submit">Add to space</button>
    </form>
  );
}

/** The space's rooms one is not in (its /hierarchy, one level down), each
 * with a Join button: a workspace shows what there is to join. */
export function SpaceDirectory({
  client,
  space,
  onJoined,
}: {
  client: MatrixClient;
  space: Room;
  onJoined: (roomId: string) => void;
}) {
  const [rooms, setRooms] = useState<HierarchyRoom[]>([]);
  const [error, setError] = useState<string | null>(null);
  const children = [...spaceChildren(space)].sort().join(",");
  useEffect(() => {
    let cancelled = false;
    client
      .getRoomHierarchy(space.roomId, 50, 1)
      .then((r) => {
        if (!cancelled) setRooms(r.rooms.filter((x) => x.room_id !== space.roomId));
      })
      .catch(() => {});
    return () => {
      cancelled = true;
    };
  }, [client, space.roomId, children]);
  const notJoined = rooms.filter(
    (r) => client.getRoom(r.room_id)?.getMyMembership() !== KnownMembership.Join && r.room_type !== RoomType.Space,
  );
  if (notJoined.length === 0) return null;
  const via = (roomId: string) => {
    const ev = space
      .getLiveTimeline()
      .getState(EventTimeline.FORWARDS)
      ?.getStateEvents(EventType.SpaceChild, roomId);
    const v = ev?.getContent().via;
    return Array.isArray(v) ? v.filter((x): x is string => typeof x === "string") : [];
  };
  return (
    <div className="panel">
      <h3>Rooms in {space.name} you can join</h3>
      <ul className="members-list" aria-label={`Rooms in ${space.name} to join`}>
        {notJoined.map((r) => {
          const name = r.name || r.canonical_alias || r.room_id;
          return (
            <li key={r.room_id} className="member">
              <span className="grow">
                <span className="member-name">{name}</span>
                {r.topic && <span className="muted member-id">{r.topic}</span>}
                <span className="muted member-id">
                  {r.num_joined_members} {r.num_joined_members === 1 ? "member" : "members"}
                </span>
              </span>
              <button
                type="button"
                aria-label={`Join ${name}`}
                onClick={async () => {
                  setError(null);
                  try {
                    const room = await client.joinRoom(r.room_id, { viaServers: via(r.room_id) });
                    onJoined(room.roomId);
                  } catch (e) {
                    setError(describeError(e));
                  }
                }}
              >
                Join
              </button>
            </li>
          );
        })}
      </ul>
      {error && (
        <p role="alert" className="error">
          {error}
        </p>
      )}
    </div>
  );
}
